"""Every manifest under deploy/, checked without a cluster: the cluster-launcher YAML against Ray's
own schema; Kubernetes objects through the `kubernetes` package's models (a misspelt field is
an error, not silently dropped); KubeRay's RayCluster and RayJob field by field; no secret in
plain text; nothing exposed outside the cluster; the RayJob's sweep config valid for `lth`."""
from __future__ import annotations

import configparser
import copy
import fnmatch
import json
import os
import re
import shlex
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from deploy.local_mlflow_server import GUNICORN_OPTIONS, MlflowServer
from lth_sweep.orchestrator.config import load_config
from lth_sweep.orchestrator.grid import expand_lineages

REPO = Path(__file__).resolve().parents[2]
DEPLOY = Path(os.environ.get("LTH_DEPLOY_DIR", REPO / "deploy"))

# Kinds checked against the kubernetes package's models; the CRDs are checked by hand below.
MODELS = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Service"): "V1Service",
    ("v1", "PersistentVolumeClaim"): "V1PersistentVolumeClaim",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("apps/v1", "StatefulSet"): "V1StatefulSet",
    ("networking.k8s.io/v1", "NetworkPolicy"): "V1NetworkPolicy",
}
CRDS = {("ray.io/v1", "RayCluster"), ("ray.io/v1", "RayJob")}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|_KEY$|^KEY$|PASSWD", re.I)
USERINFO_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/@\s:]+:[^/@\s]+@", re.I)


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def documents() -> list[tuple[str, dict]]:
    docs = []
    for path in yaml_files():
        for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc is not None:
                docs.append((f"{path.relative_to(DEPLOY)}#{index}", doc))
    return docs


def k8s_objects() -> list[tuple[str, dict]]:
    return [(where, doc) for where, doc in documents() if "apiVersion" in doc]


def launcher_configs() -> list[tuple[str, dict]]:
    return [(where, doc) for where, doc in documents() if "provider" in doc and "cluster_name" in doc]


def of_kind(kind: str) -> list[dict]:
    return [doc for _, doc in k8s_objects() if doc["kind"] == kind]


