#!/usr/bin/env bash
# `make container-test`: build the `cpu` stage image from images/cpu/Dockerfile and run the whole
# selection pipeline in it through kfp.local's DockerRunner, every task a container of that image
# running as its non-root user, with no network, on a few records of the in-repository sample.
# Exits non-zero unless the image loads its embedded model offline, top/middle/bottom come back
# and every task ran in a container.
#
# ENGINE=podman (default) or docker. With podman the script installs podman, buildah, runc and
# debootstrap from Debian when they are missing, serves podman's Docker-compatible API for the
# run, and, where the Dockerfile's base image cannot be pulled, builds a stand-in for it with
# debootstrap (a local-test path only: the Dockerfile keeps naming the real base). The stand-in
# base and the image are cached in the engine's image store between runs on one machine.
# CONTAINER_TEST_IMAGE=<reference> tests an image already in the engine's store instead of
# building one (images/images-test.sh: the cpu image pulled back from a registry by digest).
set -euo pipefail
cd "$(dirname "$0")/.."

ENGINE=${ENGINE:-podman}
TAG=${TAG:-$(git rev-parse --short HEAD 2>/dev/null || echo dev)}
IMAGE=adg-cpu:$TAG
RECORDS=${CONTAINER_TEST_RECORDS:-12}
MAX_NEW_TOKENS=${CONTAINER_TEST_MAX_NEW_TOKENS:-8}
POOL=${CONTAINER_TEST_POOL:-data/alpaca_gpt4_sample_200.jsonl}
OUT=${CONTAINER_TEST_OUT:-runs/container-test}
CACHE=${ADG_CONTAINER_CACHE:-$HOME/.cache/adg-container}
VENV=${VENV:-.venv}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE=$(awk 'toupper($1) == "FROM" {print $2; exit}' images/cpu/Dockerfile)
# The base's full name, as a registry would give it (python:3.11-slim-bookworm is Docker Hub's).
case "$BASE" in
  */*.*/* | *.*/* | localhost/*) ;;
  */*) BASE=docker.io/$BASE ;;
  *) BASE=docker.io/library/$BASE ;;
esac
mkdir -p "$CACHE"
started=$SECONDS

step() { echo "container-test: [$((SECONDS - started))s] $*"; }
die() { echo "container-test: FAILED: $*" >&2; exit 1; }

# install_tools, podman_config, ensure_base (the stand-in base), build_options: shared with
# images/images-test.sh.
. images/podman-lib.sh

# The content of what the cpu image installs (its Dockerfile and lock, the package sources): an
# image labelled with the same hash is reused as it is.
context_hash() {
  git ls-files -co --exclude-standard -- pyproject.toml README.md LICENSE src components pipelines \
    images/cpu images/constraints.txt .dockerignore data/alpaca_gpt4_sample_200.jsonl \
    data/task_types_seed.jsonl data/task_types_benchmark.json data/README.md | sort | xargs sha256sum | sha256sum | cut -c1-16
}

build_image() {
  local hash have
  hash=$(context_hash)
  have=$($ENGINE images -q --filter "label=adg.context=$hash" | head -1)
  if [ -n "$have" ]; then
    step "an image of these sources exists (context $hash): tagging it $IMAGE"
    $ENGINE tag "$have" "$IMAGE"
    return
  fi
  step "building $IMAGE from images/cpu/Dockerfile (context $hash)"
  if [ "$ENGINE" = podman ]; then
    build_options
    buildah bud --isolation chroot --pull=never --network host "${BUILD_OPTS[@]}" \
      --label "adg.context=$hash" -f images/cpu/Dockerfile -t "$IMAGE" . >"$CACHE/build.log" 2>&1 \
      || { tail -30 "$CACHE/build.log"; die "image build failed, see $CACHE/build.log"; }
  else
    docker build --label "adg.context=$hash" -f images/cpu/Dockerfile -t "$IMAGE" . \
      >"$CACHE/build.log" 2>&1 \
      || { tail -30 "$CACHE/build.log"; die "image build failed, see $CACHE/build.log"; }
  fi
  step "built $IMAGE"
  # Keep one image of this script per machine: drop those built from other sources.
  $ENGINE images -q --filter label=adg.context | sort -u | while read -r id; do
    [ "$($ENGINE image inspect --format '{{index .Config.Labels "adg.context"}}' "$id")" = "$hash" ] \
      || $ENGINE rmi -f "$id" >/dev/null 2>&1 || true
  done
}

# podman's Docker-compatible API for kfp.local's DockerRunner (the docker Python client).
start_service() {
  local sock=$CACHE/podman.sock
  rm -f "$sock"
  podman system service --time=0 "unix://$sock" >"$CACHE/service.log" 2>&1 &
  SERVICE_PID=$!
  trap 'kill $SERVICE_PID 2>/dev/null || true; wait $SERVICE_PID 2>/dev/null || true' EXIT
  for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.2; done
  [ -S "$sock" ] || die "podman system service did not start, see $CACHE/service.log"
  export DOCKER_HOST=unix://$sock
}

install_tools_for_engine() {
  if [ "$ENGINE" = podman ]; then
    install_tools
    podman_config
  else
    command -v docker >/dev/null && docker info >/dev/null 2>&1 \
      || die "ENGINE=docker needs a running Docker engine"
  fi
}

if [ "${1:-}" = base ]; then
  install_tools; podman_config; ensure_base; exit 0
fi

