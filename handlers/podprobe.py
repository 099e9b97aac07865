"""The probe inside the `--pod` (an ephemeral container in its network namespace), set
against a fresh probe pod on the same pool.

When the two disagree, the difference is the pod's own: its NetworkPolicies, its DNS
settings, proxy variables injected into it, or a sidecar that intercepts its traffic
(a service mesh). The in-pod outcome is worded by the probe step's own classifier.
"""

from __future__ import annotations

import shlex

from bot.codes import finding
from bot.evidence import KubeEvidence, ProbeRun
from bot.model import Finding
from handlers import probe

COMPONENT = "deploy/components/in-pod-probe"


def check(kube: KubeEvidence) -> list[Finding]:
    run = kube.in_pod_probe
    if run is None:
        return []
    key = run.inside or run.pod
    if run.failure == "Disabled":
        return [
            finding(
                "KUBE_ACCESS",
                f"The probe inside {key} did not run: inPodProbe is off for this cluster. "
                "It adds an ephemeral container to the pod (which stays in its spec), so it "
                f"is opt-in: set `inPodProbe: true` for the cluster and apply {COMPONENT}.",
                title="The probe inside the pod is off",
                evidence={"pod": key, "inPodProbe": False},
            )
        ]
    if run.failure == "PodNotRunning":
        return [
            finding(
                "KUBE_ACCESS",
                f"The probe inside {key} did not run: the pod is not Running ({run.message}), "
                "so no container can start in it (see POD_NOT_RUNNING). The rest of the check "
                "ran.",
                title="The probe inside the pod did not run",
                evidence={"pod": key, "reason": run.message},
            )
        ]
    if run.failure in ("Forbidden", "Invalid"):
        return [
            finding(
                "KUBE_PARTIAL_ACCESS",
                f"The API server refused the probe inside {key} ({run.message}). Grant the "
                f"bot `patch` on `pods/ephemeralcontainers` ({COMPONENT}); the probe pods' "
                "verdict stands.",
                evidence={"pod": key, "error": run.message},
                fix=[
                    "kubectl auth can-i patch pods/ephemeralcontainers "
                    f"--namespace {_namespace(key)} --as <bot-identity>",
                    f"kubectl apply -k {COMPONENT}",
                ],
            )
        ]
    found = probe.check([run], seen_from=key)
    mine = probe_code(run)
    fresh = [r for r in kube.probes if r.pool == run.pool and not r.failure] or [
        r for r in kube.probes if not r.failure
    ]
    if fresh and mine not in (None, "PROBE_FAILED_TO_RUN"):
        theirs = probe_code(fresh[0])
        if theirs != mine:
            found.append(
                finding(
                    "PROBE_POD_DIFFERS",
                    f"From inside {key} the probe got {mine}, while a fresh probe pod "
                    f"{fresh[0].pod} on pool {fresh[0].pool or 'any'} got {theirs}: the cause "
                    "is the pod's own — its NetworkPolicies, DNS settings, proxy variables or a "
                    "sidecar — not the node's path.",
                    evidence={
                        "pod": key,
                        "insidePod": {"code": mine, "exitCode": run.exit_code},
                        "freshProbePod": {
                            "pod": fresh[0].pod,
                            "pool": fresh[0].pool,
                            "code": theirs,
                            "exitCode": fresh[0].exit_code,
                        },
                    },
                    about_endpoint=True,
                )
            )
    return found


def probe_code(run: ProbeRun) -> str | None:
    if run.failure:
        return "PROBE_FAILED_TO_RUN"
    _, write_out = probe.parse_log(run.log or "")
    return probe.classify(run.exit_code, write_out)


def _namespace(key: str) -> str:
    return shlex.quote(key.partition("/")[0])