def strings(value, path=""):
    """Every string in a document, with where it is."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings(item, f"{path}[{index}]")
    elif isinstance(value, str):
        yield path, value


def pod_specs(doc: dict) -> list[tuple[str, dict]]:
    """(role, pod spec) of every pod an object makes."""
    spec = doc.get("spec", {})
    if doc["kind"] in ("Deployment", "StatefulSet"):
        return [(doc["metadata"]["name"], spec["template"]["spec"])]
    if doc["kind"] == "RayCluster":
        pods = [("head", spec["headGroupSpec"]["template"]["spec"])]
        return pods + [(g["groupName"], g["template"]["spec"]) for g in spec.get("workerGroupSpecs", [])]
    if doc["kind"] == "RayJob":
        pods = [("submitter", spec["submitterPodTemplate"]["spec"])] if "submitterPodTemplate" in spec else []
        if "rayClusterSpec" in spec:
            pods += pod_specs({"kind": "RayCluster", "spec": spec["rayClusterSpec"]})
        return pods
    return []


def same(original, back, path="") -> list[str]:
    """Where `back` (a model serialised again) lost or changed what `original` said."""
    if isinstance(original, dict):
        if not isinstance(back, dict):
            return [f"{path}: not a mapping in the model"]
        problems = []
        for key, value in original.items():
            if key not in back:
                problems.append(f"{path}.{key}: not a field of the model (misspelt or misplaced)")
            else:
                problems += same(value, back[key], f"{path}.{key}")
        return problems
    if isinstance(original, list):
        if not isinstance(back, list) or len(back) != len(original):
            return [f"{path}: list changed in the model"]
        return [p for i, (a, b) in enumerate(zip(original, back)) for p in same(a, b, f"{path}[{i}]")]
    return [] if str(original) == str(back) else [f"{path}: {original!r} became {back!r}"]


def strict_model(data: dict, model: str) -> None:
    from kubernetes.client import ApiClient

    api = ApiClient()
    obj = api._ApiClient__deserialize(copy.deepcopy(data), model)  # the client's own deserialiser
    problems = same(data, api.sanitize_for_serialization(obj))
    assert not problems, f"{model}: " + "; ".join(problems)


# -- the set of files -------------------------------------------------------------------------


def test_deploy_holds_every_piece():
    kinds = {doc["kind"] for _, doc in k8s_objects()}
    assert {"RayCluster", "RayJob", "Deployment", "StatefulSet", "Service", "ConfigMap", "NetworkPolicy"} <= kinds
    assert len(launcher_configs()) >= 1
    assert (DEPLOY / "Dockerfile").exists() and (DEPLOY / "mlflow.Dockerfile").exists()
    for where, doc in documents():
        assert "apiVersion" in doc or where in dict(launcher_configs()), f"{where}: neither Kubernetes nor Ray launcher"


# -- the Ray cluster launcher -------------------------------------------------------------------


@pytest.mark.parametrize("where,config", launcher_configs(), ids=lambda v: v if isinstance(v, str) else "")
def test_cluster_launcher_config_validates_against_rays_schema(where, config):
    import jsonschema
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)  # the file as written (no extra keys anywhere)
    validate_config(prepare_config(copy.deepcopy(config)))  # as `ray up` checks it, defaults filled in
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    assert any(t.get("max_workers", 0) > 0 for name, t in types.items() if name != config["head_node_type"])
    assert any("gpu" in name or re.match(r"^(g|p)\d", t["node_config"].get("InstanceType", "")) for name, t in types.items())
    for remote, local in config.get("file_mounts", {}).items():
        assert (REPO / local).exists(), f"{where}: file_mounts {remote}: {local} does not exist"
    start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=0.0.0.0" not in start, "the dashboard must not listen on the network"
    for path, value in strings(config):
        assert not USERINFO_PASSWORD.search(value), f"{where}{path}: a password in a URI"


# -- Kubernetes objects ------------------------------------------------------------------------


@pytest.mark.parametrize("where,doc", k8s_objects(), ids=lambda v: v if isinstance(v, str) else "")
def test_kubernetes_object_is_well_formed(where, doc):
    key = (doc["apiVersion"], doc["kind"])
    assert key in MODELS or key in CRDS, f"{where}: unexpected {key}"
    assert doc["metadata"].get("name"), f"{where}: no metadata.name"
    if doc["kind"] != "Namespace":
        assert doc["metadata"].get("namespace") == "lth", f"{where}: not in namespace lth"
    if key in MODELS:
        strict_model(doc, MODELS[key])
    for role, pod in pod_specs(doc):
        strict_model(pod, "V1PodSpec")
        volumes = {v["name"] for v in pod.get("volumes", [])}
        volumes |= {c["metadata"]["name"] for c in doc.get("spec", {}).get("volumeClaimTemplates", [])}
        for container in pod["containers"]:
            name = f"{where} {role}/{container['name']}"
            image = container.get("image", "")
            assert image and ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{name}: image {image!r} needs a fixed tag"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container.get("resources", {}).get(kind, {})), f"{name}: no cpu/memory {kind}"
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{name}: mounts unknown volume {mount['name']}"


def test_raycluster_spec_has_what_kuberay_requires():
    (cluster,) = of_kind("RayCluster")
    spec = cluster["spec"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", spec["rayVersion"])
    import ray

    assert spec["rayVersion"] == ray.__version__, "the cluster's Ray must be the Ray lth-sweep is tested with"
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict) and head["template"]["spec"]["containers"]
    assert head.get("serviceType", "ClusterIP") == "ClusterIP" and not head.get("enableIngress", False)
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert len(groups) == len(spec["workerGroupSpecs"]) >= 2
    for name, group in groups.items():
        assert isinstance(group["rayStartParams"], dict), name
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], name
        assert group["template"]["spec"]["containers"], name
        for env_var in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            assert env_var in {e["name"] for e in group["template"]["spec"]["containers"][0].get("env", [])}, (name, env_var)
    gpu = [g for g in groups.values() if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]]
    assert gpu, "no worker group with nvidia.com/gpu limits"
    cpu = [g for g in groups.values() if g not in gpu]
    assert cpu, "no CPU worker group"
    if spec.get("enableInTreeAutoscaling"):
        assert any(g["maxReplicas"] > g["minReplicas"] for g in groups.values())


def head_pod(cluster: dict) -> dict:
    return cluster["spec"]["headGroupSpec"]["template"]["spec"]


def test_rayjob_runs_lth_sweep_on_a_config_from_a_configmap_that_lth_accepts(tmp_path):
    (job,) = of_kind("RayJob")
    spec = job["spec"]
    assert spec["entrypoint"].strip()
    words = shlex.split(spec["entrypoint"])
    assert words[:2] == ["lth", "sweep"], spec["entrypoint"]
    assert "--address" in words and words[words.index("--address") + 1] == "auto"
    config_path = words[2]
    assert config_path.startswith("/configs/")
    # The cluster it runs on: its own rayClusterSpec or the RayCluster its selector names.
    if "rayClusterSpec" in spec:
        pod = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    else:
        name = spec["clusterSelector"]["ray.io/cluster"]
        (cluster,) = [c for c in of_kind("RayCluster") if c["metadata"]["name"] == name]
        pod = head_pod(cluster)
        assert not spec.get("shutdownAfterJobFinishes"), "a selected cluster is not the job's to shut down"
    mounts = {m["mountPath"].rstrip("/"): m for m in pod["containers"][0]["volumeMounts"]}
    mount = mounts[str(Path(config_path).parent)]
    assert "subPath" not in mount  # a subPath mount never sees an edited ConfigMap
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    (configmap,) = [c for c in of_kind("ConfigMap") if c["metadata"]["name"] == volume["configMap"]["name"]]
    text = configmap["data"][Path(config_path).name]

    (tmp_path / "sweep.yaml").write_text(text)
    config = load_config(tmp_path / "sweep.yaml")
    assert expand_lineages(config)  # the whole grid, as `lth sweep --dry-run` checks it
    uri = urlparse(config.tracking.uri)
    assert uri.scheme in ("http", "https") and not uri.username and not uri.password, "credentials in the tracking URI"
    # The URI names the MLflow Service, and the server accepts that Host header.
    host = uri.hostname.split(".")
    services = {s["metadata"]["name"]: s for s in of_kind("Service")}
    assert host[0] in services and (len(host) == 1 or host[1] == services[host[0]]["metadata"]["namespace"])
    assert uri.port in {p["port"] for p in services[host[0]]["spec"]["ports"]}
    (mlflow,) = [d for d in of_kind("Deployment") if d["metadata"]["name"] == host[0]]
    allowed = server_args(mlflow)["--allowed-hosts"].split(",")
    assert any(fnmatch.fnmatch(uri.netloc, pattern) for pattern in allowed), f"{uri.netloc} not in --allowed-hosts"
    # Tune's storage reaches every Ray pod: an object store, or one shared ReadWriteMany volume.
    if "://" not in config.storage:
        cluster_pods = [pod] + ([] if "rayClusterSpec" in spec else [g["template"]["spec"] for g in cluster["spec"]["workerGroupSpecs"]])
        claims = {c["metadata"]["name"]: c for c in of_kind("PersistentVolumeClaim")}
        for ray_pod in cluster_pods:
            (mount,) = [m for m in ray_pod["containers"][0]["volumeMounts"] if config.storage.startswith(m["mountPath"].rstrip("/") + "/")]
            (volume,) = [v for v in ray_pod["volumes"] if v["name"] == mount["name"]]
            claim = claims[volume["persistentVolumeClaim"]["claimName"]]
            assert "ReadWriteMany" in claim["spec"]["accessModes"]


# -- MLflow server -----------------------------------------------------------------------------


def server_args(deployment: dict) -> dict[str, str | None]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = {}
    for arg in container.get("command", [])[1:] + container.get("args", []):
        if arg.startswith("--"):
            key, _, value = arg.partition("=")
            args[key] = value or None
    return args


def test_mlflow_server_uses_postgres_proxied_artifacts_and_basic_auth():
    (mlflow,) = [d for d in of_kind("Deployment") if d["metadata"]["name"] == "mlflow"]
    args = server_args(mlflow)
    assert args["--app-name"] == "basic-auth"
    assert args["--backend-store-uri"].startswith("postgresql")
    assert "--serve-artifacts" in args and args["--artifacts-destination"]
    pod = mlflow["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    for name in ("MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_AUTH_ADMIN_PASSWORD", "PGPASSWORD"):
        assert "secretKeyRef" in env[name].get("valueFrom", {}), name
    destination = args["--artifacts-destination"]
    if "://" not in destination:
        assert any(destination.startswith(m["mountPath"]) for m in container["volumeMounts"]), "artifacts on no volume"
    # The auth config: a mounted ConfigMap, naming the admin but holding no password.
    ini_path = Path(env["MLFLOW_AUTH_CONFIG_PATH"]["value"])
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"].rstrip("/") == str(ini_path.parent)]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    (configmap,) = [c for c in of_kind("ConfigMap") if c["metadata"]["name"] == volume["configMap"]["name"]]
    ini = configparser.ConfigParser()
    ini.read_string(configmap["data"][ini_path.name])
    assert ini["mlflow"]["admin_username"] and "admin_password" not in ini["mlflow"]
    assert ini["mlflow"]["database_uri"].startswith("postgresql")
    assert ini["mlflow"]["authorization_function"] == "mlflow.server.auth:authenticate_request_basic_auth"


def test_mlflow_server_runs_as_the_tested_server_does():
    """deploy/local_mlflow_server.py starts the server the tests (and bench/mlflow_logging.py) use
    with these settings; a change to the manifest must be made there too, and measured."""
    (mlflow,) = [d for d in of_kind("Deployment") if d["metadata"]["name"] == "mlflow"]
    args = server_args(mlflow)
    assert args["--gunicorn-opts"] == GUNICORN_OPTIONS
    assert int(args["--workers"]) == MlflowServer.workers
    (configmap,) = [c for c in of_kind("ConfigMap") if c["metadata"]["name"] == "mlflow-auth"]
    ini = configparser.ConfigParser()
    ini.read_string(configmap["data"]["basic_auth.ini"])
    assert int(ini["mlflow"]["auth_cache_ttl_seconds"]) == MlflowServer.auth_cache_seconds


# -- no secrets, no exposure -------------------------------------------------------------------


def containers_of(doc: dict):
    for role, pod in pod_specs(doc):
        for container in pod.get("initContainers", []) + pod["containers"]:
            yield f"{role}/{container['name']}", container
    if doc["kind"] == "RayCluster" and "autoscalerOptions" in doc["spec"]:
        yield "autoscaler", doc["spec"]["autoscalerOptions"]


@pytest.mark.parametrize("where,doc", k8s_objects(), ids=lambda v: v if isinstance(v, str) else "")
def test_no_secret_in_plain_text(where, doc):
    assert doc["kind"] != "Secret", f"{where}: Secrets are created by hand (deploy/README.md), not shipped"
    for path, value in strings(doc):
        assert not USERINFO_PASSWORD.search(value), f"{where}{path}: a password in a URI"
        assert not re.search(r"^\s*admin_password\s*=", value, re.M), f"{where}{path}: admin_password in a config"
    for name, container in containers_of(doc):
        for env in container.get("env", []):
            if SECRET_NAME.search(env["name"]):
                assert "value" not in env and "secretKeyRef" in env.get("valueFrom", {}), (
                    f"{where} {name}: {env['name']} must come from a Secret (valueFrom.secretKeyRef)"
                )


def test_every_secret_the_manifests_use_is_documented():
    readme = (DEPLOY / "README.md").read_text()
    used = set()
    for _, doc in k8s_objects():
        for _, container in containers_of(doc):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    used.add((ref["name"], ref["key"]))
    assert used
    for name, key in used:
        assert re.search(rf"create secret generic {re.escape(name)}\b[^\n]*(\\\n[^\n]*)*--from-literal={re.escape(key)}=", readme), (
            f"deploy/README.md does not say how to create secret {name} with key {key}"
        )


@pytest.mark.parametrize("where,doc", k8s_objects(), ids=lambda v: v if isinstance(v, str) else "")
def test_nothing_is_exposed_outside_the_cluster(where, doc):
    assert doc["kind"] not in ("Ingress", "Route", "Gateway", "HTTPRoute"), f"{where}: no unauthenticated way in"
    if doc["kind"] == "Service":
        assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", f"{where}: Service type {doc['spec']['type']}"
        assert not doc["spec"].get("externalIPs"), f"{where}: externalIPs"
    for _, container in containers_of(doc):
        for port in container.get("ports", []):
            assert "hostPort" not in port, f"{where}: hostPort {port}"
    for _, pod in pod_specs(doc):
        assert not pod.get("hostNetwork"), f"{where}: hostNetwork"
    if doc["kind"] == "RayCluster":
        assert doc["spec"]["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP"
        assert not doc["spec"]["headGroupSpec"].get("enableIngress", False)


def test_ray_and_mlflow_pods_admit_traffic_from_their_namespace_only():
    policies = of_kind("NetworkPolicy")
    guarded = {}
    for policy in policies:
        labels = policy["spec"]["podSelector"].get("matchLabels", {})
        for rule in policy["spec"].get("ingress", []):
            for source in rule.get("from", []):
                assert "ipBlock" not in source and "namespaceSelector" not in source, policy["metadata"]["name"]
        guarded[tuple(sorted(labels.items()))] = policy
    def is_guarded(labels: dict) -> bool:
        return any(all(labels.get(k) == v for k, v in key) for key in guarded)
    (cluster,) = of_kind("RayCluster")
    for _, pod_doc in [("head", cluster["spec"]["headGroupSpec"])] + [(g["groupName"], g) for g in cluster["spec"]["workerGroupSpecs"]]:
        assert is_guarded(pod_doc["template"]["metadata"]["labels"])
    for deployment in of_kind("Deployment") + of_kind("StatefulSet"):
        assert is_guarded(deployment["spec"]["template"]["metadata"]["labels"]), deployment["metadata"]["name"]


def test_readme_says_how_to_reach_the_dashboard_and_mlflow():
    readme = (DEPLOY / "README.md").read_text()
    assert "kubectl port-forward" in readme and "8265" in readme and "5000" in readme
    assert "ray dashboard" in readme
