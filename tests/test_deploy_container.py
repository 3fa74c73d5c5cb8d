"""deploy/container: the Containerfile and build.sh build an image that runs, and the chart's default image is it.

Without a builder (the static half): the image build.sh tags is the Helm chart's default image
(``image.repository`` : the chart's ``appVersion``, which is the package's version); the Containerfile runs
``portqry-exporter`` as the chart's non-root user and exposes the chart's port.

With a builder (root, podman, mmdebstrap; runc where crun cannot run): ``deploy/container/build.sh`` builds
the image for real, into a podman storage of this test's own (``podman --root/--runroot`` under a temporary
directory, removed afterwards, so no image of the machine's is touched): mmdebstrap's Debian 12 root file
system imported as the base, Debian's python3 and pip, ``pip install .`` from PyPI. Then, in the image, as the
chart runs it (user 65534, read-only root, no capabilities, no new privileges): the console script is at
/usr/local/bin/portqry-exporter, where the systemd unit's ExecStart looks; ``--config.check`` passes on the
shipped config and on the chart's rendered one; the chart's ``ordinalFrom: podName`` command line works with the
image's /bin/sh; and the daemon serves /metrics on 127.0.0.1 (``--network=host``, a free loopback port) with the
shipped config's loopback probes.

Where no builder works (not root, podman or mmdebstrap missing, or podman cannot start a container) the build
tests skip with the reason, in CI too: the issue asks for exactly that. A build that fails otherwise fails.
A full build takes about 70 s here (mmdebstrap about 35 s); the network it needs is Debian's mirror and PyPI.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests import helm
from tests.helpers import REPO

CONTAINER = REPO / "deploy" / "container"
BUILD = CONTAINER / "build.sh"
CONTAINERFILE = CONTAINER / "Containerfile"
CHART = REPO / "deploy" / "helm" / "portqry-exporter"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
NO_BUILDER = 3
"""build.sh's exit status when it finds no builder here (the reason on stderr)."""


def chart_default_image() -> str:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    return f"{VALUES['image']['repository']}:{VALUES['image']['tag'] or chart['appVersion']}"


def test_build_sh_tags_the_charts_default_image() -> None:
    result = subprocess.run([str(BUILD), "--print-image"], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.strip() == chart_default_image() == "localhost/portqry-exporter:0.1.0"


def test_chart_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert chart["appVersion"] == pyproject["project"]["version"]


def test_rendered_chart_runs_the_built_image(tmp_path: Path) -> None:
    """helm itself renders build.sh's tag as the workload's image."""
    objects = helm.by_kind(helm.render(None, tmp_path))
    [container] = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == chart_default_image()


def _instructions() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text(encoding="utf-8"))
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.setdefault(word.upper(), []).append(rest.strip())
    return out


def test_containerfile_runs_the_exporter_as_the_charts_user() -> None:
    steps = _instructions()
    assert steps["FROM"] == ["${BASE}"]
    assert json.loads(steps["ENTRYPOINT"][-1]) == ["/usr/local/bin/portqry-exporter"]
    security = VALUES["podSecurityContext"]
    assert steps["USER"] == [f"{security['runAsUser']}:{security['runAsGroup']}"]
    assert steps["USER"][0].split(":")[0] != "0"
    assert steps["EXPOSE"] == [str(VALUES["containerPort"])]
    cmd = json.loads(steps["CMD"][-1])
    assert cmd[:2] == ["--config", "/etc/portqry-exporter/config.toml"]
    assert any("pip install" in run and "/src" in run for run in steps["RUN"])
    assert "config.example.toml /etc/portqry-exporter/config.toml" in steps["COPY"]


def test_build_sh_is_executable_bash() -> None:
    assert os.access(BUILD, os.X_OK)
    subprocess.run(["bash", "-n", str(BUILD)], check=True, timeout=30)


