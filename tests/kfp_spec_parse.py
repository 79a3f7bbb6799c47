"""Strict parse of compiled pipeline YAMLs with one KFP release's own spec definitions, as the
backend parses them: run as `python tests/kfp_spec_parse.py DEFS YAML...`, where DEFS is a folder
holding that release's kfp-pipeline-spec and kfp-kubernetes (`pip install --target`).

The API server reads the first YAML document as a PipelineSpec and the second as a PlatformSpec,
each with protojson.Unmarshal, which refuses unknown fields; a platform spec that fails is dropped
whole (backend/src/apiserver/template/v2_template.go, `NewV2SpecTemplate` and
`IsPlatformSpecWithKubernetesConfig`). The Argo compiler then reads each task's Kubernetes config
as a KubernetesExecutorConfig, strictly too, and fails the run's creation on an unknown field
(backend/src/v2/compiler/argocompiler/container.go, `containerExecutorTask`). Here:
`json_format.ParseDict` with `ignore_unknown_fields=False`, the Python equivalent.

Its own process, because the generated modules register their .proto files in protobuf's default
pool, where another release's (the kfp SDK's own copy) would clash; and the kfp SDK is never
imported (kfp-kubernetes's package __init__ imports it): the packages' folders are mapped by hand.
Prints one JSON object: {"versions": {distribution: version}, "errors": [one line each]}.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path


def load_definitions(defs: Path):
    for name in ("kfp", "kfp.pipeline_spec", "kfp.kubernetes"):
        module = types.ModuleType(name)
        module.__path__ = [str(defs.joinpath(*name.split(".")))]
        sys.modules[name] = module
    from kfp.kubernetes import kubernetes_executor_config_pb2
    from kfp.pipeline_spec import pipeline_spec_pb2

    for module in (pipeline_spec_pb2, kubernetes_executor_config_pb2):
        assert Path(module.__file__).is_relative_to(defs), module.__file__
    return pipeline_spec_pb2, kubernetes_executor_config_pb2


def versions(defs: Path) -> dict[str, str]:
    found = {}
    for info in defs.glob("*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").partition("-")
        found[name.replace("_", "-")] = version
    return found


def check(path: Path, spec_pb2, k8s_pb2) -> list[str]:
    import yaml
    from google.protobuf import json_format

    def parse(what: str, value: dict, message) -> list[str]:
        try:
            json_format.ParseDict(value, message, ignore_unknown_fields=False)
        except json_format.ParseError as err:
            return [f"{path.name}: {what}: {err}"]
        return []

    docs = list(yaml.safe_load_all(path.read_text()))
    if len(docs) != 2:
        return [f"{path.name}: {len(docs)} YAML documents, expected the pipeline and platform spec"]
    errors = parse("pipeline spec", docs[0], spec_pb2.PipelineSpec())
    errors += parse("platform spec", docs[1], spec_pb2.PlatformSpec())
    executors = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for label, config in executors.items():
        errors += parse(f"{label} Kubernetes config", config, k8s_pb2.KubernetesExecutorConfig())
    return errors


def main(argv: list[str]) -> int:
    defs = Path(argv[0]).resolve()
    spec_pb2, k8s_pb2 = load_definitions(defs)
    errors = [e for path in argv[1:] for e in check(Path(path), spec_pb2, k8s_pb2)]
    print(json.dumps({"versions": versions(defs), "errors": errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
