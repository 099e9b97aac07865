"""bot/slack/snat_post.py: the daily post marks each cluster as its findings do."""

from __future__ import annotations

from bot.slack.snat_post import snat_summary


def cluster(alias: str, peak: float, *findings: tuple[str, str, list[str]]) -> dict:
    return {
        "alias": alias,
        "peakUsedPct": peak,
        "failedConnections": 0,
        "findings": [{"code": c, "severity": s, "title": c, "fix": f} for c, s, f in findings],
    }


def lines(message: dict) -> dict[str, str]:
    texts = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]
    return {t.split("*")[1]: t for t in texts}


def test_marks_and_fixes_come_from_the_findings_not_the_peak():
    post = snat_summary(
        {
            "clusters": [
                cluster("calm", 80.0, ("SNAT_OK", "ok", [])),
                cluster("high", 60.0, ("SNAT_HIGH", "warning", ["az aks update --x 2"])),
                cluster("out", 40.0, ("NATGW_SNAT_FAILED", "error", ["az network nat x"])),
            ]
        },
        "2026-12-06",
    )
    by_alias = lines(post)
    assert " ✓ peak 80 %" in by_alias["calm"] and "```" not in by_alias["calm"]
    assert " ! peak 60 %" in by_alias["high"] and "az aks update --x 2" in by_alias["high"]
    assert " ✗ peak 40 %" in by_alias["out"] and "az network nat x" in by_alias["out"]
    assert post["text"].startswith("SNAT summary 2026-12-06: 3 clusters, highest calm at 80 %")