def test_build_sh_says_when_there_is_no_builder(tmp_path: Path) -> None:
    """Exit status 3 and the reason: what the build tests below turn into a skip."""
    result = subprocess.run(
        [str(BUILD)],
        env={**os.environ, "PODMAN": str(tmp_path / "no-podman")},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == NO_BUILDER
    assert "no-podman not found (apt-get install podman)" in result.stderr


# --------------------------------------------------------------------------------------------------
# with a builder: build the image, run it


@dataclass(frozen=True)
class Podman:
    """A podman with this test's own storage, and the run options that work on this machine."""

    command: list[str]
    run_options: list[str]
    image: str

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``podman run --rm`` the image as the chart does (user, read-only root, no capabilities)."""
        return subprocess.run(
            [*self.command, "run", "--rm", *self.run_options, *CHART_LIKE, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


CHART_LIKE = [
    "--user",
    "65534:65534",
    "--read-only",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "--network=host",
]
"""The chart's securityContext as podman options; host network: the daemon listens on 127.0.0.1 only."""


def _limits() -> list[str]:
    """The rlimits build.sh uses (podman's defaults need CAP_SYS_RESOURCE where the hard limits are lower)."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nproc = 32768 if nproc == resource.RLIM_INFINITY else min(nproc, 32768)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    """Build the image with build.sh into a private storage; skip with the reason where no builder works."""
    if os.geteuid() != 0:
        pytest.skip("no builder: rootful podman and mmdebstrap's root mode need root")
    missing = [tool for tool in ("podman", "mmdebstrap") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"no builder: {', '.join(missing)} not installed (Debian packages podman, mmdebstrap)")
    root = tmp_path_factory.mktemp("podman")
    command = ["podman", "--root", str(root / "storage"), "--runroot", str(root / "run")]
    image = chart_default_image()
    try:
        started = time.monotonic()
        result = subprocess.run(
            [str(BUILD)],
            env={**os.environ, "PODMAN": " ".join(command)},
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        output = result.stdout + result.stderr
        if result.returncode == NO_BUILDER:
            pytest.skip(f"no builder: {result.stderr.strip().splitlines()[-1]}")
        assert result.returncode == 0, output[-6000:]
        print(f"build.sh built {image} in {time.monotonic() - started:.0f} s")
        runtime = ["--runtime", "runc"] if "using runc" in output else []
        yield Podman([*command[:1], *runtime, *command[1:]], _limits(), image)
    finally:
        subprocess.run([*command, "system", "reset", "--force"], capture_output=True, timeout=300, check=False)
        shutil.rmtree(root, ignore_errors=True)


def test_image_user_entrypoint_and_port(podman: Podman) -> None:
    result = subprocess.run(
        [*podman.command, "image", "inspect", podman.image], capture_output=True, text=True, timeout=60, check=True
    )
    [info] = json.loads(result.stdout)
    config = info["Config"]
    assert config["User"] == "65534:65534"
    assert config["Entrypoint"] == ["/usr/local/bin/portqry-exporter"]
    assert "9727/tcp" in config["ExposedPorts"]


def test_console_scripts_are_where_the_systemd_unit_looks(podman: Podman) -> None:
    """pip as root on Debian 12 (the README's set-up) puts the scripts in /usr/local/bin: the unit's ExecStart."""
    result = podman.run(
        "--entrypoint",
        "/bin/sh",
        podman.image,
        "-c",
        "command -v portqry-exporter; command -v portqry; id -u; python3 -c 'import sys; print(sys.version_info[:2])'",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "/usr/local/bin/portqry-exporter",
        "/usr/local/bin/portqry",
        "65534",
        "(3, 11)",
    ]
    unit = (REPO / "deploy" / "systemd" / "portqry-exporter.service").read_text(encoding="utf-8")
    assert "\nExecStart=/usr/local/bin/portqry-exporter " in unit


def test_config_check_passes_on_the_shipped_config(podman: Podman) -> None:
    result = podman.run(podman.image, "--config.check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "/etc/portqry-exporter/config.toml: OK" in result.stdout + result.stderr


def test_config_check_passes_on_the_charts_config(podman: Podman, tmp_path: Path) -> None:
    """The chart's rendered ConfigMap, mounted where the chart mounts it, with the chart's args."""
    objects = helm.by_kind(helm.render(None, tmp_path))
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "config.toml").write_text(objects["ConfigMap"]["data"]["config.toml"], encoding="utf-8")
    config_dir.chmod(0o755)
    (config_dir / "config.toml").chmod(0o644)
    [container] = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    result = podman.run(
        "--volume", f"{config_dir}:/etc/portqry-exporter:ro", podman.image, *container["args"], "--config.check"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_charts_pod_name_ordinal_command_runs_in_the_image(podman: Podman, tmp_path: Path) -> None:
    """``statefulset.ordinalFrom: podName`` runs the exporter through the image's /bin/sh."""
    values = {"mode": "statefulset", "replicaCount": 3, "statefulset": {"ordinalFrom": "podName"}}
    sts = helm.by_kind(helm.render(values, tmp_path))["StatefulSet"]
    [container] = sts["spec"]["template"]["spec"]["containers"]
    command, args = container["command"], container["args"]
    result = podman.run(
        "--env",
        f"POD_NAME={sts['metadata']['name']}-2",
        "--entrypoint",
        command[0],
        podman.image,
        *command[1:],
        *args,
        "--config.check",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _free_loopback_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_image_serves_metrics_on_loopback(podman: Podman) -> None:
    """The daemon in the image, on the shipped config (loopback probes), serves /metrics on 127.0.0.1."""
    port = _free_loopback_port()
    name = f"portqry-exporter-test-{os.getpid()}"
    proc = subprocess.Popen(
        [
            *podman.command,
            "run",
            "--rm",
            "--name",
            name,
            *podman.run_options,
            *CHART_LIKE,
            podman.image,
            "--config",
            "/etc/portqry-exporter/config.toml",
            "--web.listen-address",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    text = response.read().decode()
            except OSError:
                time.sleep(0.3)
                continue
            if 'target="localhost"' in text and "portqry_port_state{" in text:
                break
            time.sleep(0.3)
        assert proc.poll() is None, proc.communicate(timeout=10)[0]
        assert re.search(r'^portqry_port_state\{target="localhost",[^}]*port="1",[^}]*\} 1\.0$', text, re.M), text
        assert "process_cpu_seconds_total " in text
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/healthy", timeout=5) as response:
            assert response.status == 200
    finally:
        subprocess.run([*podman.command, "stop", "--time", "10", name], capture_output=True, timeout=60, check=False)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
