"""deploy/: every Kubernetes manifest validated offline against the Kubernetes schemas
(kubernetes-validate, strict: unknown fields fail) or, for custom resources, against
tests/data/crd_schemas.yaml; then the invariants that make the drain work: grace
ordering, probes on the right ports and services, selectors that select, the image's
entry point and the manifests agreeing, flags the real ``serve`` parser accepts.

No cluster and no kustomize binary are needed: ``render`` applies the two kustomize
features the layout uses (``resources`` and RFC 6902 ``patches``).
"""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from qwen3_asr_client.proto import asr_pb2

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "kubernetes"
DOCKER = ROOT / "deploy" / "docker"
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")  # gRPC probes are GA since 1.27; 1.30 is the oldest we check
KUSTOMIZATIONS = ["base", "overlays/cpu", "examples/gateway", "examples/prometheus-adapter"]
SERVICE = asr_pb2.DESCRIPTOR.services_by_name["SpeechRecognition"].full_name
CRD_SCHEMAS = yaml.safe_load((Path(__file__).parent / "data" / "crd_schemas.yaml").read_text())


# --------------------------------------------------------------------------- rendering


def render(folder: Path) -> list[dict]:
    """The objects ``kubectl kustomize folder`` would produce (resources and JSON 6902 patches)."""
    k = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(k) - {"apiVersion", "kind", "resources", "patches"}
    assert not unknown, f"{folder}: render() does not implement {sorted(unknown)}"
    docs: list[dict] = []
    for entry in k.get("resources", []):
        path = (folder / entry).resolve()
        if path.is_dir():
            docs += render(path)
        else:
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for patch in k.get("patches", []):
        target = patch["target"]
        ops = yaml.safe_load((folder / patch["path"]).read_text())
        matched = [d for d in docs if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]]
        assert len(matched) == 1, f"{folder}: patch {patch['path']} matches {len(matched)} objects"
        index = docs.index(matched[0])
        docs[index] = json_patch(matched[0], ops)
    return docs


