"""Bad input gets exit 2 and one clear line; a check that cannot run gets exit 1."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.helpers import WORLDS

WORLD = str(WORLDS / "udr-firewall-allowed.yaml")


def test_unknown_alias_lists_known_ones(run_check):
    code, err = run_check("nope", "--world", WORLD)
    assert code == 2
    assert "unknown cluster alias 'nope'" in err and "platform-prod" in err
    assert "Traceback" not in err


def test_bad_endpoint_says_why(run_check):
    code, err = run_check("platform-prod", "--endpoint", "ftp://x.example.org", "--world", WORLD)
    assert code == 2
    assert "scheme 'ftp' is not supported" in err


def test_the_endpoint_may_follow_the_alias_as_in_slack(run_check):
    code, report = run_check("platform-prod", "https://api.github.com", "--world", WORLD)
    assert code == 0 and report["endpoint"] == "https://api.github.com"
    code, err = run_check(
        "platform-prod", "https://a.example", "--endpoint", "https://b.example", "--world", WORLD
    )
    assert code == 2 and "two endpoints" in err
    code, err = run_check("platform-prod", "ftp://x.example.org", "--world", WORLD)
    assert code == 2 and "scheme 'ftp' is not supported" in err


def test_invalid_world_names_file_and_key(run_check, tmp_path: Path):
    data = yaml.safe_load(Path(WORLD).read_text())
    data["surprise"] = 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    code, err = run_check("platform-prod", "--world", str(bad))
    assert code == 2
    assert "bad.yaml" in err and "surprise" in err


def _world_with_faults(tmp_path: Path, rules: list[dict]) -> str:
    data = yaml.safe_load(Path(WORLD).read_text())
    data["faults"] = {"rules": rules}
    path = tmp_path / "faulty.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_cluster_forbidden_is_exit_1_naming_permission(run_check, tmp_path):
    world = _world_with_faults(
        tmp_path,
        [{"api": "arm", "method": "GET", "pathContains": "/managedClusters/", "status": 403}],
    )
    code, err = run_check("platform-prod", "--world", world)
    assert code == 1
    assert "Microsoft.ContainerService/managedClusters/read" in err
    assert "Traceback" not in err


def test_nsg_forbidden_becomes_a_finding(run_check, tmp_path):
    world = _world_with_faults(
        tmp_path,
        [{"api": "arm", "method": "GET", "pathContains": "/networkSecurityGroups/", "status": 403}],
    )
    code, report = run_check(
        "platform-prod", "--endpoint", "https://api.contoso.com", "--world", world
    )
    assert code == 0
    denied = [f for f in report["findings"] if f["code"] == "AZURE_ACCESS_DENIED"]
    assert denied
    assert all("Microsoft.Network/networkSecurityGroups/read" in f["detail"] for f in denied)
    assert any("/networkSecurityGroups/nsg-snet-aks-platform-weu" in f["detail"] for f in denied)


def test_throttling_and_5xx_are_retried(run_check, tmp_path):
    world = _world_with_faults(
        tmp_path,
        [
            {
                "api": "arm",
                "method": "GET",
                "pathContains": "/routeTables/",
                "status": 429,
                "headers": {"Retry-After": "1"},
                "times": 1,
            },
            {
                "api": "arm",
                "method": "GET",
                "pathContains": "/virtualNetworks/",
                "status": 503,
                "times": 1,
            },
        ],
    )
    code, report = run_check(
        "platform-prod", "--endpoint", "https://api.contoso.com", "--world", world
    )
    assert code == 0
    codes = {f["code"] for f in report["findings"]}
    assert "FIREWALL_ENDPOINT_ALLOWED" in codes
    assert not codes & {"AZURE_READ_FAILED", "AZURE_ACCESS_DENIED"}


def test_persistent_5xx_is_reported_not_raised(run_check, tmp_path):
    world = _world_with_faults(
        tmp_path,
        [{"api": "arm", "method": "GET", "pathContains": "/azureFirewalls", "status": 500}],
    )
    code, report = run_check(
        "platform-prod", "--endpoint", "https://api.contoso.com", "--world", world
    )
    assert code == 0
    failed = [f for f in report["findings"] if f["code"] == "AZURE_READ_FAILED"]
    assert failed and failed[0]["evidence"]["status"] == 500


def test_cron_takes_no_world(capsys):
    """cron only enqueues the summary job; the worker that runs it reads Azure or its own
    `--world`. An option cron would ignore is refused, not accepted."""
    from bot.cli import main

    try:
        code = main(["cron", "--world", WORLD])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    assert "unrecognized arguments: --world" in capsys.readouterr().err
