"""deploy/helm/portqry-exporter: what can be checked without a helm binary.

No helm can be installed on these machines, so the templates are never rendered here. Checked instead:

- every non-template file is well-formed (Chart.yaml, values.yaml, files/*.yml, values.schema.json);
- values.schema.json is a valid draft-07 schema, accepts the default values, and refuses values that would
  break the security posture or the config (writable root, privilege escalation, extra capabilities, a bad
  port spec, listen_address set twice, no targets);
- every ``.Values.x.y`` path a template reads exists in values.yaml, and every top-level value is read;
- the templates are structurally sound: ``{{ }}`` balanced, every ``if``/``range``/``with``/``define`` closed,
  every ``include`` names a defined template, every function is a Helm or sprig function, and the YAML around
  the actions parses once each action is replaced by a placeholder;
- the Deployment has the probes, the security context, the config mount and ``--config`` the issue asks for;
  the ServiceMonitor sets ``job="portqry"``; the PrometheusRule reads the rule file shipped in the chart.

Not verified (needs helm and a cluster): the rendered manifests, the TOML the ConfigMap renders from values,
and that the API server and prometheus-operator accept the objects.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.helpers import REPO, config_check

CHART = REPO / "deploy" / "helm" / "portqry-exporter"
TEMPLATES = CHART / "templates"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
SCHEMA = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))

_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
_COMMENT = re.compile(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", re.S)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`')
_VALUES_PATH = re.compile(r"\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
_BLOCK_OPEN = frozenset({"if", "range", "with", "define", "block"})
_KEYWORDS = frozenset({"if", "else", "end", "range", "with", "define", "block", "template", "nil", "true", "false"})
# Go template builtins, Helm's own functions and the sprig functions a chart may use.
_FUNCTIONS = frozenset(
    [
        "and",
        "or",
        "not",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "len",
        "index",
        "print",
        "printf",
        "println",
        "html",
        "js",
        "urlquery",
        "call",
        "slice",
        "include",
        "tpl",
        "required",
        "toYaml",
        "fromYaml",
        "toJson",
        "fromJson",
        "toToml",
        "lookup",
        "default",
        "empty",
        "coalesce",
        "ternary",
        "fail",
        "quote",
        "squote",
        "trim",
        "trimSuffix",
        "trimPrefix",
        "trunc",
        "lower",
        "upper",
        "title",
        "replace",
        "contains",
        "hasPrefix",
        "hasSuffix",
        "regexMatch",
        "regexReplaceAll",
        "indent",
        "nindent",
        "list",
        "dict",
        "get",
        "set",
        "keys",
        "hasKey",
        "omit",
        "pick",
        "merge",
        "mergeOverwrite",
        "sortAlpha",
        "join",
        "splitList",
        "toString",
        "int",
        "int64",
        "float64",
        "add",
        "sub",
        "mul",
        "div",
        "max",
        "min",
        "sha256sum",
        "b64enc",
        "kindIs",
        "kindOf",
        "typeOf",
        "typeIs",
        "semverCompare",
        "until",
        "first",
        "last",
        "uniq",
        "append",
    ]
)


def template_files() -> list[Path]:
    return sorted(path for path in TEMPLATES.iterdir() if path.suffix in {".yaml", ".tpl", ".txt"})


def _get(data: Any, path: list[str]) -> bool:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return False
        data = data[key]
    return True


def _actions(text: str) -> list[str]:
    """Template actions without comments, each as its inner text."""
    return [action for action in _ACTION.findall(text) if not action.startswith("/*")]


def test_chart_yaml() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == CHART.name
    assert chart["type"] == "application"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    assert isinstance(chart["appVersion"], str)


@pytest.mark.parametrize(
    "path",
    [CHART / "Chart.yaml", CHART / "values.yaml", *sorted((CHART / "files").glob("*.yml"))],
    ids=lambda path: str(path.relative_to(CHART)),
)
def test_plain_yaml_is_well_formed(path: Path) -> None:
    assert isinstance(yaml.safe_load(path.read_text(encoding="utf-8")), dict)


def test_schema_is_valid_and_accepts_the_defaults() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.Draft7Validator(SCHEMA).validate(VALUES)


def _set(values: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(values)
    *parents, last = path.split(".")
    node = changed
    for key in parents:
        node = node[key][0] if isinstance(node[key], list) else node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return changed


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("securityContext.readOnlyRootFilesystem", False),
        ("securityContext.allowPrivilegeEscalation", True),
        ("securityContext.runAsNonRoot", False),
        ("securityContext.capabilities.drop", []),
        ("securityContext.capabilities.add", ["NET_RAW"]),
        ("podSecurityContext.runAsNonRoot", False),
        ("podSecurityContext.runAsUser", 0),
        ("config.exporter.listen_address", "0.0.0.0:9727"),
        ("config.targets", []),
        ("config.targets.ports", ["tcp/ldap"]),
        ("config.targets.host", _DELETE),
        ("config.defaults.interval_seconds", 0),
        ("containerPort", 70000),
        ("service.type", "ExternalName"),
        ("serviceMonitor.interval", "30 seconds"),
        ("image.pullPolicy", "Sometimes"),
        ("replicaCount", "one"),
        ("unknownTopLevelKey", True),
    ],
)
def test_schema_refuses(path: str, value: Any) -> None:
    errors = list(jsonschema.Draft7Validator(SCHEMA).iter_errors(_set(VALUES, path, value)))
    assert errors, f"{path}={value!r} was accepted"


def test_schema_accepts_documented_options() -> None:
    """The options values.yaml documents in comments are valid."""
    values = _set(VALUES, "securityContext.capabilities.add", ["NET_BIND_SERVICE"])
    values = _set(values, "config.resolver", {"nameservers": ["198.18.0.10"]})
    values = _set(values, "env", [{"name": "PORTQRY_DEFAULTS__TIMEOUT_SECONDS", "value": "1.5"}])
    values = _set(values, "serviceMonitor", {"enabled": True, "additionalLabels": {"release": "kps"}})
    values["config"]["targets"].append({"name": "fs1", "host": "198.18.0.20", "ports": ["both/135", "tcp/49152-65535"]})
    jsonschema.Draft7Validator(SCHEMA).validate(values)


def test_every_values_path_exists() -> None:
    used = set()
    for path in template_files():
        for match in _VALUES_PATH.finditer(path.read_text(encoding="utf-8")):
            keys = match.group(1).lstrip(".").split(".")
            used.add(keys[0])
            assert _get(VALUES, keys), f"{path.name}: .Values.{'.'.join(keys)} is not in values.yaml"
    assert used, "no .Values path found"
    unused = set(VALUES) - used
    assert not unused, f"values.yaml keys no template reads: {sorted(unused)}"


@pytest.mark.parametrize("path", template_files(), ids=lambda path: path.name)
def test_template_structure(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count("{{") == text.count("}}"), "unbalanced {{ }}"
    defined = set(re.findall(r'\{\{-?\s*define\s+"([^"]+)"', (TEMPLATES / "_helpers.tpl").read_text()))
    depth = 0
    for action in _actions(text):
        bare = _STRING.sub('""', action)
        words = re.findall(r"(?<![\w.$])([A-Za-z_]\w*)\b", bare)
        if words and words[0] in _BLOCK_OPEN:
            depth += 1
        elif words and words[0] == "end":
            depth -= 1
            assert depth >= 0, f"{path.name}: {{{{ end }}}} without a block"
        elif words and words[0] == "else":
            assert depth > 0, f"{path.name}: else outside a block"
        for word in words:
            assert word in _FUNCTIONS or word in _KEYWORDS, f"{path.name}: unknown function {word!r} in {action!r}"
        for name in re.findall(r'\b(?:include|template)\s+"([^"]+)"', action):
            assert name in defined, f"{path.name}: no template named {name!r}"
    assert depth == 0, f"{path.name}: {depth} block(s) not closed"


@pytest.mark.parametrize(
    "path", [path for path in template_files() if path.suffix == ".yaml"], ids=lambda path: path.name
)
def test_template_yaml_skeleton_parses(path: Path) -> None:
    """Lines that are only an action go; inline actions become a placeholder; the rest must be YAML."""
    lines = []
    text = _COMMENT.sub("", path.read_text(encoding="utf-8"))
    for line in text.splitlines():
        if re.fullmatch(r"\s*(\{\{.*?\}\}\s*)+", line):
            continue
        lines.append(_ACTION.sub("X", line))
    document = yaml.safe_load("\n".join(lines))
    assert isinstance(document, dict) and {"apiVersion", "kind", "metadata"} <= set(document), path.name


def _template(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def test_deployment_probes_security_and_config() -> None:
    deployment = _template("deployment.yaml")
    assert re.search(r"livenessProbe:\n\s+httpGet:\n\s+path: /-/healthy\n", deployment)
    assert re.search(r"readinessProbe:\n\s+httpGet:\n\s+path: /-/ready\n", deployment)
    assert "- --config\n            - /etc/portqry-exporter/config.toml" in deployment
    assert "mountPath: /etc/portqry-exporter" in deployment
    assert "toYaml .Values.securityContext" in deployment and "toYaml .Values.podSecurityContext" in deployment
    assert "toYaml .Values.resources" in deployment
    assert "checksum/config" in deployment
    security = VALUES["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["runAsNonRoot"] is True and security["capabilities"]["drop"] == ["ALL"]
    assert VALUES["podSecurityContext"]["runAsNonRoot"] is True
    assert VALUES["resources"]["requests"] and VALUES["resources"]["limits"]


def test_configmap_renders_config_toml() -> None:
    assert "config.toml: |" in _template("configmap.yaml")
    helpers = _template("_helpers.tpl")
    assert 'define "portqry-exporter.configToml"' in helpers
    assert "[exporter]\nlisten_address = " in helpers
    assert "[[{{ include" in helpers  # lists of tables, e.g. [[targets]]
    config = VALUES["config"]
    assert {"exporter", "defaults", "targets"} <= set(config)
    assert {"name", "host", "ports"} <= set(config["targets"][0])


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(value[k])}" for k in sorted(value)) + " }"
    raise TypeError(value)


def render_config_toml(values: dict[str, Any]) -> str:
    """What the chart's ``portqry-exporter.configToml`` helper is written to produce, in Python.

    A mirror, not the template: it shows that the values make a config the exporter accepts when rendered as
    intended; that the Go template does render this is not verified (no helm).
    """
    config = values["config"]
    exporter = {k: v for k, v in (config.get("exporter") or {}).items() if k != "listen_address"}
    listen = f"{values['listenHost']}:{values['containerPort']}"
    lines = ["[exporter]", f"listen_address = {json.dumps(listen)}"]
    lines += [f"{_toml_key(k)} = {_toml_value(exporter[k])}" for k in sorted(exporter)]
    for table in sorted(set(config) - {"exporter"}):
        content = config[table]
        chunks = [content] if isinstance(content, dict) else content
        for chunk in chunks:
            if isinstance(content, dict) and not content:
                continue
            header = f"[{_toml_key(table)}]" if isinstance(content, dict) else f"[[{_toml_key(table)}]]"
            lines += ["", header, *(f"{_toml_key(k)} = {_toml_value(chunk[k])}" for k in sorted(chunk))]
    return "\n".join(lines) + "\n"


def test_default_values_make_a_config_the_exporter_accepts(tmp_path: Path) -> None:
    """The default ``config`` values, rendered as the chart intends, pass ``--config.check``."""
    text = render_config_toml(VALUES)
    assert tomllib.loads(text)["exporter"]["listen_address"] == "0.0.0.0:9727"
    config = tmp_path / "config.toml"
    config.write_text(text, encoding="utf-8")
    result = config_check("--config", config)
    assert result.returncode == 0, f"{text}\n{result.stdout}{result.stderr}"


def test_service_monitor_sets_the_job_the_rules_select() -> None:
    monitor = _template("servicemonitor.yaml")
    assert "targetLabel: job\n          replacement: portqry" in monitor
    assert "kind: ServiceMonitor" in monitor and "if .Values.serviceMonitor.enabled" in monitor


def test_prometheus_rule_reads_the_shipped_rule_file() -> None:
    rule = _template("prometheusrule.yaml")
    (name,) = re.findall(r'\.Files\.Get "([^"]+)"', rule)
    shipped = CHART / name
    assert shipped.is_file()
    assert yaml.safe_load(shipped.read_text(encoding="utf-8"))["groups"]
    assert "if .Values.prometheusRule.enabled" in rule
    # .helmignore must not drop it from a packaged chart
    ignored = (CHART / ".helmignore").read_text(encoding="utf-8").split()
    assert not any(Path(name).match(pattern) or name.startswith(pattern) for pattern in ignored)
