"""Helpers for the deploy tests and the end-to-end test: the README's metric table, PromQL names, panels.

- ``readme_metrics()`` parses the "Metric reference" table of README.md, the one place metric names are
  defined.
- ``metric_names(expr)`` and ``selectors(expr)`` pull metric names and matcher label names out of a PromQL
  expression (a lexical pass, not a parser: ``promtool check rules`` is the parser, see the tests).
- ``dashboard_queries(path)`` lists ``(panel title, expr)`` for every query of a Grafana dashboard, rows
  included; ``runnable(expr)`` replaces the dashboard's template variables so the expression can be sent to
  the Prometheus HTTP API as is (``/api/v1/query?query=...``).

Check by hand::

    cd tests && python3 -c "import dashboards as d; print(*d.dashboard_queries(), sep='\\n')"
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import REPO

README = REPO / "README.md"
DASHBOARD = REPO / "grafana" / "portqry-exporter.json"
RULES = REPO / "deploy" / "prometheus" / "portqry-alerts.yml"

# Values for the dashboard's template variables when a query is run outside Grafana.
DEFAULT_VARIABLES: dict[str, str] = {
    "datasource": "prometheus",
    "domain": ".*",
    "site": ".*",
    "target": ".*",
    "__rate_interval": "2m",
    "__interval": "30s",
    "__range": "1h",
}

# Panels that list failures: empty while every target is healthy (nothing failing, nothing unreachable).
FAILURE_PANELS: frozenset[str] = frozenset(
    {
        "Ports not listening (with reason)",
        "Unreachable dynamic RPC endpoints",
    }
)

# Panels fed by `[[domains]]` discovery (portqry_domain_*, portqry_client_site_info) and by the LDAP ping's
# roles (portqry_dc_role): empty for an exporter that probes `[[targets]]` only, like the end-to-end test's.
# test_deploy_grafana.py shows every one of them with data on the series of a discovered domain.
DOMAIN_PANELS: frozenset[str] = frozenset(
    {
        "Domain discovery",
        "Since the last successful discovery",
        "Reachable DCs (tcp/389) and minimum",
        "Exporter's site, as each DC reports it",
        "DCs found over time",
        "Domain discovery over time",
        "DC roles (LDAP ping)",
    }
)

# Panels that are legitimately empty while every target is healthy and no `[[domains]]` entry is configured.
# Every other panel must show data once the exporter has probed a domain controller.
EMPTY_WHEN_HEALTHY: frozenset[str] = FAILURE_PANELS | DOMAIN_PANELS

# Labels every scraped series carries besides the exporter's own.
TARGET_LABELS = frozenset({"job", "instance"})

_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
        "atan2",
    }
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUP_LIST = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
_IDENT = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_SELECTOR = re.compile(r"(?<![\w:])([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')")
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


@dataclass(frozen=True)
class Metric:
    """One row of the README's metric reference."""

    name: str
    type: str
    labels: frozenset[str]
    meaning: str