[ -x "$VENV/bin/adg" ] || die "no $VENV/bin/adg: run make setup first"
install_tools_for_engine
if [ -n "${CONTAINER_TEST_IMAGE:-}" ]; then
  # An image that is already there, run as it is: `make images-test` pulls the cpu image back
  # from its registry by digest (name@sha256:...) and tests that.
  IMAGE=$CONTAINER_TEST_IMAGE REF=$CONTAINER_TEST_IMAGE
  $ENGINE image inspect "$IMAGE" >/dev/null 2>&1 || die "no image $IMAGE here (pull it first)"
  step "testing $IMAGE as it is, no build"
elif [ "$ENGINE" = podman ]; then
  ensure_base
  REF=localhost/$IMAGE  # podman's name for the local tag; DockerRunner looks it up verbatim
  build_image
else
  REF=$IMAGE
  build_image
fi
USER_IN_IMAGE=$($ENGINE image inspect --format '{{.Config.User}}' "$IMAGE")
step "image user: $USER_IN_IMAGE"
# The image carries the embedded model (converted at build time): it loads as the image's user in
# a container with no network and no model cache, as a cluster pod with an empty `model` needs.
carried=$($ENGINE run --rm --network none "$REF" python -c \
  "from adg.io import models; tok, lm = models.load(''); print(models.find_embedded_model(), lm.config.model_type)" \
  2>"$CACHE/embedded.log") || { tail -5 "$CACHE/embedded.log"; die "the image's embedded model does not load offline"; }
step "embedded model in the image, loaded offline: $carried"

# Every family mapped to the one CPU image: the compiled pipeline must name nothing else.
export ADG_IMAGE_CPU=$REF ADG_IMAGE_GENERATE=$REF ADG_IMAGE_TRAIN=$REF ADG_IMAGE_EVAL=$REF
rm -rf "$OUT"
mkdir -p "$OUT"
"$VENV/bin/adg" compile --output "$OUT/pipeline.yaml" >/dev/null
# The baselines' scoring pods take their image at run time from baseline_placement's output
# ('{{$.inputs.parameters[...]}}'), chosen from its gpu_image / cpu_image constants.
others=$( (grep -E '^ *image: ' "$OUT/pipeline.yaml" | sed 's/^ *image: //' | grep -v "{{\$.inputs" ;
           grep -A2 -E '^ *(gpu|cpu)_image:$' "$OUT/pipeline.yaml" | sed -n 's/^ *constant: //p') \
          | sort -u | grep -vxF "$REF" || true)
[ -z "$others" ] || die "the compiled pipeline names other images: $others"
grep -qE "^ *image: $REF$" "$OUT/pipeline.yaml" || die "the compiled pipeline names no $REF"

[ "$ENGINE" = podman ] && start_service
step "running the pipeline on $RECORDS records, $MAX_NEW_TOKENS-token answers, every task in $REF"
# With the random baseline beside ADG: its scoring container gets its image at run time.
"$VENV/bin/adg" run --runner docker --input "$POOL" --limit "$RECORDS" --selectors adg,random \
  --max-new-tokens "$MAX_NEW_TOKENS" --cluster-count 2 --output-dir "$OUT"
# The terminal shows one line per task; what the engine ran is in kfp.local's log of the run.
containers=$(grep -cE "adg run: container [0-9a-f]+ of $REF: user $USER_IN_IMAGE, network none$" \
  "$OUT/logs/kfp-local.log" || true)

# The checks: the subsets exist; every task folder holds only what the image's user wrote (the host
# process is another user); the engine ran one container of the image per task, as that user and
# with no network.
"$VENV/bin/python" - "$OUT" "${USER_IN_IMAGE%%:*}" "$containers" <<'PY'
import json, os, sys
from pathlib import Path

out, uid, started = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
errors = []
for name in ("top", "middle", "bottom"):
    path = out / f"{name}.json"
    if not path.is_file() or not isinstance(json.loads(path.read_text()), list):
        errors.append(f"{path}: missing or not a JSON array")
if not json.loads((out / "top.json").read_text() or "[]"):
    errors.append("top.json is empty")
comparison = out / "comparison.json"
if not comparison.is_file() or json.loads(comparison.read_text())["selectors"] != ["adg", "random"]:
    errors.append(f"{comparison}: missing or not adg beside random")
runs = sorted(r for r in (out / "kfp-local").iterdir() if r.is_dir() and r.name[0] != ".")
tasks = sorted({f.parent for f in runs[-1].rglob("executor_output.json")}) if runs else []
if not tasks:
    errors.append("no task folders in the pipeline root")
if uid == 0:
    errors.append("the image runs as root")
# A rootful engine on Linux keeps uids as they are: the files prove who wrote them. (Rootless
# podman and Docker Desktop map uids, so there only the engine's record below counts.)
for task in tasks if os.getuid() == 0 else []:
    files = [f for f in task.rglob("*") if f.is_file()]
    owners = {f.stat().st_uid for f in files}
    if not files or owners != {uid}:
        errors.append(f"{task.name}: files owned by {sorted(owners) or 'nobody'}, not uid {uid}")
if started != len(tasks):
    errors.append(f"{started} containers of the image (as uid {uid}, no network) for {len(tasks)} tasks")
print(f"container-test: {len(tasks)} tasks, {started} containers of the image as uid {uid} "
      "without network, every task's files written by that uid")
for e in errors:
    print(f"container-test: FAILED: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY
# `make push` after an unprefixed `make images` pushes nothing that was never built.
if make -s push ENGINE="$ENGINE" REGISTRY=registry.invalid/adg TAG=never-built >"$OUT/push.log" 2>&1; then
  die "make push of a never-built tag succeeded"
fi
grep -q "was built" "$OUT/push.log" || die "make push failed otherwise: $(cat "$OUT/push.log")"
step "passed"
