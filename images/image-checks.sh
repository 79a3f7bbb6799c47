#!/usr/bin/env bash
# images/image-checks.sh FAMILY REFERENCE: what a GPU stage image's stages need, run inside the
# image (podman, as the image's own non-root user, --network none, on CPU: torch's CUDA build
# runs on CPU). Called by images/images-test.sh on every GPU image pulled by its digest.
#
#   all:      the imports the family's stages make, `adg --help`, the user is not root;
#   generate: `adg generate` with the transformers backend on 2 records with the embedded model,
#             and tests/test_vllm_sampler.py against the vLLM installed in the image;
#   eval:     `adg evaluate` on the repository's tiny lm-eval tasks (tests/lm_eval_tasks);
#   train:    two optimizer steps of `adg train` on CPU, then DeepSpeed's own engine with the
#             package's ZeRO-3 config for two steps on its CPU accelerator
#             (images/deepspeed_steps.py).
#
# The repository is mounted read-only at /checks (the tests and the sample pool); pytest, which no
# image carries, is mounted from a folder it is installed into once ($CACHE/pytest-lib).
set -euo pipefail
cd "$(dirname "$0")/.."
FAMILY=$1 REF=$2
CACHE=${ADG_CONTAINER_CACHE:-$HOME/.cache/adg-container}
VENV=${VENV:-.venv}
started=$SECONDS
step() { echo "image-checks $FAMILY: [$((SECONDS - started))s] $*"; }
die() { echo "image-checks $FAMILY: FAILED: $*" >&2; exit 1; }

run() {  # run COMMAND... in the image, as its user, without network, the repository at /checks
  podman run --rm --network none -v "$PWD:/checks:ro" -v "$CACHE/pytest-lib:/opt/pytest-lib:ro" \
    -e PYTHONPATH=/opt/pytest-lib -e ADG_PROGRESS=0 -w /tmp "$REF" "$@"
}

if [ ! -d "$CACHE/pytest-lib/pytest" ]; then
  "$VENV/bin/python" -m pip install -q --target "$CACHE/pytest-lib" pytest \
    || die "cannot install pytest into $CACHE/pytest-lib"
fi

user=$(run id -u)
[ "$user" != 0 ] || die "the image runs as root"
step "user $user"

declare -A IMPORTS=(
  [generate]="torch transformers vllm adg.stages.generate adg.stages.score kfp.dsl.executor_main"
  [eval]="torch transformers vllm lm_eval adg.stages.evaluate kfp.dsl.executor_main"
  [train]="torch transformers deepspeed adg.stages.train kfp.dsl.executor_main"
)
[ -n "${IMPORTS[$FAMILY]:-}" ] || die "unknown family $FAMILY (generate, eval or train)"
versions=$(run python -c "
import importlib, sys
mods = sys.argv[1].split()
for m in mods:
    importlib.import_module(m)
import torch
found = {m: getattr(sys.modules[m], '__version__', '') for m in mods if '.' not in m}
print(' '.join(f'{k}=={v}' for k, v in found.items()), 'cuda', torch.version.cuda)
" "${IMPORTS[$FAMILY]}" | tail -1) || die "imports failed"
step "imports: $versions"
run adg --help >/dev/null || die "adg --help failed"
step "adg --help runs"

case "$FAMILY" in
  generate)
    run sh -c 'head -2 /checks/data/alpaca_gpt4_sample_200.jsonl > /tmp/pool.jsonl &&
      adg generate --backend hf --input /tmp/pool.jsonl --output /tmp/gen.jsonl \
        --num-samples 2 --max-new-tokens 8 &&
      python -c "import json; rows = [json.loads(l) for l in open(\"/tmp/gen.jsonl\")];
assert len(rows) == 2 and all(len(r[\"generated_answers\"]) == 2 for r in rows), rows
print(len(rows), \"records,\", sum(len(r[\"generated_answers\"]) for r in rows), \"answers\")"' \
      || die "adg generate (hf backend, embedded model) failed"
    step "adg generate --backend hf: 2 records with the embedded model"
    run python -m pytest -p no:cacheprovider -q -rs --rootdir /checks -c /checks/pyproject.toml \
      /checks/tests/test_vllm_sampler.py || die "tests/test_vllm_sampler.py failed"
    step "tests/test_vllm_sampler.py passed against the installed vLLM"
    ;;
  eval)
    run sh -c 'adg evaluate --output /tmp/eval/results.json --backend hf --device cpu \
        --tasks adg_tiny_mc,adg_tiny_gen --num-fewshot 2 --limit 4 --batch-size 4 \
        --include-path /checks/tests/lm_eval_tasks &&
      python -c "import json; r = json.load(open(\"/tmp/eval/results.json\"));
print(sorted(r[\"results\"]))"' || die "adg evaluate failed"
    step "adg evaluate on tests/lm_eval_tasks (hf backend, embedded model)"
    ;;
  train)
    run sh -c 'head -8 /checks/data/alpaca_gpt4_sample_200.jsonl > /tmp/top.jsonl &&
      adg train --data /tmp/top.jsonl --output-dir /tmp/trained --max-steps 2 --batch-size 2 \
        --gradient-accumulation-steps 1 --model-max-length 128 --deepspeed "" &&
      test -f /tmp/trained/config.json' || die "adg train (2 steps, CPU) failed"
    step "adg train: 2 optimizer steps on CPU, model saved"
    run python /checks/images/deepspeed_steps.py || die "DeepSpeed steps on CPU failed"
    step "DeepSpeed: 2 steps with the package's ZeRO-3 config on its CPU accelerator"
    ;;
esac
step "passed"
