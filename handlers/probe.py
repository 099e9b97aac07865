"""Checklist step 3: what the probe pod saw when it ran curl from inside the cluster.

The probe is the only step that observes the path instead of reasoning about it, so its
verdict must not depend on curl's wording: messages change between releases (7.88 says
"Couldn't connect to server", 8.x "Could not connect to server"). The verdict comes from
curl's exit code and the `%{json}` write-out; the verbose text is quoted as evidence.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from bot.codes import finding
from bot.endpoint import DEFAULT_PORTS
from bot.evidence import ProbeRun
from bot.model import Finding, Json
from handlers import k8s

# Linux retransmits an unanswered SYN after 1 s, then 2 s, 4 s…, and connect() fails with
# ETIMEDOUT only after ≥ 3 s even with tcp_syn_retries=1 (the default 6 is ~127 s). A
# refusal (RST) or an ICMP unreachable comes back within a round trip: milliseconds inside
# Azure, well under a second across the world, even when curl tries several addresses.
SYN_GIVE_UP_S = 3.0

TLS_EXITS = frozenset({35, 58, 60, 77, 83, 90, 91, 98})
RESET_EXITS = frozenset({52, 55, 56})
# Exits where curl never tested the path: unsupported protocol, init failure, bad URL,
# feature not built in, local write/read error, out of memory; 126-128 the image has no
# runnable curl; 137/143 the container was killed (deadline, OOM).
PROBE_SIDE_EXITS = frozenset({1, 2, 3, 4, 23, 26, 27, 126, 127, 128, 137, 143})

# X.509 verify results (OpenSSL) that mean "the chain does not lead to a trusted root":
# on an egress path, typically a TLS-inspecting firewall or proxy re-signing traffic.
UNTRUSTED_CHAIN = {
    2: "unable to get issuer certificate",
    18: "self-signed certificate",
    19: "self-signed certificate in the chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
}

WRITE_OUT_FIELDS = (
    "http_code",
    "http_connect",
    "remote_ip",
    "remote_port",
    "num_connects",
    "time_namelookup",
    "time_connect",
    "time_appconnect",
    "time_total",
    "ssl_verify_result",
    "errormsg",
)

MAX_TELLING_LINES = 8
ANY_POOL = "(any pool)"
MCR_HOSTS = ("mcr.microsoft.com", "*.data.mcr.microsoft.com")

_TELLING = re.compile(
    "|".join(
        (
            r"^\*\s+Trying ",
            r"^\* Connected to ",
            r"^\* connect to .* failed",
            r"^\* Failed to connect",
            r"time(d )?out",
            r"Could not resolve",
            r"^\* Establish HTTP proxy tunnel",
            r"^> CONNECT ",
            r"CONNECT tunnel failed",
            r"SOCKS",
            r"TLS alert, (?!close notify)",
            r"SSL certificate problem|SSL: |SSL_connect|SSL routines|TLS connect error",
            r"subjectAltName does not match",
            r"^\*\s+issuer:",
            r"^< HTTP/",
            r"Empty reply|Recv failure|Send failure|reset by peer",
            r"redirects followed",
            r"^\* (closing|shutting down) connection",
            r"^\* Connection #\d+ to host .* left intact",
            r"^curl: \(\d+\)",
        )
    ),
    re.IGNORECASE,
)
# Request and response headers and data dumps: only their first line can be telling
# (the status line, a proxy CONNECT); the rest (e.g. "Keep-Alive: timeout=5") misleads.
_HEADER_OR_DATA = re.compile(r"^(< (?!HTTP/)|> (?!CONNECT )|[{}] \[)")
_TRYING = re.compile(r"^\*\s+Trying\s+(\[[^\]]+\]|[^\s:]+):(\d+)")


def parse_log(log: str) -> tuple[str, Json | None]:
    """Split a probe pod's log into curl's verbose text and its `%{json}` write-out.

    Searched from the end because the write-out is the last thing curl prints; a log
    cut short or mangled (no parsable object) still yields its verbose text.
    """
    lines = log.splitlines()
    write_out = None
    for index in range(len(lines) - 1, -1, -1):
        candidate = lines[index].strip()
        if not candidate.startswith("{"):
            continue
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            write_out = value
            del lines[index]
            break
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines), write_out


def tried_addresses(verbose: str) -> list[str]:
    """The addresses curl tried to connect to (its `Trying a.b.c.d:port...` lines), in order:
    the endpoint's resolution as seen from inside the cluster."""
    found = (_TRYING.match(line) for line in verbose.splitlines())
    return [m.group(1).strip("[]") for m in found if m]


