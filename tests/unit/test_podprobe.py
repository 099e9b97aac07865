"""handlers/podprobe.py: the probe inside `--pod`, set against a fresh probe pod on the same
pool; when they disagree the cause is the pod's own."""

from __future__ import annotations

from bot.evidence import KubeEvidence, ProbeRun
from handlers import podprobe

OK = '{"exitcode":0,"http_code":200,"remote_ip":"93.184.215.14","num_connects":1}\n'
TIMEOUT = '{"exitcode":28,"http_code":0,"num_connects":0,"errormsg":"Connection timed out"}\n'
URL = "https://api.contoso.com"


def run(log: str | None = None, pool: str = "apps", inside: str | None = None, **kw) -> ProbeRun:
    code = 0 if log == OK else 28 if log else None
    pod = "shop/api-1" if inside else f"aks-egress/probe-{pool}"
    return ProbeRun(URL, pool, pod, "img", code, log, inside=inside, **kw)


def codes(found: list) -> list[str]:
    return [f.code for f in found]


def test_the_pod_differs_from_a_fresh_probe_pod_on_its_pool() -> None:
    kube = KubeEvidence(
        how="t",
        probes=[run(OK, pool="other"), run(OK, pool="apps")],
        in_pod_probe=run(TIMEOUT, inside="shop/api-1"),
    )
    found = podprobe.check(kube)
    assert codes(found) == ["PROBE_TIMEOUT", "PROBE_POD_DIFFERS"]
    differs = found[-1]
    assert differs.evidence["insidePod"] == {"code": "PROBE_TIMEOUT", "exitCode": 28}
    assert differs.evidence["freshProbePod"]["pool"] == "apps"
    assert differs.evidence["freshProbePod"]["code"] == "PROBE_OK"
    assert "the cause is the pod's own" in differs.detail


def test_agreeing_probes_say_only_what_the_pod_saw() -> None:
    kube = KubeEvidence(how="t", probes=[run(OK)], in_pod_probe=run(OK, inside="shop/api-1"))
    assert codes(podprobe.check(kube)) == ["PROBE_OK"]


def test_a_probe_that_did_not_run_says_why() -> None:
    off = KubeEvidence(how="t", in_pod_probe=run(inside="shop/api-1", failure="Disabled"))
    [found] = podprobe.check(off)
    assert found.code == "KUBE_ACCESS" and "set `inPodProbe: true`" in found.detail
    stopped = run(inside="shop/api-1", failure="PodNotRunning", message="phase Pending")
    [found] = podprobe.check(KubeEvidence(how="t", in_pod_probe=stopped))
    assert "not Running (phase Pending)" in found.detail
    refused = run(inside="shop/api-1", failure="Forbidden", message="403")
    [found] = podprobe.check(KubeEvidence(how="t", in_pod_probe=refused))
    assert found.code == "KUBE_PARTIAL_ACCESS"
    assert found.fix[0] == (
        "kubectl auth can-i patch pods/ephemeralcontainers --namespace shop --as '<bot-identity>'"
    )
    assert podprobe.check(KubeEvidence(how="t")) == []


def test_probe_code_is_the_probe_steps_classifier() -> None:
    assert podprobe.probe_code(run(OK)) == "PROBE_OK"
    assert podprobe.probe_code(run(TIMEOUT)) == "PROBE_TIMEOUT"
    assert podprobe.probe_code(run(failure="Timeout")) == "PROBE_FAILED_TO_RUN"