def readme_metrics(readme: Path = README) -> dict[str, Metric]:
    """Parse the "Metric reference" table of README.md into ``{name: Metric}``.

    Raises:
        ValueError: the section or its table is missing, or a row is malformed.
    """
    text = readme.read_text(encoding="utf-8")
    match = re.search(r"^## Metric reference\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    if match is None:
        raise ValueError(f"{readme}: no '## Metric reference' section")
    metrics: dict[str, Metric] = {}
    for line in match.group(1).splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`portqry_"):
            continue
        name = cells[0].strip("`")
        if not re.fullmatch(r"portqry_[a-z0-9_]+", name):
            raise ValueError(f"{readme}: bad metric name cell {cells[0]!r}")
        labels = frozenset(re.findall(r"`([a-z_][a-z0-9_]*)`", cells[2]))
        metrics[name] = Metric(name, cells[1], labels, cells[3])
    if not metrics:
        raise ValueError(f"{readme}: the metric reference has no `portqry_` rows")
    return metrics


def port_states(readme: Path = README) -> frozenset[str]:
    """The values of the ``portqry_port_state`` label, from the README row of ``portqry_port_state``."""
    meaning = readme_metrics(readme)["portqry_port_state"].meaning
    return frozenset(re.findall(r"`([a-z_]+)`", meaning))


def base_name(name: str, metrics: dict[str, Metric]) -> str:
    """Map a histogram's ``_bucket``/``_sum``/``_count`` series to its README name; other names unchanged."""
    for suffix in _HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and base in metrics and metrics[base].type.startswith("histogram"):
            return base
    return name


def _strip(expr: str) -> str:
    expr = _STRING.sub('""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = _GROUPING.sub("", expr)
    return _RANGE.sub("", expr)


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads (``up``, ``portqry_probe_duration_seconds_bucket``, ...).

    Strings, label matchers, grouping clauses and ranges are removed first, so a label named like a metric
    (``by (portqry_port_state)``) is not taken for one. Function names are recognised by their ``(``.
    """
    names = set()
    for ident in _IDENT.findall(_strip(expr)):
        if ident.lower() not in _KEYWORDS:
            names.add(ident)
    return names


def selectors(expr: str) -> list[tuple[str, dict[str, list[str]]]]:
    """``[(metric, {label: [matched values]})]`` for every ``metric{...}`` selector of an expression."""
    found = []
    for metric, body in _SELECTOR.findall(expr):
        if metric.lower() in _KEYWORDS or metric in {"by", "without"}:
            continue
        labels: dict[str, list[str]] = {}
        for label, _op, value in _MATCHER.findall(body):
            labels.setdefault(label, []).append(value[1:-1])
        found.append((metric, labels))
    return found


def grouping_labels(expr: str) -> set[str]:
    """Every label an expression groups or joins by: ``by``, ``without``, ``on`` and ``ignoring`` lists."""
    labels = set()
    for body in _GROUP_LIST.findall(_STRING.sub('""', expr)):
        labels |= {label.strip() for label in body.split(",") if label.strip()}
    return labels


def unknown_grouping_labels(expr: str, metrics: dict[str, Metric]) -> set[str]:
    """Labels of ``grouping_labels(expr)`` that none of the expression's metrics has (README, job, instance, le).

    A ``sum by (port)`` over a series without ``port`` runs, and silently folds every port into one ``port=""``
    series: the histogram that lost ``address`` and ``port`` (issue 11) is the case this catches.
    """
    names = metric_names(expr)
    known = set(TARGET_LABELS)
    for name in names:
        base = base_name(name, metrics)
        if base in metrics:
            known |= metrics[base].labels
            if name.endswith("_bucket"):
                known.add("le")
    return grouping_labels(expr) - known


def balanced(expr: str) -> bool:
    """True when (), [] and {} nest properly outside string literals."""
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for char in _STRING.sub('""', expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    """The dashboard JSON as a dict."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, with the panels of collapsed rows (``row.panels``) after their row."""
    panels: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def dashboard_queries(path: Path = DASHBOARD) -> list[tuple[str, str]]:
    """``[(panel title, expr)]`` for every Prometheus query of the dashboard, in panel order."""
    queries = []
    for panel in all_panels(load_dashboard(path)):
        for target in panel.get("targets", []):
            if "expr" in target:
                queries.append((str(panel.get("title", "")), str(target["expr"])))
    return queries


def runnable(expr: str, variables: dict[str, str] | None = None) -> str:
    """Replace Grafana template variables (``$target``, ``${datasource}``, ``$__rate_interval``) with values.

    Raises:
        KeyError: the expression uses a variable with no value.
    """
    values = DEFAULT_VARIABLES | (variables or {})

    def value(match: re.Match[str]) -> str:
        return values[match.group(1) or match.group(2)]

    return _VARIABLE.sub(value, expr)