def classify(exit_code: int | None, write_out: Json | None) -> str:
    """The PROBE_* code for one curl run, from the exit code and `%{json}` fields only.

    The exit code comes from the container's terminated state; the write-out's
    `exitcode` stands in when the pod status lacked it. Decisions beyond the catalog's:

    * A proxy that refused the CONNECT (`http_connect` ≥ 400) is a proxy failure whatever
      the exit code: curl reports it as exit 56, which would otherwise read as a reset.
    * Exit 7 is a timeout when the connect phase (time_total - time_namelookup) lasted at
      least SYN_GIVE_UP_S: only an unanswered SYN takes that long to fail, and curl
      reports exit 7 (not 28) when the kernel gives up before `--connect-timeout`. Without
      timings (a minimal write-out) the errormsg decides, looking for "timed out": that is
      the OS's strerror(ETIMEDOUT) that curl quotes, not curl's own wording, so it is the
      one piece of text that is stable across curl versions.
    * Exit 22 (`--fail`) and 47 (too many redirects) are judged by the HTTP status, as
      exit 0 is: both mean the endpoint answered over a working path. A redirect loop
      (last status 3xx) is thus PROBE_OK — an application problem, not an egress one.
    * telnet:// (the plain TCP test) exits 28 even when it connected: curl then waits on
      the open connection for a server that speaks only after the client does (a
      database) until --max-time. A connection made (`num_connects` ≥ 1) is PROBE_OK.
    * Exits in PROBE_SIDE_EXITS, or no exit code at all, are PROBE_FAILED_TO_RUN: curl
      never tested the path, and saying anything about egress would be a guess.
    * Every other exit (8 weird reply, 16/92 HTTP/2 errors, 18 partial body, …) fails on
      an open connection: PROBE_CONNECTION_RESET, an error because the transfer broke.
    """
    out = write_out or {}
    code = exit_code if exit_code is not None else _int(out.get("exitcode"))
    if code is None or code in PROBE_SIDE_EXITS:
        return "PROBE_FAILED_TO_RUN"
    if code in (5, 97) or (_int(out.get("http_connect")) or 0) >= 400:
        return "PROBE_PROXY_FAILURE"
    if code in (0, 22, 47):
        status = _http_status(out)
        if code == 22 and status < 400:
            # --fail only fails on status ≥ 400; without it the refusal is all we know.
            return "PROBE_HTTP_CLIENT_ERROR"
        return _by_status(status)
    if code == 6:
        return "PROBE_DNS_FAILURE"
    if code == 7:
        return "PROBE_TIMEOUT" if _connect_timed_out(out) else "PROBE_CONNECT_REFUSED"
    if code == 28:
        return "PROBE_OK" if _telnet_connected(out) else "PROBE_TIMEOUT"
    if code in TLS_EXITS:
        return "PROBE_TLS_FAILURE"
    return "PROBE_CONNECTION_RESET"


def _telnet_connected(write_out: Json) -> bool:
    scheme = str(write_out.get("scheme") or "").lower()
    url = str(write_out.get("url") or write_out.get("url_effective") or "").lower()
    telnet = scheme == "telnet" or url.startswith("telnet://")
    return telnet and (_int(write_out.get("num_connects")) or 0) >= 1


def _http_status(write_out: Json) -> int:
    """The final HTTP status; 0 when none arrived. `response_code` is curl's older name."""
    return _int(write_out.get("http_code")) or _int(write_out.get("response_code")) or 0


