"""deploy/azure: the read role grants exactly the Azure actions the code needs and no write;
the route-writer role holds only route writes; setup.sh wires the identity to the
ServiceAccount the manifests use.

"Needed" is computed from the code: bot/collect/azure.py's READS table (operation -> RBAC
action, the table the bot's own AZURE_ACCESS_DENIED findings name), any other READS table
in bot/collect, and every Azure SDK call found in bot/ (operation group + method, looked up
in deploy/azure/operations.yaml). The Kubernetes side is tested in test_kustomize.py.
"""

from __future__ import annotations

import ast
import functools
import importlib
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
AZURE = ROOT / "deploy" / "azure"
READER = json.loads((AZURE / "aks-egress-reader.json").read_text())
WRITER = json.loads((AZURE / "aks-egress-route-writer.json").read_text())
CLUSTER_USER = json.loads((AZURE / "aks-egress-cluster-user.json").read_text())
LIST_USER_CREDENTIAL = "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action"
OPERATIONS = yaml.safe_load((AZURE / "operations.yaml").read_text())["operations"]
# POST actions that only read; anything else in the read role must end in /read.
READ_ONLY_POSTS = {"Microsoft.ContainerService/managedClusters/listClusterUserCredential/action"}
# Azure run command: no Azure write, but it runs kubectl in the cluster with the bot's
# Kubernetes rights; granted for private clusters only (deploy/README.md says so).
PRIVATE_CLUSTER_POSTS = {"Microsoft.ContainerService/managedClusters/runCommand/action"}
PLACEHOLDER = "/subscriptions/00000000-0000-0000-0000-000000000000"


class _NoCredential:
    def get_token(self, *scopes, **kwargs):  # never called: the clients are only inspected
        raise RuntimeError("no network in tests")


@functools.cache
def operation_groups() -> dict[str, frozenset[str]]:
    """Operation group (managed_clusters, route_tables, ...) -> its methods, for the SDK
    clients the bot uses, read off client instances (no request is made)."""
    clients = [
        ("azure.mgmt.containerservice", "ContainerServiceClient"),
        ("azure.mgmt.network", "NetworkManagementClient"),
        ("azure.mgmt.compute", "ComputeManagementClient"),
        ("azure.mgmt.monitor", "MonitorManagementClient"),
        ("azure.mgmt.advisor", "AdvisorManagementClient"),
    ]
    groups: dict[str, set[str]] = {}
    for module, name in clients:
        client = getattr(importlib.import_module(module), name)(
            _NoCredential(), "00000000-0000-0000-0000-000000000000"
        )
        for attr in dir(client):
            group = getattr(client, attr, None) if not attr.startswith("_") else None
            if attr != "operations" and type(group).__name__.endswith("Operations"):
                methods = {m for m in dir(group) if not m.startswith("_")}
                groups.setdefault(attr, set()).update(methods)
        client.close()
    return {g: frozenset(m) for g, m in groups.items()}


def code_files() -> list[Path]:
    return [p for p in sorted((ROOT / "bot").rglob("*.py")) if "sandbox" not in p.parts]


def _keys(tree: ast.Module) -> set[int]:
    """ids of string constants used as mapping keys (d["x"], d.get("x"), {"x": ...})."""
    keys = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript):
            keys.add(id(node.slice))
        elif isinstance(node, ast.Dict):
            keys |= {id(k) for k in node.keys if k is not None}
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("get", "pop", "setdefault")
            and node.args
        ):
            keys.add(id(node.args[0]))
    return keys


def sdk_calls() -> dict[tuple[str, str], str]:
    """(operation group, method) -> where, for every Azure SDK call in the bot: chains like
    `x.managed_clusters.get(...)`, and groups named as strings and reached through
    `getattr(client, attr).METHOD(...)` (bot/collect/azure.py's get_network)."""
    groups = operation_groups()
    found: dict[tuple[str, str], str] = {}
    for path in code_files():
        source = path.read_text()
        if "azure.mgmt" not in source and "AzureClients" not in source:
            continue  # holds no SDK client (evidence dicts share the groups' names)
        tree = ast.parse(source)
        keys = _keys(tree)
        dynamic = set()  # methods called on getattr(client, <name>)
        named = []  # string constants, not mapping keys, that name an operation group
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                target, method = node.func.value, node.func.attr
                if isinstance(target, ast.Attribute) and method in groups.get(target.attr, ()):
                    found.setdefault((target.attr, method), where)
                if (
                    isinstance(target, ast.Call)
                    and isinstance(target.func, ast.Name)
                    and target.func.id == "getattr"
                ):
                    dynamic.add(method)
            if isinstance(node, ast.Constant) and node.value in groups and id(node) not in keys:
                named.append((node.value, where))
        for group, where in named:
            for method in dynamic & groups[group]:
                found.setdefault((group, method), where)
    return found