def json_patch(doc: dict, ops: list[dict]) -> dict:
    """RFC 6902 add / replace / remove (what the overlays use)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        node = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key = (len(node) if last == "-" else int(last)) if isinstance(node, list) else last
        if op["op"] == "remove":
            del node[key]  # KeyError: the path does not exist, as kustomize would fail
        elif op["op"] == "replace":
            node[key]  # noqa: B018 - must exist
            node[key] = op["value"]
        elif op["op"] == "add":
            if isinstance(node, list):
                node.insert(key, op["value"])
            else:
                node[key] = op["value"]
        else:
            raise AssertionError(f"unsupported patch op {op['op']}")
    return doc


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: render(K8S / name) for name in KUSTOMIZATIONS}


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


# --------------------------------------------------------------------------- schemas


def schema_problems(doc: dict) -> list[str]:
    key = f"{doc['apiVersion']}/{doc['kind']}"
    if key in CRD_SCHEMAS["kinds"]:
        schema = {"$defs": CRD_SCHEMAS["$defs"], **CRD_SCHEMAS["kinds"][key]}
        validator = jsonschema.Draft202012Validator(schema)
        return [f"{key} {doc['metadata']['name']}: {e.message} at {list(e.absolute_path)}"
                for e in validator.iter_errors(doc)]
    problems = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{key} {doc['metadata']['name']} (Kubernetes {version}): {exc.message}")
    return problems


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_manifest_matches_its_schema(rendered, name):
    docs = rendered[name]
    assert docs
    problems = [p for d in docs for p in schema_problems(d)]
    assert problems == []


def test_schema_check_rejects_unknown_and_misplaced_fields(rendered):
    base = rendered["base"]
    deployment = copy.deepcopy(one(base, "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["path"] = "/readyz"
    monitor = copy.deepcopy(one(base, "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    route = copy.deepcopy(one(rendered["examples/gateway"], "GRPCRoute"))
    route["spec"]["rules"][0]["backendRefs"][0]["port"] = "grpc"
    policy = copy.deepcopy(one(rendered["examples/gateway"], "BackendTrafficPolicy"))
    policy["spec"]["loadBalancer"]["type"] = "LeastConn"
    for doc in (deployment, monitor, route, policy):
        assert schema_problems(doc), doc["kind"]


def test_render_matches_kustomize_semantics():
    ops = [{"op": "remove", "path": "/a/b~1c"}, {"op": "replace", "path": "/l/0", "value": 9},
           {"op": "add", "path": "/l/-", "value": 3}]
    assert json_patch({"a": {"b/c": 1, "d": 2}, "l": [1, 2]}, ops) == {"a": {"d": 2}, "l": [9, 2, 3]}
    with pytest.raises(KeyError):
        json_patch({"a": {}}, [{"op": "remove", "path": "/a/x"}])


# --------------------------------------------------------------------------- invariants


def dockerfile(name: str) -> dict:
    """USER, VOLUME, EXPOSE, ENV, ENTRYPOINT and CMD of the final stage, and the COPY lines."""
    text = (DOCKER / name).read_text().replace("\\\n", " ")
    final = text.split("\nFROM ")[-1]
    out: dict = {"copy": [], "env": {}, "run": []}
    for line in final.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "USER":
            out["user"] = rest
        elif word in ("VOLUME", "ENTRYPOINT", "CMD"):
            out[word.lower()] = yaml.safe_load(rest)
        elif word == "EXPOSE":
            out["expose"] = [int(p) for p in rest.split()]
        elif word == "ENV":
            out["env"].update(dict(part.split("=", 1) for part in shlex.split(rest)))
        elif word in ("COPY", "ADD"):
            out["copy"].append(rest)
        elif word == "RUN":
            out["run"].append(rest)
    out["all_text"] = text
    return out


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def serve_args(image: dict, container: dict) -> list[str]:
    """The command line the container runs: the image's ENTRYPOINT plus the pod's args."""
    return list(image["entrypoint"]) + list(container.get("args", image["cmd"]))


def deployment_problems(docs: list[dict], image: dict, gpu: bool) -> list[str]:
    from qwen3_asr_stream.cli import build_parser
    from qwen3_asr_stream.server.app import STOP_GRACE_S
    from qwen3_asr_stream.session.metrics import Metrics
    from qwen3_asr_stream.server.probes import LIVE_PATH

    problems: list[str] = []

    def need(ok, message):
        if not ok:
            problems.append(message)

    deployment, service = one(docs, "Deployment"), one(docs, "Service")
    pdb, hpa, monitor = one(docs, "PodDisruptionBudget"), one(docs, "HorizontalPodAutoscaler"), one(docs, "ServiceMonitor")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    argv = serve_args(image, container)
    need(argv[:2] == ["qwen3-asr-stream", "serve"], f"the container must run 'qwen3-asr-stream serve', runs {argv[:2]}")
    args = build_parser().parse_args(argv[1:])  # SystemExit on a flag serve does not have
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    need(ports.get("grpc") == args.port, f"containerPort grpc {ports.get('grpc')} != --port {args.port}")
    need(ports.get("metrics") == args.metrics_port, f"containerPort metrics {ports.get('metrics')} != --metrics-port {args.metrics_port}")
    need(ports.get("http") == args.http_port, f"containerPort http {ports.get('http')} != --http-port {args.http_port}")
    need(args.host in ("0.0.0.0", "[::]"), f"--host {args.host} is not reachable from other pods")
    need(set(image["expose"]) >= {args.port, args.metrics_port, args.http_port},
         "the image must EXPOSE the gRPC, metrics and HTTP ports")

    # grace ordering: preStop, then SIGTERM, then --grace for the utterances, then grpc's own stop grace
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    need(pre_stop[0] == "sleep", f"preStop must sleep (let endpoints and proxies drop the pod), got {pre_stop}")
    sleep_s = float(pre_stop[1])
    budget = sleep_s + args.grace + STOP_GRACE_S
    need(1 <= sleep_s <= 15, f"preStop sleep {sleep_s} s: 1-15 s covers endpoint propagation")
    need(pod["terminationGracePeriodSeconds"] > budget,
         f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} must exceed preStop {sleep_s} "
         f"+ --grace {args.grace} + stop grace {STOP_GRACE_S} = {budget}")

    # probes
    ready, live, startup = container["readinessProbe"], container["livenessProbe"], container["startupProbe"]
    for name, probe in (("readiness", ready), ("startup", startup)):
        need(probe.get("grpc", {}).get("port") == args.port, f"{name} probe must be a native gRPC probe on --port")
        need(probe.get("grpc", {}).get("service") == SERVICE, f"{name} probe must ask for service {SERVICE}")
    need(ready["periodSeconds"] * ready.get("failureThreshold", 3) <= sleep_s,
         "readiness must turn false within the preStop sleep (period x failureThreshold <= sleep)")
    http = live.get("httpGet", {})
    need(http.get("path") == LIVE_PATH and http.get("port") in ("metrics", args.metrics_port),
         f"liveness must be GET {LIVE_PATH} on the metrics port (the gRPC listener closes while draining)")
    need(live["periodSeconds"] * live.get("failureThreshold", 3) > 10,
         "liveness must tolerate a few seconds of a busy event loop")
    need(startup["periodSeconds"] * startup["failureThreshold"] >= 300, "startup probe must allow 5 min to load models")

    # GPU
    resources = container["resources"]
    gpus = (resources.get("requests", {}).get("nvidia.com/gpu"), resources.get("limits", {}).get("nvidia.com/gpu"))
    if gpu:
        need(gpus == (1, 1), f"one GPU per replica, requested and limited, got {gpus}")
        need(args.device.startswith("cuda"), f"--device {args.device} on a GPU pod")
    else:
        need(gpus == (None, None), f"CPU pods request no GPU, got {gpus}")
        need(args.device == "cpu", f"--device {args.device} on a CPU pod")

    # non-root, the model cache as a volume, no weights in the image
    security = pod["securityContext"]
    need(security.get("runAsNonRoot") is True, "runAsNonRoot")
    uid = image["user"].split(":")[0]
    need(uid.isdigit() and int(uid) != 0 and security.get("runAsUser") == int(uid),
         f"pod runAsUser {security.get('runAsUser')} must be the image's non-root USER {image['user']}")
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    hf_home = {e["name"]: e.get("value") for e in container["env"]}.get("HF_HOME")
    need(hf_home is not None and any(hf_home.startswith(m) for m in mounts), f"HF_HOME {hf_home} must be on a volume")
    need(image["env"].get("HF_HOME", "").startswith(tuple(image["volume"])), "the image's HF_HOME must be on its VOLUME")
    weights = re.compile(r"safetensors|\.bin\b|\.pt\b|snapshot_download|hf download|huggingface-cli", re.I)
    need(not weights.search(image["all_text"]), "the image must not fetch or copy model weights")

    # selectors and ports line up
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for name, selector in (("Deployment", deployment["spec"]["selector"]["matchLabels"]),
                           ("Service", service["spec"]["selector"]),
                           ("PodDisruptionBudget", pdb["spec"]["selector"]["matchLabels"])):
        need(selector.items() <= labels.items(), f"{name} selector {selector} does not select the pods {labels}")
    need(service["spec"].get("clusterIP") == "None", "the Service must be headless")
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    need(service_ports.get("grpc", {}).get("targetPort") in ("grpc", args.port), "Service port grpc -> container grpc")
    need(service_ports.get("grpc", {}).get("appProtocol") == "kubernetes.io/h2c", "gRPC port must declare h2c")
    need(monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items(),
         "ServiceMonitor must select the Service")
    need(all(e["port"] in service_ports for e in monitor["spec"]["endpoints"]), "ServiceMonitor port must be a Service port")
    need(pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable"), "PDB must bound disruption")

    # autoscaling on active streams per pod
    target = hpa["spec"]["scaleTargetRef"]
    need((target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"]), "HPA must scale the Deployment")
    [metric] = hpa["spec"]["metrics"]
    exported = {m.name for m in Metrics().registry.collect()}
    need(metric["type"] == "Pods" and metric["pods"]["metric"]["name"] in exported,
         f"HPA metric {metric['pods']['metric']['name']} must be a per-pod metric the server exports")
    per_pod = float(metric["pods"]["target"]["averageValue"])
    need(0 < per_pod < args.max_streams, f"HPA target {per_pod} streams/pod must be below --max-streams {args.max_streams}")
    need(hpa["spec"]["minReplicas"] >= 2, "at least 2 replicas, so a drain never leaves none")
    return problems


@pytest.mark.parametrize("name,image,gpu", [("base", "Dockerfile.cuda", True), ("overlays/cpu", "Dockerfile.cpu", False)])
def test_deployment_invariants(rendered, name, image, gpu):
    assert deployment_problems(rendered[name], dockerfile(image), gpu) == []


def test_invariant_check_catches_broken_deployments(rendered):
    image = dockerfile("Dockerfile.cuda")

    def broken(edit) -> list[str]:
        docs = copy.deepcopy(rendered["base"])
        edit({d["kind"]: d for d in docs})
        return deployment_problems(docs, image, gpu=True)

    def pod(d):
        return d["Deployment"]["spec"]["template"]["spec"]

    assert any("terminationGracePeriodSeconds" in p for p in broken(lambda d: pod(d).update(terminationGracePeriodSeconds=30)))
    assert any("liveness" in p for p in broken(lambda d: pod(d)["containers"][0].update(
        livenessProbe={"grpc": {"port": 50051}, "periodSeconds": 10, "failureThreshold": 3})))
    assert any("readiness" in p for p in broken(lambda d: pod(d)["containers"][0]["readinessProbe"]["grpc"].update(port=9464)))
    assert any("containerPort grpc" in p for p in broken(lambda d: pod(d)["containers"][0].update(
        args=["--device", "cuda", "--grace", "25", "--port", "50052"])))
    assert any("selector" in p for p in broken(lambda d: d["Service"]["spec"]["selector"].update(app="other")))
    assert any("HPA metric" in p for p in broken(
        lambda d: d["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["pods"]["metric"].update(name="asr_streams_active")))
    with pytest.raises(SystemExit):  # a flag serve does not know
        broken(lambda d: pod(d)["containers"][0].update(args=["--device", "cuda", "--drain", "25"]))


def test_images_are_non_root_with_a_model_volume():
    for name in ("Dockerfile.cuda", "Dockerfile.cpu"):
        image = dockerfile(name)
        assert image["user"].split(":")[0] not in ("0", "root"), name
        assert image["volume"] == ["/models"], name
        assert image["env"]["HF_HOME"].startswith("/models/"), name
        assert all(not c.startswith(("/models", "models")) for c in image["copy"]), name
        assert re.search(r"pip install .*torch==[0-9.]+", (DOCKER / name).read_text()), f"{name}: pin torch"
        assert re.search(r'pip install "\.\[server\]"', (DOCKER / name).read_text()), f"{name}: install the server"
    assert "download.pytorch.org/whl/cpu" in (DOCKER / "Dockerfile.cpu").read_text()  # not the CUDA wheel


def test_gateway_example_balances_per_call_without_cutting_streams(rendered):
    docs, base = rendered["examples/gateway"], rendered["base"]
    route, policy, gateway = one(docs, "GRPCRoute"), one(docs, "BackendTrafficPolicy"), one(docs, "Gateway")
    service = one(base, "Service")
    [rule] = route["spec"]["rules"]
    assert rule["matches"][0]["method"]["service"] == SERVICE
    [backend] = rule["backendRefs"]
    grpc_port = {p["name"]: p["port"] for p in service["spec"]["ports"]}["grpc"]
    assert (backend["name"], backend["port"]) == (service["metadata"]["name"], grpc_port)
    assert route["spec"]["parentRefs"][0]["name"] == gateway["metadata"]["name"]
    assert policy["spec"]["targetRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "GRPCRoute",
                                             "name": route["metadata"]["name"]}]
    assert policy["spec"]["loadBalancer"]["type"] == "LeastRequest"
    assert policy["spec"]["timeout"]["http"]["requestTimeout"] == "0s"  # Envoy's 15 s default would cut streams


def test_prometheus_adapter_serves_the_hpa_metric(rendered):
    config = yaml.safe_load(one(rendered["examples/prometheus-adapter"], "ConfigMap")["data"]["config.yaml"])
    [rule] = config["rules"]
    hpa = one(rendered["base"], "HorizontalPodAutoscaler")
    assert rule["name"]["as"] == hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