def _by_status(status: int) -> str:
    if status == 470:
        return "PROBE_FIREWALL_DENY_HTTP"
    if status in (502, 504):
        return "PROBE_HTTP_GATEWAY_ERROR"
    if 400 <= status < 500:
        return "PROBE_HTTP_CLIENT_ERROR"
    if status >= 500:
        return "PROBE_HTTP_SERVER_ERROR"
    return "PROBE_OK"


def _connect_timed_out(out: Json) -> bool:
    total = _float(out.get("time_total"))
    if total is not None:
        return total - (_float(out.get("time_namelookup")) or 0.0) >= SYN_GIVE_UP_S
    return "timed out" in str(out.get("errormsg") or "").lower()


def telling_lines(verbose: str) -> list[str]:
    """The lines of `curl -v` a human reads to see where the request stopped.

    Repeats are dropped (a redirect loop prints the same lines per hop); past the cap,
    the first line (where curl went) and the last ones (how it ended) are kept.
    """
    picked: list[str] = []
    for raw in verbose.splitlines():
        line = raw.rstrip()
        if _HEADER_OR_DATA.match(line) or not _TELLING.search(line) or line in picked:
            continue
        picked.append(line)
    if len(picked) > MAX_TELLING_LINES:
        picked = picked[:1] + picked[-(MAX_TELLING_LINES - 1) :]
    return picked


def check(runs: list[ProbeRun], seen_from: str | None = None) -> list[Finding]:
    """One finding per URL and outcome, naming every pool that saw it (or, for the probe
    inside an application pod, `seen_from` that pod).

    Pools sit in their own subnets, so an outcome seen from some pools only points at
    what differs between those subnets; the detail says so. Probes that never ran are
    also kept apart by reason, because each reason has its own fix.
    """
    groups: dict[tuple[str, str, str | None], list[tuple[ProbeRun, str, Json | None]]] = {}
    outcome_by_pool: dict[str, dict[str, str]] = {}
    for run in runs:
        verbose, write_out = parse_log(run.log or "")
        code = "PROBE_FAILED_TO_RUN" if run.failure else classify(run.exit_code, write_out)
        groups.setdefault((run.url, code, run.failure), []).append((run, verbose, write_out))
        outcome_by_pool.setdefault(run.url, {}).setdefault(_pool(run), code)
    findings = []
    for (url, code, failure), members in groups.items():
        pools = sorted({_pool(run) for run, _, _ in members})
        others = {
            pool: other
            for pool, other in outcome_by_pool[url].items()
            if pool not in pools and other != code
        }
        run, verbose, write_out = members[0]
        evidence: Json = {
            "url": url,
            "pools": pools,
            "pods": [r.pod for r, _, _ in members],
        }
        if failure:
            detail, fix = _not_run(run)
            evidence |= {"image": run.image, "failure": failure, "message": run.message}
        else:
            out = write_out or {}
            detail, fix = _describe(code, run, verbose, out)
            evidence |= {
                "exitCode": run.exit_code if run.exit_code is not None else out.get("exitcode"),
                "writeOut": {k: out[k] for k in WRITE_OUT_FIELDS if k in out},
                "tellingLines": telling_lines(verbose),
            }
        if others:
            evidence["otherPools"] = others
        where = f"Seen from inside {seen_from}." if seen_from else _where(pools, others, code)
        if seen_from:
            evidence["inside"] = seen_from
        findings.append(
            finding(
                code,
                f"{detail} {where}",
                evidence=evidence,
                fix=fix,
                about_endpoint=True,
            )
        )
    return findings


def _where(pools: list[str], others: dict[str, str], code: str) -> str:
    seen = f"Seen from {_pools_text(pools)}."
    if not others:
        return seen
    elsewhere = ", ".join(f"{pool} got {other}" for pool, other in sorted(others.items()))
    hint = (
        ""
        if code == "PROBE_OK"
        else " Compare what differs between the pools' subnets: route table, NSG, NAT gateway."
    )
    return f"{seen} Not from every pool: {elsewhere}.{hint}"


def _pools_text(pools: list[str]) -> str:
    return ("pool " if len(pools) == 1 else "pools ") + ", ".join(pools)


def _pool(run: ProbeRun) -> str:
    return run.pool or ANY_POOL


