#!/usr/bin/env bash
# Build portqry-exporter's container image with podman, from Debian's packages and PyPI only (no registry
# image is pulled):
#   1. mmdebstrap --variant=minbase bookworm makes a Debian 12 root file system as a tarball, which
#      `podman import` turns into the local image $BASE (kept; --rebuild-base makes it again);
#   2. `podman build` runs deploy/container/Containerfile on it: python3 and pip from Debian, then
#      `pip install .` of this repository (from PyPI: the build needs to reach it).
# The result is tagged $IMAGE, by default localhost/portqry-exporter:<the Helm chart's appVersion>, the
# chart's default image.
#
# Usage: deploy/container/build.sh [--rebuild-base] [--print-image]
# Environment:
#   IMAGE            the tag to build (default: the chart's default image)
#   BASE             the base image (default localhost/portqry-exporter-base:bookworm)
#   MIRROR           mmdebstrap's mirror argument: a URL, or a sources.list / deb822 .sources file (default:
#                    this host's apt sources, /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list)
#   PIP_CERT         a CA bundle file for pip during the build, where TLS to PyPI passes a proxy with its own
#                    CA (mounted read-only into the build only; default: this environment's PIP_CERT)
#   PODMAN           the podman command, with global options (e.g. "podman --root DIR --runroot DIR")
#   PODMAN_RUNTIME   the OCI runtime (default: podman's; when podman's cannot start a container here and runc
#                    is installed, runc)
# Needs root (rootful podman; mmdebstrap's root mode), and the Debian packages podman, mmdebstrap (and runc
# where crun cannot run: crun refuses cgroup v1 with controllers on the v2 hierarchy, "hybrid mode").
# Exit status: 0 built; 3 no builder here (no podman or mmdebstrap, not root, or podman cannot start a
# container: the reason is printed); 2 bad arguments; anything else a failed build.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
chart="$repo/deploy/helm/portqry-exporter"

rebuild_base=0
print_image=0
for arg in "$@"; do
  case "$arg" in
    --rebuild-base) rebuild_base=1 ;;
    --print-image) print_image=1 ;;
    -h|--help) sed -n '/^set -euo/q; 2,$p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

# The chart's default image: image.repository and, as image.tag is empty, Chart.yaml's appVersion.
chart_value() {  # chart_value FILE KEY: a top-level `KEY: value` of Chart.yaml, or `  KEY: value` under image:
  sed -n -E "s/^$2:[[:space:]]*\"?([^\"#[:space:]]*)\"?.*/\1/p" "$1" | head -n 1
}
app_version=$(chart_value "$chart/Chart.yaml" appVersion)
repository=$(sed -n -E '/^image:/,/^[^[:space:]#]/ s/^[[:space:]]+repository:[[:space:]]*"?([^"#[:space:]]+)"?.*/\1/p' \
  "$chart/values.yaml" | head -n 1)
IMAGE=${IMAGE:-$repository:$app_version}
BASE=${BASE:-localhost/portqry-exporter-base:bookworm}
if [ "$print_image" = 1 ]; then
  echo "$IMAGE"
  exit 0
fi

read -r -a podman <<< "${PODMAN:-podman}"
command -v "${podman[0]}" >/dev/null || { echo "build.sh: ${podman[0]} not found (apt-get install podman)" >&2; exit 3; }
[ "$(id -u)" = 0 ] || { echo "build.sh: needs root (rootful podman, mmdebstrap's root mode)" >&2; exit 3; }

# podman's default limits (RLIMIT_NOFILE 1048576) need CAP_SYS_RESOURCE to set where the hard limit is lower,
# as in some sandboxes: ask for this shell's own hard limit instead (NPROC: podman's default, 32768, or lower).
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
[ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
limits=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")

runtime_args=()
[ -n "${PODMAN_RUNTIME:-}" ] && runtime_args=(--runtime "$PODMAN_RUNTIME")

workdir=$(mktemp -d /tmp/portqry-exporter-build.XXXXXX)
trap 'rm -rf "$workdir"' EXIT

started=$(date +%s)
if [ "$rebuild_base" = 1 ] || ! "${podman[@]}" image exists "$BASE"; then
  command -v mmdebstrap >/dev/null || { echo "build.sh: mmdebstrap not found (apt-get install mmdebstrap)" >&2; exit 3; }
  if [ -z "${MIRROR:-}" ]; then
    for sources in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
      if [ -s "$sources" ]; then MIRROR=$sources; break; fi
    done
  fi
  [ -n "${MIRROR:-}" ] || { echo "build.sh: no apt sources on this host: set MIRROR to a Debian mirror URL" >&2; exit 1; }
  echo "build.sh: mmdebstrap --variant=minbase bookworm ($MIRROR) -> $BASE"
  # docs, man pages and translations are left out of the base; apt's lists and caches are cleaned by mmdebstrap
  mmdebstrap --variant=minbase --format=tar \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    bookworm "$workdir/rootfs.tar" "$MIRROR" </dev/null
  "${podman[@]}" import --change 'CMD ["/bin/bash"]' "$workdir/rootfs.tar" "$BASE" >/dev/null
  rm -f "$workdir/rootfs.tar"
fi

# Pick the runtime: podman's default if it can start a container here, else runc.
if [ "${#runtime_args[@]}" = 0 ]; then
  if ! probe=$("${podman[@]}" run --rm --network=none "${limits[@]}" "$BASE" true 2>&1); then
    if command -v runc >/dev/null && "${podman[@]}" --runtime runc run --rm --network=none "${limits[@]}" "$BASE" true; then
      echo "build.sh: podman's default runtime cannot start a container here (${probe##*: }); using runc"
      runtime_args=(--runtime runc)
    else
      echo "build.sh: podman cannot start a container here: $probe" >&2
      exit 3
    fi
  fi
fi

# The build context: only what the Containerfile copies (no .git, caches or test data).
context="$workdir/context"
mkdir -p "$context"
tar -C "$repo" --exclude=__pycache__ --exclude='*.pyc' -cf - pyproject.toml README.md config.example.toml exporter \
  | tar -C "$context" -xf -

cert_args=()
if [ -n "${PIP_CERT:-}" ]; then
  [ -r "$PIP_CERT" ] || { echo "build.sh: PIP_CERT=$PIP_CERT is not a readable file" >&2; exit 1; }
  cert_args=(--volume "$(readlink -f "$PIP_CERT"):/run/portqry-build-ca.crt:ro" --build-arg PIP_CERT=/run/portqry-build-ca.crt)
fi

echo "build.sh: podman build -> $IMAGE"
"${podman[@]}" "${runtime_args[@]}" build --network=host "${limits[@]}" "${cert_args[@]}" \
  --build-arg "BASE=$BASE" -f "$here/Containerfile" -t "$IMAGE" "$context"
echo "build.sh: built $IMAGE in $(( $(date +%s) - started )) s"