def reads_tables() -> dict[str, str]:
    """bot/collect/*.py module-level dicts named READS or *_READS (operation -> action)."""
    tables: dict[str, str] = {}
    for path in sorted((ROOT / "bot" / "collect").glob("*.py")):
        module = importlib.import_module(f"bot.collect.{path.stem}")
        for name, value in vars(module).items():
            if re.fullmatch(r"([A-Z_]+_)?READS", name) and isinstance(value, dict):
                tables |= {f"{path.stem}.{name}: {k}": v for k, v in value.items()}
    return tables


def needed_actions() -> set[str]:
    calls = sdk_calls()
    missing = sorted(
        f"{g}.{m} ({where})"
        for (g, m), where in calls.items()
        if m not in (OPERATIONS.get(g) or {})
    )
    assert not missing, f"Azure SDK calls with no entry in deploy/azure/operations.yaml: {missing}"
    return {OPERATIONS[g][m] for g, m in calls} | set(reads_tables().values())


def test_the_scan_sees_the_code():
    calls = sdk_calls()
    assert ("managed_clusters", "get") in calls
    assert ("managed_clusters", "list_cluster_user_credentials") in calls
    assert ("route_tables", "get") in calls, "groups reached through getattr by name"
    assert "azure.READS: managed cluster" in reads_tables()
    assert ("managed_clusters", "begin_run_command") in calls


def test_run_command_is_granted_and_documented_as_for_private_clusters_only():
    assert set(READER["Actions"]) >= PRIVATE_CLUSTER_POSTS
    assert "Microsoft.ContainerService/managedClusters/commandResults/read" in READER["Actions"]
    assert "private clusters" in READER["Description"]
    readme = (ROOT / "deploy" / "README.md").read_text()
    assert "runCommand/action" in readme and "private" in readme


def test_read_and_cluster_user_roles_grant_exactly_what_the_code_needs():
    needed = needed_actions() - set(WRITER["Actions"])  # the bypass's writes: its own role
    granted = set(READER["Actions"]) | set(CLUSTER_USER["Actions"])
    assert len(READER["Actions"]) == len(set(READER["Actions"]))
    assert granted == needed, (
        f"missing {sorted(needed - granted)}, not needed {sorted(granted - needed)}"
    )


def test_the_cluster_credential_is_its_own_role_never_in_the_subscription_wide_one():
    assert LIST_USER_CREDENTIAL not in READER["Actions"]
    assert CLUSTER_USER["Actions"] == [LIST_USER_CREDENTIAL]
    assert CLUSTER_USER["IsCustom"] is True and CLUSTER_USER["DataActions"] == []


def test_read_role_grants_no_write():
    assert READER["IsCustom"] is True
    assert READER["NotActions"] == [] and READER["NotDataActions"] == []
    assert READER["DataActions"] == [], "no data-plane access"
    for action in READER["Actions"]:
        assert "*" not in action, action
        assert action.endswith("/read") or action in READ_ONLY_POSTS | PRIVATE_CLUSTER_POSTS, action
        assert not re.search(r"/(write|delete)$", action, re.I), action
    assert "listClusterAdminCredential" not in json.dumps(READER)


def test_route_writer_role_grants_exactly_the_writes_the_code_makes():
    writes = {a for a in needed_actions() if re.search(r"/(write|delete)$", a)}
    assert writes == set(WRITER["Actions"])


def test_route_writer_role_holds_only_route_writes():
    assert WRITER["IsCustom"] is True
    assert WRITER["Actions"], "the appliance-bypass action needs route writes"
    assert WRITER["DataActions"] == [] and WRITER["NotActions"] == []
    for action in WRITER["Actions"]:
        assert action.startswith("Microsoft.Network/routeTables/routes/"), action
        assert action.endswith(("/write", "/delete")), action
    assert not set(WRITER["Actions"]) & set(READER["Actions"])
    assert READER["Name"] != WRITER["Name"]


def test_role_files_use_the_placeholder_scope_that_setup_replaces():
    for role in (READER, WRITER, CLUSTER_USER):
        assert role["AssignableScopes"] == [PLACEHOLDER]
    assert PLACEHOLDER in (AZURE / "setup.sh").read_text()


# -- setup.sh against a stub `az` ----------------------------------------------------------

FAKE_AZ = r"""#!/usr/bin/env bash
# Records each call; answers the queries setup.sh makes like az would.
printf '%s\n' "$*" >>"$AZ_LOG"
case "$*" in
  *"oidcIssuerProfile.issuerUrl"*) echo "https://oidc.example/issuer/" ;;
  *"workloadIdentity.enabled"*) echo "true" ;;
  *"--query location"*) echo "westeurope" ;;
  *"--query clientId"*) echo "11111111-1111-1111-1111-111111111111" ;;
  *"--query principalId"*) echo "22222222-2222-2222-2222-222222222222" ;;
  *"--query tenantId"*) echo "33333333-3333-3333-3333-333333333333" ;;
  "role definition list"*) echo "" ;;
  "role definition create"*|"role definition update"*)
    args="$*"; file="${args##*--role-definition @}"; file="${file%% *}"
    cp "$file" "$AZ_ROLES/$(date +%s%N).json" ;;
  "identity federated-credential show"*) exit 1 ;;
esac
exit 0
"""