# -- what each outcome means on the path ---------------------------------------------------


def _describe(code: str, run: ProbeRun, verbose: str, out: Json) -> tuple[str, list[str]]:
    """One or two sentences on what the outcome means for a packet, and a next step."""
    exit_code = run.exit_code if run.exit_code is not None else _int(out.get("exitcode"))
    parts = urlsplit(run.url)
    host = parts.hostname or run.url
    port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    addr = _address(out, verbose) or f"{host}:{port}"
    took = _duration(_float(out.get("time_total")))
    status = _http_status(out)
    if code == "PROBE_OK":
        if exit_code == 47:
            return (
                f"{host} answered (last HTTP {status}) but kept redirecting past curl's limit "
                "(exit 47): the network path works; the redirect loop is the application's.",
                [],
            )
        if status == 0:
            return f"curl opened a connection to {addr} (exit 0): the path is open.", []
        return f"{host} answered HTTP {status} from {addr} in {took}: the path is open.", []
    if code == "PROBE_DNS_FAILURE":
        return (
            f"{host} does not resolve from inside the cluster (exit 6), so no packet ever "
            "left for it: CoreDNS and the VNet's DNS servers behind it have no answer — a "
            "private DNS zone not linked to the cluster's VNet, or custom DNS servers that "
            "cannot resolve the zone, are the usual causes.",
            [
                "kubectl get pods -n kube-system -l k8s-app=kube-dns -o wide",
                "kubectl get configmap coredns-custom -n kube-system -o yaml",
                "az network vnet show --resource-group <vnet-resource-group> "
                "--name <vnet-name> --query dhcpOptions.dnsServers",
                "az network private-dns link vnet list --resource-group <zone-resource-group> "
                "--zone-name <zone>",
            ],
        )
    if code == "PROBE_PROXY_FAILURE":
        proxy_fix = [
            "az aks show --resource-group <resource-group> --name <cluster> --query httpProxyConfig"
        ]
        connect_status = _int(out.get("http_connect")) or 0
        if connect_status >= 400:
            what = (
                f"The proxy at {addr} refused to open a tunnel to {host}:{port} (CONNECT "
                f"answered HTTP {connect_status}): the proxy's policy blocks the endpoint, "
                "not the network."
            )
        elif exit_code == 5:
            what = (
                "The proxy's host name does not resolve from inside the cluster (exit 5): "
                "the probe never reached the proxy."
            )
        else:
            what = (
                f"The handshake with the proxy at {addr} failed (exit {exit_code}): it does "
                "not speak the protocol curl was told to use, or it refused the request."
            )
        return what, proxy_fix
    if code == "PROBE_CONNECT_REFUSED":
        return (
            f"{addr} refused the connection (exit 7, after {took}): something answered "
            "instead of dropping the SYN, which an NSG never does — nothing listens on that "
            "port, or a firewall or proxy on the path rejects the flow.",
            [],
        )
    if code == "PROBE_TIMEOUT":
        if exit_code == 28 and (_int(out.get("num_connects")) or 0) > 0:
            return (
                f"Connected to {addr}, but no response came within {took} (exit 28): the path "
                "lets the handshake through, then the reply stalls — a slow endpoint, an "
                "appliance holding the flow, or large packets lost on the way (MTU).",
                [],
            )
        return (
            f"SYN sent to {addr}, no answer in {took}: something on the path drops the "
            "packets — check the route, NSG and firewall findings above.",
            [],
        )
    if code == "PROBE_TLS_FAILURE":
        return _tls(exit_code, host, addr, out), []
    if code == "PROBE_CONNECTION_RESET":
        leads: dict[int | None, str] = {
            52: f"{addr} accepted the connection, then closed it without any reply (exit 52)",
            55: f"Sending to {addr} failed on an open connection (exit 55)",
            56: f"{addr} accepted the connection, then reset it while curl waited for the "
            "response (exit 56)",
        }
        lead = leads.get(
            exit_code, f"The transfer with {addr} broke on an open connection (exit {exit_code})"
        )
        return (
            f"{lead}: something lets the TCP handshake through and then kills the flow — a "
            "firewall or proxy on the path, or the endpoint itself.",
            [],
        )
    if code == "PROBE_FIREWALL_DENY_HTTP":
        return (
            f"Azure Firewall answered HTTP 470 for {run.url}: no application rule allows "
            f"{host} from the node subnet, so the firewall denied the request itself.",
            [
                "az network firewall policy rule-collection-group collection "
                "add-filter-collection --resource-group <firewall-resource-group> "
                "--policy-name <firewall-policy> --rule-collection-group-name <group> "
                f"--name allow-{host} --collection-priority <priority> --action Allow "
                f"--rule-name allow-{host} --rule-type ApplicationRule "
                f"--protocols {parts.scheme.capitalize()}={port} "
                f"--source-addresses <node-subnet-prefix> --target-fqdns {host}"
            ],
        )
    if code == "PROBE_HTTP_GATEWAY_ERROR":
        return (
            f"{host} answered HTTP {status} from {addr}: a gateway or proxy (on the path or in "
            "front of the endpoint) could not get an answer from the server behind it.",
            [],
        )
    if code == "PROBE_HTTP_CLIENT_ERROR":
        return (
            f"{host} answered HTTP {status}: the network path works; the server, a proxy or "
            "an application firewall refused the request — if the far side allow-lists "
            "source addresses, compare its list with the egress IPs above.",
            [],
        )
    if code == "PROBE_HTTP_SERVER_ERROR":
        return (
            f"{host} answered HTTP {status}: the network path works; the endpoint itself failed.",
            [],
        )
    namespace, name = k8s.split_key(run.pod)
    return (
        f"curl did not test the path (exit {exit_code}: {out.get('errormsg') or 'no message'}):"
        " the probe itself failed (its URL, its image, or the container was killed), so "
        "nothing is known about egress from it.",
        [f"kubectl describe pod -n {namespace} {name}"],
    )


