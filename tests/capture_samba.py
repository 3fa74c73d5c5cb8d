"""Capture real replies from the Samba AD DC test bed into ``tests/data/samba/`` (issue 3).

Run as root from the repository root (needs ``ip netns``, iptables and samba, see ``tests/testbed/``)::

    sudo python -m tests.capture_samba            # writes tests/data/samba/*.bin, facts.json, README.md
    sudo python -m tests.capture_samba --out DIR  # somewhere else

It provisions a fresh DC with :meth:`testbed.SambaDC.start`, does each exchange itself with plain
sockets (impacket only frames the endpoint-mapper bind and request), writes the reply bytes exactly as
received, and tears the DC down again, also on failure.

Network rule: every packet goes to the DC namespace's address (``198.18.N.2``) this script created;
nothing else is contacted.

The replies are framed and checked **without** the codecs under test (:mod:`exporter.wire`): BER
lengths, the DCE/RPC fragment headers and the NBSTAT layout are read by the small helpers below,
the endpoint count comes from impacket's own NDR decoder and from ``rpcclient epmlookup``, and the
domain GUID from Samba's ``sam.ldb`` (via Samba's python bindings). What the test bed knew goes into
``facts.json``, which ``tests/test_wire_samba.py`` compares the codecs' output with. Only the
*requests* are built with :mod:`exporter.wire` (the same bytes the probes send).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import socket
import struct
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exporter.wire.epm import encode_ept_lookup_request
from exporter.wire.kerberos import encode_as_req, frame_tcp
from exporter.wire.ldap import encode_ldap_ping, encode_root_dse_search
from exporter.wire.nbstat import encode_node_status_request
from tests import testbed

OUT_DIR = Path(__file__).resolve().parent / "data" / "samba"

#: Fixed request parameters, so a re-capture differs only where the DC's answer does.
CLDAP_ROOTDSE_MSG_ID = 1
CLDAP_PING_MSG_ID = 2
CLDAP_PING_WITH_IP_MSG_ID = 3
LDAP_TCP_MSG_ID = 4
PING_NT_VERSION = 0x16  # V5 | V5EX | WITH_CLOSEST_SITE: what exporter/probes/ldap.py sends
PING_NT_VERSION_WITH_IP = 0x1E  # the same plus V5EX_WITH_IP (DcSockAddr in the reply)
NBSTAT_TRN_ID = 0x5051
KRB_PRINCIPAL = "portqry-exporter-probe"  # exporter/probes/kerberos.py's; it does not exist
KRB_NONCE_UDP = 0x01020304
KRB_NONCE_TCP = 0x05060708
EPM_MAX_ENTS = 500  # what exporter/adapters/impacket.py asks per page

TIMEOUT = 5.0
TRIES = 3


def log(msg: str) -> None:
    print(f"capture_samba: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# framing helpers, independent of exporter.wire


def ber_total(buf: bytes, pos: int = 0) -> int | None:
    """Header + content length of the BER TLV at ``pos`` (low tag numbers, definite lengths only)."""
    if len(buf) < pos + 2:
        return None
    first = buf[pos + 1]
    if first < 0x80:
        return 2 + first
    n = first & 0x7F
    if n == 0 or n > 4:
        raise ValueError(f"unexpected BER length octet 0x{first:02x} at {pos + 1}")
    if len(buf) < pos + 2 + n:
        return None
    return 2 + n + int.from_bytes(buf[pos + 2 : pos + 2 + n], "big")


def ldap_messages(buf: bytes) -> list[bytes]:
    """Split complete LDAPMessages (SEQUENCE, 0x30) off ``buf``; an incomplete tail is left out."""
    out, pos = [], 0
    while pos < len(buf):
        if buf[pos] != 0x30:
            raise ValueError(f"not an LDAPMessage at {pos}: 0x{buf[pos]:02x}")
        total = ber_total(buf, pos)
        if total is None or pos + total > len(buf):
            break
        out.append(buf[pos : pos + total])
        pos += total
    return out


def ldap_op_tag(message: bytes) -> int:
    """The protocolOp tag of one LDAPMessage (after the messageID INTEGER)."""
    inner = 2 + (message[1] & 0x7F if message[1] & 0x80 else 0)  # SEQUENCE header
    id_total = ber_total(message, inner)
    assert id_total is not None
    return message[inner + id_total]


SEARCH_RES_DONE = 0x65  # [APPLICATION 5]


def recv_exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError(f"peer closed after {len(data)} of {count} bytes")
        data += chunk
    return data


def read_co_response(sock: socket.socket) -> tuple[bytes, list[bytes]]:
    """Read connection-oriented DCE/RPC PDUs until PFC_LAST_FRAG; return (raw PDUs, stubs)."""
    raw = b""
    stubs: list[bytes] = []
    for _ in range(1000):
        header = recv_exact(sock, 16)
        if header[0] != 5 or header[4] & 0xF0 != 0x10:
            raise ValueError(f"unexpected CO header {header.hex()}")
        ptype, flags = header[2], header[3]
        frag_len, auth_len = struct.unpack_from("<HH", header, 8)
        pdu = header + recv_exact(sock, frag_len - 16)
        raw += pdu
        if ptype == 3:
            raise ValueError(f"fault PDU, status 0x{struct.unpack_from('<I', pdu, 24)[0]:08x}")
        if ptype != 2 or auth_len:
            raise ValueError(f"unexpected PDU type {ptype} / auth_len {auth_len}")
        stubs.append(pdu[24:frag_len])
        if flags & 0x02:
            return raw, stubs
    raise ValueError("too many fragments")


def nbstat_table(data: bytes) -> tuple[list[tuple[str, int, int]], str]:
    """Names and unit ID of a NODE STATUS RESPONSE: header 12, RR_NAME 34, type/class/ttl/rdlength 10."""
    ancount = struct.unpack_from(">H", data, 6)[0]
    if ancount != 1 or data[12] != 32:
        raise ValueError("unexpected NBSTAT response layout")
    rdata_at = 12 + 34 + 10
    (rdlength,) = struct.unpack_from(">H", data, rdata_at - 2)
    rdata = data[rdata_at : rdata_at + rdlength]
    names = []
    for i in range(rdata[0]):
        entry = rdata[1 + 18 * i : 19 + 18 * i]
        names.append((entry[:15].decode("latin-1").rstrip(" "), entry[15], struct.unpack(">H", entry[16:])[0]))
    unit = rdata[1 + 18 * rdata[0] : 7 + 18 * rdata[0]]
    return names, ":".join(f"{b:02x}" for b in unit)


# --------------------------------------------------------------------------------------------------
# exchanges


def udp_exchange(address: str, port: int, request: bytes, accept: int = 0) -> bytes:
    """Send one datagram from a connected socket and return the first reply (``TRIES`` attempts)."""
    last: Exception | None = None
    for _ in range(TRIES):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect((address, port))
            sock.send(request)
            try:
                reply = sock.recv(65535)
            except OSError as exc:
                last = exc
                continue
            if len(reply) > accept:
                return reply
    raise RuntimeError(f"no reply from {address}:{port}/udp ({last})")


def cldap(address: str, request: bytes) -> bytes:
    reply = udp_exchange(address, 389, request)
    messages = ldap_messages(reply)
    if b"".join(messages) != reply or ldap_op_tag(messages[-1]) != SEARCH_RES_DONE:
        raise RuntimeError("CLDAP reply is not whole LDAPMessages ending with a SearchResultDone")
    return reply


def ldap_tcp_rootdse(address: str) -> bytes:
    with socket.create_connection((address, 389), timeout=TIMEOUT) as sock:
        sock.sendall(encode_root_dse_search(LDAP_TCP_MSG_ID))
        buf = b""
        while True:
            messages = ldap_messages(buf)
            if messages and ldap_op_tag(messages[-1]) == SEARCH_RES_DONE:
                end = sum(len(m) for m in messages)
                if end != len(buf):
                    raise RuntimeError("bytes after the SearchResultDone")
                return buf
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("LDAP server closed before the SearchResultDone")
            buf += chunk


def nbstat_registered(dc: testbed.SambaDC, timeout: float = 60.0) -> bytes:
    """NODE STATUS of ``*`` once the DC has registered its names.

    Right after start-up Samba's nbt server lists only its permanent ``__SAMBA__<00>``/``<20>`` names;
    the DC's own names become active after broadcast registration (about 2 s later). Poll until
    ``DC1<00>``, ``DC1<20>`` and ``PQTEST<00>`` are listed.
    """
    want = {(dc.host_name.upper(), 0x00), (dc.host_name.upper(), 0x20), (dc.domain.upper(), 0x00)}
    deadline = time.monotonic() + timeout
    while True:
        reply = udp_exchange(dc.address, 137, encode_node_status_request(NBSTAT_TRN_ID))
        names, _unit = nbstat_table(reply)
        if want <= {(name, suffix) for name, suffix, _flags in names}:
            return reply
        if time.monotonic() > deadline:
            raise RuntimeError(f"NetBIOS names not registered after {timeout:.0f} s: {names}")
        time.sleep(0.5)


def kerberos_tcp(address: str, request: bytes) -> bytes:
    with socket.create_connection((address, 88), timeout=TIMEOUT) as sock:
        sock.sendall(frame_tcp(request))
        prefix = recv_exact(sock, 4)
        (length,) = struct.unpack(">I", prefix)
        if length > 1 << 20:
            raise RuntimeError(f"Kerberos TCP record of {length} bytes")
        return prefix + recv_exact(sock, length)


def epm_pages(address: str) -> list[tuple[bytes, bytes]]:
    """Bind to the endpoint mapper and call ept_lookup (all elements) twice: page 1, then page 2 with the
    handle from page 1 (Samba's end of list). Returns ``[(raw_response_pdus, stub), ...]``."""
    from impacket.dcerpc.v5 import epm as impacket_epm
    from impacket.dcerpc.v5 import transport

    trans = transport.TCPTransport(address, 135)
    trans.set_connect_timeout(TIMEOUT)
    dce = trans.get_dce_rpc()
    dce.connect()
    try:
        dce.bind(impacket_epm.MSRPC_UUID_PORTMAP)
        sock = trans.get_socket()
        sock.settimeout(TIMEOUT)
        out = []
        handle = bytes(20)
        for _ in range(2):
            dce.call(2, encode_ept_lookup_request(max_ents=EPM_MAX_ENTS, entry_handle=handle))
            raw, stubs = read_co_response(sock)
            stub = b"".join(stubs)
            out.append((raw, stub))
            handle = stub[:20]
        return out
    finally:
        with contextlib.suppress(Exception):
            dce.disconnect()


def epm_summary(stub: bytes) -> dict[str, object]:
    """Entry counts of one ept_lookup page by impacket's NDR decoder (independent of exporter.wire.epm)."""
    from impacket.dcerpc.v5 import epm as impacket_epm

    resp = impacket_epm.ept_lookupResponse()
    resp.fromString(stub)
    seqs: dict[str, int] = {}
    tcp_ports: set[int] = set()
    for entry in resp["entries"]:
        tower = impacket_epm.EPMTower(b"".join(entry["tower"]["tower_octet_string"]))
        binding = impacket_epm.PrintStringBinding(tower["Floors"])
        seq = binding.split(":", 1)[0]
        seqs[seq] = seqs.get(seq, 0) + 1
        if seq == "ncacn_ip_tcp":
            tcp_ports.add(int(binding.rsplit("[", 1)[1].rstrip("]")))
    return {
        "num_ents": int(resp["num_ents"]),
        "status": int(resp["status"]),
        "protocol_sequences": dict(sorted(seqs.items())),
        "ncacn_ip_tcp_ports": sorted(tcp_ports),
        "handle_hex": stub[:20].hex(),
    }


def rpcclient_epm_count(address: str) -> int | None:
    """Endpoint count from Samba's own client (``rpcclient epmlookup``), or ``None`` if it failed."""
    try:
        proc = subprocess.run(
            ["rpcclient", "-U%", "-N", f"ncacn_ip_tcp:{address}", "-c", "epmlookup"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return len(lines) if proc.returncode == 0 and lines else None


_SAM_SCRIPT = """
import json, sys, uuid
import ldb
from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB
lp = LoadParm()
lp.load(sys.argv[1])
db = SamDB(url=sys.argv[2], lp=lp, session_info=system_session(), flags=ldb.FLG_RDONLY)
res = db.search(base=sys.argv[3], scope=ldb.SCOPE_BASE, attrs=["objectGUID", "msDS-Behavior-Version"])
print(json.dumps({
    "domain_guid": str(uuid.UUID(bytes_le=bytes(res[0]["objectGUID"][0]))),
    "domain_behavior_version": int(str(res[0]["msDS-Behavior-Version"][0])),
}))
"""


def sam_facts(dc: testbed.SambaDC) -> dict[str, object]:
    """The domain object's objectGUID and msDS-Behavior-Version, read from the provisioned ``sam.ldb``
    with Samba's own python bindings (system python, local file access, no network)."""
    sam = dc.target_dir / "private" / "sam.ldb"
    try:
        proc = subprocess.run(
            ["/usr/bin/python3", "-c", _SAM_SCRIPT, str(dc.smb_conf), str(sam), dc.base_dn],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"reading sam.ldb failed: {exc}") from exc
    if proc.returncode != 0:
        raise RuntimeError(f"reading sam.ldb failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    facts: dict[str, object] = json.loads(proc.stdout)
    return facts


def samba_version() -> str:
    """``samba --version`` without its ``Version`` prefix, e.g. ``4.17.12-Debian``."""
    out = subprocess.run(["samba", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return "Samba " + out.removeprefix("Version ").strip()


def ns_mac(dc: testbed.SambaDC) -> str:
    out = dc.ns.run(["cat", f"/sys/class/net/{dc.ns.veth_ns}/address"]).stdout.strip()
    return out


# --------------------------------------------------------------------------------------------------


def capture(dc: testbed.SambaDC, out: Path) -> dict[str, Any]:
    """Do every exchange against ``dc`` and write the files; return the facts."""
    addr = dc.address
    files: dict[str, bytes] = {}
    started = datetime.now(UTC)

    log("CLDAP rootDSE (udp/389)")
    files["cldap_rootdse.bin"] = cldap(addr, encode_root_dse_search(CLDAP_ROOTDSE_MSG_ID))
    log("CLDAP LDAP ping (udp/389)")
    files["cldap_netlogon_ping.bin"] = cldap(addr, encode_ldap_ping(CLDAP_PING_MSG_ID, dc.dns_domain, PING_NT_VERSION))
    files["cldap_netlogon_ping_with_ip.bin"] = cldap(
        addr, encode_ldap_ping(CLDAP_PING_WITH_IP_MSG_ID, dc.dns_domain, PING_NT_VERSION_WITH_IP)
    )
    log("LDAP rootDSE (tcp/389)")
    files["ldap_tcp_rootdse.bin"] = ldap_tcp_rootdse(addr)
    log("NetBIOS node status (udp/137)")
    files["nbstat_response.bin"] = nbstat_registered(dc)
    log("Kerberos AS-REQ (udp/88, tcp/88)")
    files["krb_error_udp.bin"] = udp_exchange(addr, 88, encode_as_req(dc.realm, KRB_PRINCIPAL, KRB_NONCE_UDP))
    files["krb_error_tcp.bin"] = kerberos_tcp(addr, encode_as_req(dc.realm, KRB_PRINCIPAL, KRB_NONCE_TCP))
    log("endpoint mapper ept_lookup pages 1 and 2 (tcp/135)")
    (raw1, stub1), (raw2, stub2) = epm_pages(addr)
    files["epm_lookup_page1_pdus.bin"] = raw1
    files["epm_lookup_page1_stub.bin"] = stub1
    files["epm_lookup_page2_not_registered_pdus.bin"] = raw2
    files["epm_lookup_page2_not_registered_stub.bin"] = stub2
    finished = datetime.now(UTC)

    names, unit_id = nbstat_table(files["nbstat_response.bin"])
    page1, page2 = epm_summary(stub1), epm_summary(stub2)
    facts: dict[str, Any] = {
        "samba_version": samba_version(),
        "captured_from": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "captured_until": finished.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "address": addr,
        "realm": dc.realm,
        "dns_domain": dc.dns_domain,
        "fqdn": dc.fqdn,
        "base_dn": dc.base_dn,
        "netbios_domain": dc.domain.upper(),
        "dc_netbios_name": dc.host_name.upper(),
        **sam_facts(dc),
        "ldap": {
            "cldap_rootdse_message_id": CLDAP_ROOTDSE_MSG_ID,
            "cldap_ping_message_id": CLDAP_PING_MSG_ID,
            "cldap_ping_nt_version": PING_NT_VERSION,
            "cldap_ping_with_ip_message_id": CLDAP_PING_WITH_IP_MSG_ID,
            "cldap_ping_with_ip_nt_version": PING_NT_VERSION_WITH_IP,
            "tcp_rootdse_message_id": LDAP_TCP_MSG_ID,
        },
        "netbios": {
            "transaction_id": NBSTAT_TRN_ID,
            "names": [[name, suffix, flags] for name, suffix, flags in names],
            "mac": unit_id,
            "interface_mac": ns_mac(dc),
        },
        "kerberos": {"client_principal": KRB_PRINCIPAL, "error_code": 6},
        "epm": {
            "max_ents": EPM_MAX_ENTS,
            "entries": page1["num_ents"],
            "rpcclient_epmlookup_entries": rpcclient_epm_count(addr),
            "page1": page1,
            "page2": page2,
        },
        "files": {},
    }
    rpcclient = facts["epm"]["rpcclient_epmlookup_entries"]
    if rpcclient is not None and rpcclient != page1["num_ents"]:
        raise RuntimeError(f"ept_lookup page 1 has {page1['num_ents']} entries, rpcclient {rpcclient}")
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
        facts["files"][name] = {
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    (out / "facts.json").write_text(json.dumps(facts, indent=2) + "\n")
    (out / "README.md").write_text(readme(facts))
    return facts


def readme(facts: dict[str, Any]) -> str:
    """``README.md`` for the capture directory, filled in from ``facts``."""
    nb, epm, files = facts["netbios"], facts["epm"], facts["files"]
    names = ", ".join(f"`{n}<{s:02x}>` 0x{f:04x}" for n, s, f in nb["names"])
    seqs = ", ".join(f"{k} {v}" for k, v in epm["page1"]["protocol_sequences"].items())
    ports = ", ".join(str(p) for p in epm["page1"]["ncacn_ip_tcp_ports"])
    rows = {
        "cldap_rootdse.bin": (
            f"UDP 389 (CLDAP) reply to an anonymous rootDSE search, messageID "
            f'{facts["ldap"]["cldap_rootdse_message_id"]}: one SearchResultEntry (objectName "") and a '
            "SearchResultDone (success) in one datagram.",
            f"dnsHostName `{facts['fqdn']}`, defaultNamingContext `{facts['base_dn']}`, "
            f"isGlobalCatalogReady TRUE, isSynchronized TRUE, domainFunctionality "
            f"{facts['domain_behavior_version']}, currentTime within the capture window. No "
            "supportedSASLMechanisms over CLDAP.",
        ),
        "cldap_netlogon_ping.bin": (
            f"UDP 389 reply to the MS-ADTS 6.3.3 LDAP ping `(&(DnsDomain={facts['dns_domain']})"
            f"(NtVer=0x{facts['ldap']['cldap_ping_nt_version']:08x}))`, attribute `Netlogon`, messageID "
            f"{facts['ldap']['cldap_ping_message_id']} (the NtVer exporter/probes/ldap.py sends).",
            "Attribute `netlogon` (lower case): NETLOGON_SAM_LOGON_RESPONSE_EX, opcode 23, flags with "
            f"pdc, gc, ldap, ds, kdc, writable; GUID {facts['domain_guid']}; "
            f"forest/domain `{facts['dns_domain']}`, "
            f"host `{facts['fqdn']}`, NetBIOS `{facts['netbios_domain']}`/`{facts['dc_netbios_name']}`, "
            "DC and client site `Default-First-Site-Name` (compression pointers), NtVersion 5, tokens "
            "0xffff. Samba leaves NextClosestSiteName out although NtVer asked for it (0x10).",
        ),
        "cldap_netlogon_ping_with_ip.bin": (
            f"The same ping with NtVer 0x{facts['ldap']['cldap_ping_with_ip_nt_version']:08x} "
            f"(adds V5EX_WITH_IP), messageID {facts['ldap']['cldap_ping_with_ip_message_id']}.",
            f"As above plus DcSockAddrSize 16 and a sockaddr_in with {facts['address']}; NtVersion 0xd.",
        ),
        "ldap_tcp_rootdse.bin": (
            f"TCP 389 byte stream answering the same rootDSE search (messageID "
            f"{facts['ldap']['tcp_rootdse_message_id']}), cut at the end of the SearchResultDone.",
            "The same rootDSE as over CLDAP plus supportedSASLMechanisms.",
        ),
        "nbstat_response.bin": (
            "UDP 137 NODE STATUS RESPONSE to a query for `*<00>`, transaction ID "
            f"0x{nb['transaction_id']:04x}, "
            "taken once the DC had registered its names (polled; right after start only the two "
            "`__SAMBA__` names are listed).",
            f"{len(nb['names'])} names: {names}. Unit ID `{nb['mac']}`: **not a MAC** (the interface's is "
            f"`{nb['interface_mac']}`); see the note below.",
        ),
        "krb_error_udp.bin": (
            f"UDP 88 reply to an AS-REQ (no pre-authentication) for `{facts['kerberos']['client_principal']}@"
            f"{facts['realm']}`, which does not exist.",
            f"KRB-ERROR error-code 6 (KDC_ERR_C_PRINCIPAL_UNKNOWN), realm `{facts['realm']}`, sname "
            f"`krbtgt/{facts['realm']}`; Samba's KDC (Heimdal) also sends crealm and cname, no e-text, "
            "no e-data.",
        ),
        "krb_error_tcp.bin": (
            "TCP 88 reply to the same AS-REQ (other nonce), **with** its 4-byte big-endian record mark.",
            "The same KRB-ERROR.",
        ),
        "epm_lookup_page1_pdus.bin": (
            f"TCP 135: the connection-oriented response PDUs (all fragments, headers included) to the first "
            f"`ept_lookup` (opnum 2; inquiry rpc_c_ep_all_elts, null handle, max_ents {epm['max_ents']}), "
            "after an impacket bind to the endpoint mapper v3.0 (max_xmit 4280).",
            "Response fragments (first, last) whose stubs join to `epm_lookup_page1_stub.bin`.",
        ),
        "epm_lookup_page1_stub.bin": (
            "The NDR stub of page 1: the fragments' stubs joined.",
            f"{epm['entries']} entries ({seqs}); ncacn_ip_tcp ports {ports}; a non-null context handle; status 0.",
        ),
        "epm_lookup_page2_not_registered_pdus.bin": (
            "TCP 135, same connection: the response PDU to the second `ept_lookup`, sent with page 1's handle.",
            "One response PDU (first and last fragment).",
        ),
        "epm_lookup_page2_not_registered_stub.bin": (
            "Its NDR stub: Samba's end of list.",
            "Null handle, 0 entries, status 0x16c9a0d6 (ept_s_not_registered).",
        ),
    }
    table = "\n".join(
        f"| `{name}` | {files[name]['bytes']} | {what} | {decodes} |" for name, (what, decodes) in rows.items()
    )
    sums = "\n".join(f"{files[name]['sha256']}  {name}" for name in rows)
    return f"""# Real replies from the Samba AD DC test bed

Captured by `tests/capture_samba.py` (issue 3) from a freshly provisioned Samba AD DC of the test bed
(`tests/testbed/samba.py`: `SambaDC.start()`, realm `{facts["realm"]}`, DC `{facts["fqdn"]}`, NetBIOS domain
`{facts["netbios_domain"]}`), **{facts["samba_version"]}**, between {facts["captured_from"]} and
{facts["captured_until"]}. The DC ran in its own network namespace at {facts["address"]} (RFC 2544
test range; addresses inside replies are that address). Every file holds the reply bytes exactly as the
socket received them: no link, IP, UDP or TCP header. `tests/test_wire_samba.py` decodes them with
`exporter.wire` and compares with `facts.json`.

Re-capture (root, `ip netns`, samba, rpcclient; about 20 s; overwrites every file here):

    sudo python -m tests.capture_samba

A re-capture changes times, GUIDs, handles, ports, the address and the NBSTAT unit ID; the tests read
the expected values from `facts.json`, which the script writes together with the data.

## How the facts were obtained (not with the codecs under test)

- realm, names, address, base DN: the test bed's own configuration (`SambaDC`).
- `domain_guid`, `domain_behavior_version`: the domain object's objectGUID and msDS-Behavior-Version
  read from the provisioned `sam.ldb` with Samba's python bindings.
- `netbios`: the NODE STATUS table parsed by fixed offsets in the script; `interface_mac` from sysfs.
- `epm`: impacket's NDR decoder (`ept_lookupResponse`, `PrintStringBinding`) on the stubs, and the
  entry count of `rpcclient -c epmlookup` against the same DC.
- Requests were built with `exporter.wire` (the bytes the probes send); replies were framed by the
  script's own BER-length and DCE/RPC-header readers.

## Files

| File | Bytes | Exchange | Decodes to |
|---|---|---|---|
{table}
| `facts.json` | | What the test bed knew (see above), plus each file's size and SHA-256. | |

## Notes

- **NBSTAT unit ID is uninitialised memory.** Samba's `nbtd_node_status_reply_packet()`
  (source4/nbt_server/nodestatus.c) allocates the answer with `talloc_array` and no longer zeroes the
  `statistics` block (older versions had `ZERO_STRUCT(...statistics)`), so the 46 statistics bytes,
  the "MAC" included, are heap leftovers: constant for one samba process, different after every
  restart, never the interface's MAC. Do not treat a Samba unit ID as a MAC address.
- The DC registers its NetBIOS names about 2 s after it starts serving; before that NBSTAT lists only
  `__SAMBA__<00>` and `__SAMBA__<20>`.
- Samba returns every endpoint on page 1 together with a live context handle (status 0); the call with
  that handle then ends the list with ept_s_not_registered and a null handle.

SHA-256:

```
{sums}
```
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"output directory (default {OUT_DIR})")
    args = parser.parse_args(argv)
    reason = testbed.netns_unavailable_reason(["rpcclient"])
    if reason is not None:
        log(f"cannot run: {reason}")
        return 2
    t0 = time.monotonic()
    log("starting the Samba AD DC test bed")
    dc = testbed.SambaDC.start()
    try:
        log(f"DC {dc.fqdn} at {dc.address} up after {time.monotonic() - t0:.1f} s")
        facts = capture(dc, args.out)
    finally:
        dc.close()
        log("DC torn down")
    for name, info in facts["files"].items():
        log(f"{info['bytes']:6d}  {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
