"""A run command's output is cut at its random marker lines; kubectl's errors become the
API statuses the direct reads judge."""

from __future__ import annotations

import pytest
from azure.mgmt.containerservice.models import RunCommandResult

from bot.collect.runcommand import CommandFailed, Part, Sections, command_output

MARK = "==aks-egress-0123456789abcdef=="


def test_sections_keep_output_and_errors_apart_and_exactly():
    logs = (
        f"\n{MARK} out nodes 0\n"
        '{"items": [{"metadata": {"name": "n1"}}]}'
        f"\n{MARK} err nodes\n"
        f"\n{MARK} out pods 1\n"
        f"\n{MARK} err pods\n"
        'Error from server (Forbidden): pods is forbidden: User "x" cannot list resource "pods"\n'
        f"\n{MARK} create-failed pool-1.json\n"
        "Error from server (Forbidden): pods is forbidden\n"
        f"\n{MARK} end\n"
    )
    out = Sections.parse(logs, MARK)
    assert out.complete
    assert out.part("nodes").json()["items"][0]["metadata"]["name"] == "n1"
    refused = out.part("pods").api_error()
    assert refused.status == 403 and "cannot list" in refused.body
    assert [words for words, _ in out.marks("create-failed")] == [["create-failed", "pool-1.json"]]
    assert out.part("never-run").status is None


def test_a_marker_from_another_command_or_a_cluster_object_is_plain_text():
    forged = "==aks-egress-ffffffffffffffff=="
    logs = f"\n{MARK} out pods 0\n{forged} end\nline\n{MARK} err pods\n"
    out = Sections.parse(logs, MARK)
    assert not out.complete, "only this command's marker ends it"
    assert out.part("pods").out == f"{forged} end\nline"


def test_kubectl_errors_map_to_api_statuses():
    assert (
        Part(1, err="Error from server (NotFound): the server could not find").api_error().status
        == 404
    )
    assert Part(1, err="Error from server (ServiceUnavailable): x").api_error().status == 503
    local = Part(1, err="Unable to connect to the server: dial tcp: i/o timeout\n").api_error()
    assert local.status == 0 and "Unable to connect" in local.reason


def test_a_command_whose_pod_never_ran_or_whose_script_stopped_is_a_clear_failure():
    # The service's words when the command pod does not start (Microsoft's troubleshooting
    # article for `az aks command invoke`).
    failed = RunCommandResult(
        {
            "id": "0a3991475d9744fcbfdc2595b40e517f",
            "properties": {
                "provisioningState": "Failed",
                "reason": "Failed to run command due to cluster perf issue, container "
                "command-357ebc50d40c47a4a247ab6e067d2869 in aks-command namespace did not "
                "start within 30s on your cluster, retry may helps.",
            },
        }
    )
    with pytest.raises(CommandFailed) as raised:
        command_output(failed, MARK)
    assert raised.value.reason == "commandPodFailed" and "did not start" in str(raised.value)
    stopped = RunCommandResult(
        {"properties": {"provisioningState": "Succeeded", "exitCode": 137, "logs": "Killed\n"}}
    )
    with pytest.raises(CommandFailed) as raised:
        command_output(stopped, MARK)
    assert raised.value.reason == "commandFailed" and "137" in str(raised.value)
    done = RunCommandResult(
        {"properties": {"provisioningState": "Succeeded", "exitCode": 0, "logs": f"\n{MARK} end\n"}}
    )
    assert command_output(done, MARK).complete


def test_only_kubernetes_names_reach_a_script():
    from bot.collect.runcommand import _target

    assert _target("web/github-sync-5b7d9c8f6-q2w8r") == "web\ngithub-sync-5b7d9c8f6-q2w8r\n"
    assert _target(None) == ""
    for hostile in ("web/$(reboot)", "web/a b", "../x/y", "web/-n"):
        with pytest.raises(CommandFailed):
            _target(hostile)
