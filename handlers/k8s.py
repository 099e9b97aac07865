"""Kubernetes objects as the API's JSON: the views and arithmetic pods.py and nodes.py share.

Quantities are parsed as the Kubernetes Python client's `parse_quantity` parses them
(`kubernetes/utils/quantity.py`, Apache-2.0; tests/unit/test_k8s.py holds the two equal): a
handler imports no SDK, and importing the client costs the Slack app ~0.3 s. Percentages are
computed the way `kubectl top node` computes them (kubectl `metricsutil/metrics_printer.go`):

    int64(float64(usage.MilliValue()) / float64(available.MilliValue()) * 100)

where `MilliValue()` rounds up to a whole milli-unit and the `int64` conversion truncates.
Doing the same float operations in the same order gives the very number kubectl prints.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal, DecimalException, InvalidOperation
from typing import Any

from bot.evidence import POOL_LABEL, PROBE_LABEL, PROBE_NAME
from bot.model import Json

HIGH_PERCENT = 90  # NODE_CPU_HIGH, NODE_MEMORY_HIGH, POD_NEAR_LIMIT: at or above
LEGACY_POOL_LABEL = "agentpool"
# Pods the bot itself creates to probe an endpoint (world-format.md); their fate is the
# probe's business (PROBE_FAILED_TO_RUN), not a finding about the user's workloads.
MI = 1024 * 1024


# -- quantities ------------------------------------------------------------------------

_EXPONENTS = {"n": -3, "u": -2, "m": -1, "K": 1, "k": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}
_BINARY_PREFIXES = "KMGTPE"  # only these exist in base 1024 (Ki … Ei)


def parse_quantity(value: int | float | Decimal | str) -> Decimal:
    """A Kubernetes quantity as a Decimal; ValueError when it is not one."""
    if isinstance(value, int | float | Decimal):
        return Decimal(value)
    text = str(value)
    number, suffix = text, ""
    if len(text) >= 2 and text[-1] == "i":
        if text[-2] in _EXPONENTS:
            number, suffix = text[:-2], text[-2:]
    elif text and text[-1] in _EXPONENTS:
        number, suffix = text[:-1], text[-1:]
    try:
        parsed = Decimal(number)
    except InvalidOperation:
        raise ValueError(f"Invalid number format: {number}") from None
    if not suffix:
        return parsed
    if suffix.endswith("i") and suffix[0] not in _BINARY_PREFIXES:
        raise ValueError(f"{text} has unknown suffix")  # "ki", "mi", "ni", "ui"
    base = 1024 if suffix.endswith("i") else 1000
    try:
        return parsed * (base ** Decimal(_EXPONENTS[suffix[0]]))
    except DecimalException as exc:
        raise ValueError(f"Invalid quantity: {text}") from exc


def quantity(value: Any) -> Decimal | None:
    """A Kubernetes quantity ("231053413n", "48Mi", "2") as a Decimal; None if absent or bad."""
    if value is None or value == "":
        return None
    try:
        return parse_quantity(value)
    except (ValueError, TypeError):
        return None


def milli_value(q: Decimal) -> int:
    """Go's `Quantity.MilliValue()`: the value in milli-units, rounded up (231053413n → 232)."""
    return int((q * 1000).to_integral_value(rounding=ROUND_CEILING))


def byte_value(q: Decimal) -> int:
    """Go's `Quantity.Value()`: whole units, rounded up."""
    return int(q.to_integral_value(rounding=ROUND_CEILING))


def percent(usage: Decimal, available: Decimal) -> int | None:
    """kubectl top's percentage of `available` that `usage` is; None when nothing is available."""
    available_milli = milli_value(available)
    if available_milli <= 0:
        return None
    return int(float(milli_value(usage)) / float(available_milli) * 100)


def cpu_text(q: Decimal) -> str:
    """kubectl top's CPU column: "232m"."""
    return f"{milli_value(q)}m"


def memory_text(q: Decimal) -> str:
    """kubectl top's memory column: "2902Mi" (bytes / 2^20, floored)."""
    return f"{byte_value(q) // MI}Mi"


def amount_text(resource: str, q: Decimal) -> str:
    return cpu_text(q) if resource == "cpu" else memory_text(q)


