"""What every world's report must hold to: no fix opens the internet where less would do.

Called from `assert_expected`, so every world of every catalog test (public, own, cluster,
intermittent) checks each suggested rule: a destination of `Internet`, `*`, `0.0.0.0/0`
or `Any` is allowed only right after the comment that says no service tag or fixed address
is known, and only for names handlers.narrow has no documented tag for (Microsoft's
"Outbound network and FQDN rules for AKS clusters",
https://learn.microsoft.com/azure/aks/outbound-rules-control-egress).
"""

from __future__ import annotations

import re

from handlers.narrow import BROAD, FQDN_TAGS

DESTINATION = re.compile(
    r"--(?:destination-address-prefixes|destination-addresses|target-fqdns|destination-fqdns)"
    r"((?:\s+(?!--)\S+)+)"
)
NO_NARROWER = re.compile(r"^# no service tag or fixed address is known for (.+?) and NSG")


def broad_rules(fix: list[str]) -> list[tuple[str, str | None]]:
    """(command, the comment before it) for each command whose destination is the internet."""
    out = []
    for index, line in enumerate(fix):
        if line.startswith("#"):
            continue
        for match in DESTINATION.finditer(line):
            if any(token in BROAD for token in match.group(1).split()):
                out.append((line, fix[index - 1] if index else None))
    return out


def assert_fixes_narrow(report: dict) -> None:
    for finding in report["findings"]:
        for command, comment in broad_rules(finding.get("fix") or []):
            said = NO_NARROWER.match(comment or "")
            assert said, f"{finding['code']} opens the internet without saying why: {command}"
            names = [n.strip() for n in said.group(1).split(",")]
            known = [n for n in names if n.lower() in FQDN_TAGS]
            assert not known, f"{finding['code']}: {known} have a service tag: {command}"