def run_setup(tmp_path: Path, **env: str) -> tuple[list[str], list[dict]]:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    bin_dir = tmp_path / "bin"
    roles = tmp_path / "roles"
    bin_dir.mkdir()
    roles.mkdir()
    az = bin_dir / "az"
    az.write_text(FAKE_AZ)
    az.chmod(az.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "az.log"
    done = subprocess.run(
        ["bash", str(AZURE / "setup.sh")],
        env={
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "AZ_LOG": str(log),
            "AZ_ROLES": str(roles),
            "SUBSCRIPTION": "aaaaaaaa-0000-0000-0000-000000000000",
            "RESOURCE_GROUP": "rg-aks",
            "CLUSTER_NAME": "aks-prod",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    defined = [json.loads(p.read_text()) for p in sorted(roles.iterdir())]
    return log.read_text().splitlines(), defined


def test_setup_is_read_only_by_default_and_federates_the_manifests_service_account(tmp_path):
    calls, defined = run_setup(tmp_path)
    assert [d["Name"] for d in defined] == [READER["Name"], CLUSTER_USER["Name"]]
    assert defined[0]["AssignableScopes"] == ["/subscriptions/aaaaaaaa-0000-0000-0000-000000000000"]
    assert defined[0]["Actions"] == READER["Actions"]
    assignments = [c for c in calls if c.startswith("role assignment create")]
    assert len(assignments) == 2, "reader at the subscription, cluster user on the cluster"
    assert f"--role {READER['Name']}" in assignments[0]
    assert "--scope /subscriptions/aaaaaaaa-0000-0000-0000-000000000000 " in assignments[0]
    assert f"--role {CLUSTER_USER['Name']}" in assignments[1]
    cluster = (
        "/subscriptions/aaaaaaaa-0000-0000-0000-000000000000/resourceGroups/rg-aks"
        "/providers/Microsoft.ContainerService/managedClusters/aks-prod"
    )
    assert f"--scope {cluster} " in assignments[1]
    for assignment in assignments:
        assert "--assignee-object-id 22222222-2222-2222-2222-222222222222" in assignment
    assert not any("route writer" in c for c in calls), "route writes stay unassigned"
    [federated] = [c for c in calls if c.startswith("identity federated-credential create")]
    # The subject is the ServiceAccount that deploy/kubernetes/base gives worker and cron.
    accounts = yaml.safe_load_all(
        (ROOT / "deploy/kubernetes/base/serviceaccounts.yaml").read_text()
    )
    [sa] = [
        a
        for a in accounts
        if "azure.workload.identity/client-id" in a["metadata"].get("annotations", {})
    ]
    subject = f"system:serviceaccount:{sa['metadata']['namespace']}:{sa['metadata']['name']}"
    assert f"--subject {subject}" in federated
    assert "--issuer https://oidc.example/issuer/" in federated
    assert "--audience api://AzureADTokenExchange" in federated


def test_setup_grants_cluster_credentials_per_configured_cluster(tmp_path):
    clusters = [
        "/subscriptions/aaaaaaaa-0000-0000-0000-000000000000/resourceGroups/rg-a"
        "/providers/Microsoft.ContainerService/managedClusters/prod-weu",
        "/subscriptions/bbbbbbbb-0000-0000-0000-000000000000/resourceGroups/rg-b"
        "/providers/Microsoft.ContainerService/managedClusters/prod-neu",
    ]
    calls, defined = run_setup(tmp_path, CLUSTER_IDS=" ".join(clusters))
    by_name = {d["Name"]: d for d in defined}
    assert by_name[CLUSTER_USER["Name"]]["AssignableScopes"] == [
        "/subscriptions/aaaaaaaa-0000-0000-0000-000000000000",
        "/subscriptions/bbbbbbbb-0000-0000-0000-000000000000",
    ]
    scoped = [
        c.split("--scope ")[1].split()[0]
        for c in calls
        if CLUSTER_USER["Name"] in c and c.startswith("role assignment create")
    ]
    assert scoped == clusters


def test_setup_assigns_route_writes_only_where_asked(tmp_path):
    hub = "/subscriptions/bbbbbbbb-0000-0000-0000-000000000000"
    routes = f"{hub}/resourceGroups/rg-hub-routes"
    calls, defined = run_setup(
        tmp_path,
        READ_SCOPES=f"/subscriptions/aaaaaaaa-0000-0000-0000-000000000000 {hub}",
        ROUTE_WRITE_SCOPES=routes,
    )
    by_name = {d["Name"]: d for d in defined}
    assert by_name[READER["Name"]]["AssignableScopes"] == [
        "/subscriptions/aaaaaaaa-0000-0000-0000-000000000000",
        hub,
    ]
    assert by_name[WRITER["Name"]]["AssignableScopes"] == [hub]
    writes = [c for c in calls if c.startswith("role assignment create") and "route writer" in c]
    assert len(writes) == 1 and writes[0].endswith(f"--scope {routes} --output none")
