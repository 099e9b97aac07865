"""bot/slack/fleet.py: the morning summary of a fleet names the clusters that need
attention first, a line each, folds the healthy ones into one count, and never holds more
than one Slack message (as bot/slack/snat_post.py posts it)."""

from __future__ import annotations

from bot.slack import fleet as F
from bot.slack import kit
from bot.slack.snat_post import snat_summary


def cluster(alias: str, peak: float | None, **extra: object) -> dict:
    return {"alias": alias, "peakUsedPct": peak, "failedConnections": 0, **extra} | (
        {} if peak is not None else {"error": "cannot read the cluster (500 InternalServerError)"}
    )


def texts(message: dict) -> list[str]:
    return [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]


def fleet(healthy: int, hot: int) -> list[dict]:
    clusters = [cluster(f"calm-{i:03d}", 20 + i % 40) for i in range(healthy)]
    clusters += [cluster(f"hot-{i:03d}", 80 + i % 20) for i in range(hot)]
    clusters += [
        cluster("failing", 40, failedConnections=12),
        cluster("growing", 50, changeSinceYesterday=5.0, daysToExhaustion=10.0),
        cluster("broken", None),
    ]
    return clusters


def test_a_fleet_shows_who_needs_attention_and_counts_the_rest():
    message = snat_summary({"clusters": fleet(healthy=300, hot=5)}, "2026-12-06")
    lines = texts(message)
    assert [line.split("*")[1] for line in lines[:5]] == [f"hot-{i:03d}" for i in (4, 3, 2, 1, 0)]
    named = " ".join(lines)
    assert "*failing*" in named and "*growing*" in named and "*broken*" in named
    assert "calm-" not in named, "healthy clusters are not listed one by one"
    assert lines[-1].startswith("✓ 300 healthy clusters: peak at most 59 %")
    assert "308 clusters" in message["text"]


def test_more_attention_than_one_message_holds_names_the_rest():
    message = snat_summary({"clusters": fleet(healthy=10, hot=120)}, "2026-12-06")
    assert len(message["blocks"]) <= kit.MAX_BLOCKS
    lines = texts(message)
    rest = next(line for line in lines if "more need attention" in line)
    assert rest.startswith(f"{123 - (kit.MAX_BLOCKS - 5)} more need attention: ")
    assert lines[-1].startswith("✓ 10 healthy clusters")


def test_a_few_clusters_each_keep_their_line():
    clusters = [cluster(f"calm-{i}", 10 + i) for i in range(4)]
    lines = texts(snat_summary({"clusters": clusters}, "2026-12-06"))
    assert [line.split("*")[1] for line in lines] == ["calm-3", "calm-2", "calm-1", "calm-0"]


def test_what_needs_attention():
    assert not F.needs_attention(cluster("calm", 74.9))
    assert F.needs_attention(cluster("hot", 75.0))
    assert F.needs_attention(cluster("broken", None))
    assert F.needs_attention(cluster("failing", 10, failedConnections=1))
    assert F.needs_attention(cluster("trend", 10, daysToExhaustion=F.TREND_DAYS))
    assert not F.needs_attention(cluster("slow", 10, daysToExhaustion=F.TREND_DAYS + 1))
    judged = cluster("judged", 10, findings=[{"severity": "warning"}])
    assert F.needs_attention(judged)


def test_up_to_fold_after_clusters_nothing_is_folded():
    few = [cluster(f"c{i}", 10 * i) for i in range(F.FOLD_AFTER)]
    arranged = F.arrange(few, room=3)
    assert [c["alias"] for c in arranged.lines] == [f"c{i}" for i in reversed(range(10))]
    assert arranged.folded == []