# -- objects ---------------------------------------------------------------------------


def meta(obj: Json | None) -> Json:
    return (obj or {}).get("metadata") or {}


def name_of(obj: Json | None) -> str:
    return meta(obj).get("name") or "?"


def pod_key(pod: Json | None) -> str:
    """ "namespace/name", the form `--pod` takes."""
    return f"{meta(pod).get('namespace') or 'default'}/{name_of(pod)}"


def node_pool(node: Json | None) -> str | None:
    """The AKS node pool a node (or NodeMetrics item) belongs to, from its labels."""
    labels = meta(node).get("labels") or {}
    return labels.get(POOL_LABEL) or labels.get(LEGACY_POOL_LABEL)


def is_probe_pod(pod: Json) -> bool:
    return (meta(pod).get("labels") or {}).get(PROBE_LABEL) == PROBE_NAME


def condition(obj: Json | None, kind: str) -> Json | None:
    conditions: list[Json] = ((obj or {}).get("status") or {}).get("conditions") or []
    for cond in conditions:
        if cond.get("type") == kind:
            return cond
    return None


def spec_containers(pod: Json) -> list[Json]:
    spec = pod.get("spec") or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def spec_container(pod: Json, container: str) -> Json | None:
    for c in spec_containers(pod):
        if c.get("name") == container:
            return c
    return None


def limit_text(pod: Json, container: str, resource: str) -> str | None:
    """The container's limit as its manifest spells it ("1Gi"); None when it sets none."""
    c = spec_container(pod, container) or {}
    value = ((c.get("resources") or {}).get("limits") or {}).get(resource)
    return None if value is None else str(value)


def container_limit(pod: Json, container: str, resource: str) -> Decimal | None:
    """The container's limit; None when it sets none (or zero, which is no limit either)."""
    q = quantity(limit_text(pod, container, resource))
    return q if q is not None and q > 0 else None


def container_statuses(pod: Json) -> list[Json]:
    """Init containers first (they block the others), then the app containers."""
    status = pod.get("status") or {}
    return [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]


def oom_termination(status: Json) -> Json | None:
    """The container's OOMKilled termination: the current state's, else the last one's."""
    for which in ("state", "lastState"):
        terminated = (status.get(which) or {}).get("terminated") or {}
        if terminated.get("reason") == "OOMKilled":
            return terminated
    return None


def api_path(obj: Json, kind: str) -> str:
    """The object's API path, what `kubectl get --raw` opens: the finding's `resource`."""
    if kind == "node":
        return f"/api/v1/nodes/{name_of(obj)}"
    return f"/api/v1/namespaces/{meta(obj).get('namespace') or 'default'}/pods/{name_of(obj)}"


def split_key(pod: str) -> tuple[str, str]:
    """ "namespace/name" → (namespace, name); a bare name lives in "default"."""
    namespace, _, name = pod.rpartition("/")
    return namespace or "default", name


def image_registry(image: str) -> str | None:
    """The registry an image reference names (None: a Docker Hub shorthand such as
    `nginx` or `library/nginx`). The first path part is a registry only when it looks
    like a host (a dot or a port) or is `localhost`, as the container runtimes read it."""
    first, _, rest = image.partition("/")
    return first if rest and ("." in first or ":" in first or first == "localhost") else None


def image_repository(image: str) -> str:
    """The image's path without its registry (what `az acr import --image` expects)."""
    return image.partition("/")[2] if image_registry(image) else image


# The node-pool column of `kubectl get nodes -o custom-columns` (dots in a label escaped).
POOL_COLUMN = "POOL:.metadata.labels." + POOL_LABEL.replace(".", "\\.")


def kubectl_pod(verb: str, pod: str, *extra: str) -> str:
    """`kubectl VERB pod/NAME --namespace NS …` for a "namespace/name" key."""
    namespace, name = split_key(pod)
    return " ".join(["kubectl", verb, f"pod/{name}", "--namespace", namespace, *extra])


def join_names(names: list[str], limit: int = 8) -> str:
    """ "a, b and c" — and "…and N more" beyond `limit`, so a detail stays one paragraph."""
    if len(names) > limit:
        return f"{', '.join(names[:limit])} and {len(names) - limit} more"
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"