def _tls(exit_code: int | None, host: str, addr: str, out: Json) -> str:
    verify = _int(out.get("ssl_verify_result")) or 0
    if exit_code == 60 and verify in UNTRUSTED_CHAIN:
        return (
            f"{host}'s certificate is not trusted ({UNTRUSTED_CHAIN[verify]}, "
            f"ssl_verify_result {verify}): on an egress path that is usually a TLS-inspecting "
            f"firewall or proxy re-signing traffic with its own CA — trust that CA in the "
            f"workload, or exempt {host} from inspection."
        )
    if exit_code == 60:
        return (
            f"curl rejected {host}'s certificate (exit 60: {out.get('errormsg')}): an expired "
            "or mismatched certificate, or one re-signed by a TLS-inspecting appliance."
        )
    if exit_code == 35:
        return (
            f"The TLS handshake with {addr} broke off after the TCP connection opened "
            "(exit 35): a firewall that filters on the TLS server name (Azure Firewall denies "
            "HTTPS this way), or a port that does not speak TLS — check the firewall findings "
            "above."
        )
    return (
        f"curl could not complete TLS with {host} (exit {exit_code}): a client certificate, "
        "CA bundle, key pinning or OCSP problem on the probe's side or the server's."
    )


def _not_run(run: ProbeRun) -> tuple[str, list[str]]:
    """Why the probe pod never ran curl, and how to let it run."""
    namespace, name = k8s.split_key(run.pod)
    said = f" ({run.message})" if run.message else ""
    events = f"kubectl get events -n {namespace} --field-selector involvedObject.name={name}"
    pool = run.pool or "<pool>"
    if run.failure in ("ImagePullBackOff", "ErrImagePull"):
        registry = k8s.image_registry(run.image) or "docker.io"
        if registry == MCR_HOSTS[0]:
            blocked = (
                f"The node pulls it from MCR, so this itself means egress to "
                f"{' / '.join(MCR_HOSTS)} is blocked — see the firewall and NSG findings "
                "above; or set a probe image the cluster can reach."
            )
        else:
            blocked = (
                f"Egress to {registry} may be blocked (see the firewall and NSG findings "
                "above), or the image name or pull credentials are wrong; or set a probe "
                "image the cluster can reach."
            )
        return (
            f"The node could not pull the probe image {run.image} "
            f"({run.failure}{': ' + run.message if run.message else ''}). {blocked}",
            [
                events,
                "az aks check-acr --resource-group <resource-group> --name <cluster> "
                "--acr <acr-name>.azurecr.io",
                f"az acr import --name <acr-name> --source {run.image} "
                f"--image {k8s.image_repository(run.image)}",
            ],
        )
    if run.failure == "Unschedulable":
        return (
            f"No node could take the probe pod{said}: it needs a node in {pool} whose taints "
            "it tolerates, that matches its nodeSelector and has room for it.",
            [
                "kubectl get nodes -o custom-columns=NAME:.metadata.name,"
                f"{k8s.POOL_COLUMN},TAINTS:.spec.taints",
                f"az aks nodepool show --resource-group <resource-group> --cluster-name "
                f"<cluster> --name {pool} --query "
                '"{count:count,taints:nodeTaints,labels:nodeLabels}"',
            ],
        )
    if run.failure == "CreateContainerConfigError":
        return (
            f"The kubelet could not create the probe container{said}: the namespace enforces "
            "a security context or policy (Pod Security admission, Azure Policy) that the "
            "probe pod does not meet.",
            [events, f"kubectl get namespace {namespace} --show-labels"],
        )
    if run.failure == "DeadlineExceeded":
        return (
            f"The probe pod ran past its deadline and was killed before curl reported{said}: "
            "the image pull and start took too long, or curl hung beyond its own timeouts.",
            [events, f"kubectl describe pod -n {namespace} {name}"],
        )
    if run.failure == "Forbidden":
        return (
            f"The API server refused to create the probe pod{said}: the bot's identity lacks "
            f"the RBAC verb `create` on `pods` in namespace {namespace} (it also needs `get` "
            "on `pods/log` and `delete` on `pods`).",
            [
                f"kubectl auth can-i create pods -n {namespace} --as <bot-identity>",
                f"kubectl create role aks-egress-probe -n {namespace} "
                "--verb=create,get,list,watch,delete --resource=pods,pods/log",
                f"kubectl create rolebinding aks-egress-probe -n {namespace} "
                "--role=aks-egress-probe --user=<bot-identity-object-id>",
                "az role assignment create --assignee <bot-identity-object-id> "
                '--role "Azure Kubernetes Service RBAC Writer" '
                f"--scope <cluster-resource-id>/namespaces/{namespace}",
            ],
        )
    if run.failure == "Timeout":
        return (
            f"The probe pod did not finish within the time the bot waits{said}: it is "
            "probably stuck Pending (image pull, scheduling); its events say which.",
            [events, f"kubectl get pod -n {namespace} {name} -o wide"],
        )
    if run.failure == "ApiError":
        return (
            f"The Kubernetes API failed while running the probe{said}: nothing is known "
            "about the path from this probe.",
            [
                "kubectl get --raw '/readyz?verbose'",
                "az aks show --resource-group <resource-group> --name <cluster> "
                '--query "{power:powerState.code,state:provisioningState}"',
            ],
        )
    return f"The probe pod could not run ({run.failure}){said}.", [events]


# -- small readers -------------------------------------------------------------------------


def _address(out: Json, verbose: str) -> str | None:
    """Where curl connected; on a failed connect 7.88 leaves remote_ip empty, so fall back
    to the address of the last "Trying" line (quoted evidence, not a verdict)."""
    ip, port = out.get("remote_ip"), _int(out.get("remote_port"))
    if ip and port:
        return f"[{ip}]:{port}" if ":" in str(ip) else f"{ip}:{port}"
    tried = [m for line in verbose.splitlines() if (m := _TRYING.match(line))]
    return f"{tried[-1].group(1)}:{tried[-1].group(2)}" if tried else None


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "the time curl allowed"
    if seconds < 0.001:
        return "under 1 ms"
    return f"{seconds:.0f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"


def _int(value: Any) -> int | None:
    number = _float(value)
    return None if number is None else int(number)


def _float(value: Any) -> float | None:
    """A write-out number; worlds and other curl builds may quote numbers or omit them."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
