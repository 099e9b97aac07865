"""The sandbox's run command (world-format.md, "Private clusters and runCommand"): 202 with
a Location, 202 while running then 200 with the result, the command run by /bin/sh -c in
the unpacked context with only PATH and KUBECONFIG, a real kubectl reaching the cluster's
emulated API server; disabled clusters answer 400; private kubeconfigs cannot connect."""

from __future__ import annotations

import base64
import copy
import io
import json
import time
import urllib.request
import zipfile

import pytest
import yaml
from azure.core.exceptions import HttpResponseError
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.containerservice.models import RunCommandRequest

from bot.armid import ArmId
from bot.sandbox.credential import StaticTokenCredential
from bot.sandbox.server import Sandbox
from bot.sandbox.world import parse_world
from tests.helpers import WORLDS

WORLD = yaml.safe_load((WORLDS / "private-cluster-udr.yaml").read_text())


def _world(**profile: object) -> dict:
    world = copy.deepcopy(WORLD)
    world["faults"] = {"runCommandSeconds": 1, "probeSeconds": 0.2}
    cluster = next(r for r in world["arm"] if r["type"].endswith("managedClusters"))
    cluster["properties"]["apiServerAccessProfile"].update(profile)
    return world


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(parse_world(_world())) as running:
        yield running


def _client(sandbox: Sandbox) -> tuple[ContainerServiceClient, ArmId]:
    cid = ArmId.parse(sandbox.world.clusters["platform-prod"])
    client = ContainerServiceClient(
        StaticTokenCredential(),
        cid.subscription,
        base_url=sandbox.arm_url,
        connection_verify=sandbox.ca_path,
    )
    return client, cid


def _zip(files: dict[str, str]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o755 if name.endswith(".sh") else 0o644) << 16
            archive.writestr(info, text)
    return base64.b64encode(buffer.getvalue()).decode()


def test_a_command_runs_kubectl_in_its_context_with_only_path_and_kubeconfig(sandbox):
    client, cid = _client(sandbox)
    started = time.monotonic()
    poller = client.managed_clusters.begin_run_command(
        cid.resource_group,
        cid.name,
        RunCommandRequest(
            command="cat note.txt; ./env.sh | sort; kubectl get nodes -o name; exit 3",
            context=_zip({"note.txt": "from the context\n", "env.sh": "#!/bin/sh\nenv\n"}),
        ),
        polling_interval=0.2,
    )
    result = poller.result(timeout=60)
    assert time.monotonic() - started >= 1, "runCommandSeconds delays the result"
    assert result.provisioning_state == "Succeeded" and result.exit_code == 3
    lines = result.logs.splitlines()
    assert lines[0] == "from the context"
    names = sorted(line.split("=", 1)[0] for line in lines if "=" in line)
    assert {"PATH", "KUBECONFIG"} <= set(names) <= {"PATH", "KUBECONFIG", "PWD", "SHLVL", "_"}
    assert "node/aks-system-73920154-vmss000000" in lines
    kubectl = [c.path for c in sandbox.calls("k8s")]
    assert "/api" in kubectl and "/api/v1/nodes" in kubectl, "discovery, then the list"
    posts = [c for c in sandbox.calls("arm") if c.path.endswith("/runCommand")]
    assert posts[-1].status == 202
    polls = [c.status for c in sandbox.calls("arm") if "/commandResults/" in c.path]
    assert polls[0] == 202 and polls[-1] == 200


def test_the_private_kubeconfig_names_the_private_fqdn(sandbox):
    client, cid = _client(sandbox)
    raw = client.managed_clusters.list_cluster_user_credentials(cid.resource_group, cid.name)
    kubeconfig = yaml.safe_load(raw.kubeconfigs[0].value)
    server = kubeconfig["clusters"][0]["cluster"]["server"]
    assert ".privatelink." in server and "127.0.0.1" not in server


def test_a_cluster_without_direct_access_refuses_the_connection():
    world = _world(enablePrivateCluster=False)
    cid = next(iter(world["clusters"].values()))
    world["kubernetes"][cid]["directAccess"] = False
    with Sandbox(parse_world(world)) as running:
        client, arm_id = _client(running)
        raw = client.managed_clusters.list_cluster_user_credentials(
            arm_id.resource_group, arm_id.name
        )
        server = yaml.safe_load(raw.kubeconfigs[0].value)["clusters"][0]["cluster"]["server"]
        with pytest.raises(OSError, match="refused"):
            urllib.request.urlopen(server.replace("https", "http") + "/version", timeout=5)


def test_disabled_run_command_answers_400_with_an_arm_error():
    with Sandbox(parse_world(_world(disableRunCommand=True))) as running:
        client, cid = _client(running)
        with pytest.raises(HttpResponseError) as raised:
            client.managed_clusters.begin_run_command(
                cid.resource_group, cid.name, RunCommandRequest(command="kubectl get nodes")
            )
        assert raised.value.status_code == 400
        body = json.loads(raised.value.response.text())
        assert "disabled" in body["error"]["message"]
