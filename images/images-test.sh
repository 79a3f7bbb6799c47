#!/usr/bin/env bash
# `make images-test`: the stage images as a user's CI makes them, then run, on one machine.
#
#  1. build every family in FAMILIES (default: cpu generate train eval) with `make images
#     ENGINE=podman` from images/<family>/Dockerfile (the stand-in base of images/podman-lib.sh
#     where python:3.11-slim-bookworm cannot be pulled), timing each build;
#  2. start a registry on loopback (Debian's docker-registry, the CNCF distribution registry, on
#     127.0.0.1 and a free port, storage in a temporary folder) unless REGISTRY names one, and push
#     every image to it with `make push` (podman push);
#  3. read each image's digest back from the registry's HTTP API (images/digests.py: HEAD
#     /v2/<name>/manifests/<tag>, Docker-Content-Digest), and its compressed size (the layer
#     blobs of its manifest) beside its unpacked size;
#  4. compile both pipelines with those name@sha256 references (ADG_IMAGE_<FAMILY>, as `make
#     compile REGISTRY=...` does) and check, in tests/test_images.py, that every task of both
#     names one of the pushed digests, its stage's;
#  5. pull each GPU image by digest and run its checks inside it (images/image-checks.sh);
#  6. delete the local cpu image, pull it back by digest and run the container test on it
#     (images/container-test.sh with CONTAINER_TEST_IMAGE=<name@sha256:...>).
#
# Results land in $IMAGES_TEST_OUT (default runs/images-test): images.env (the digests),
# sizes.tsv, build-times.tsv, the compiled YAMLs and each step's log.
set -euo pipefail
cd "$(dirname "$0")/.."

FAMILIES=${FAMILIES:-cpu generate train eval}
TAG=${TAG:-$(git rev-parse --short HEAD 2>/dev/null || echo dev)}
OUT=${IMAGES_TEST_OUT:-runs/images-test}
CACHE=${ADG_CONTAINER_CACHE:-$HOME/.cache/adg-container}
VENV=${VENV:-.venv}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
REGISTRY=${REGISTRY:-}
BASE=$(awk 'toupper($1) == "FROM" {print $2; exit}' images/cpu/Dockerfile)
case "$BASE" in
  */*.*/* | *.*/* | localhost/*) ;;
  */*) BASE=docker.io/$BASE ;;
  *) BASE=docker.io/library/$BASE ;;
esac
for f in $FAMILIES; do
  [ "$(awk 'toupper($1) == "FROM" {print $2; exit}' "images/$f/Dockerfile")" = "${BASE#docker.io/library/}" ] \
    || { echo "images-test: images/$f/Dockerfile starts from another base than cpu's" >&2; exit 1; }
done
mkdir -p "$CACHE" "$OUT"
started=$SECONDS

step() { echo "images-test: [$((SECONDS - started))s] $*"; }
die() { echo "images-test: FAILED: $*" >&2; exit 1; }
. images/podman-lib.sh

[ -x "$VENV/bin/adg" ] || die "no $VENV/bin/adg: run make setup first"
install_tools
podman_config
ensure_base
build_options
REGISTRY_PID=
PULL_STORE=
cleanup() {
  if [ -n "$PULL_STORE" ]; then
    CONTAINERS_STORAGE_CONF=$PULL_STORE/storage.conf podman rmi -a -f >/dev/null 2>&1 || true
    umount "$PULL_STORE/graph/overlay" 2>/dev/null || true
    rm -rf "$PULL_STORE"
  fi
  if [ -n "$REGISTRY_PID" ]; then
    kill "$REGISTRY_PID" 2>/dev/null || true
    wait "$REGISTRY_PID" 2>/dev/null || true
    rm -rf "$REGISTRY_DIR"
  fi
}
trap cleanup EXIT

# 1. Build. make's IMAGE_BUILD_OPTS are split on spaces: one find-links folder at most. The layers
# are cached (podman's store), the package's layer keyed by the sources' digest
# (ADG_SOURCE_DIGEST: buildah 1.28 does not hash a bind mount's files, so without it a change to
# the sources alone would reuse the old package layer).
digest=$(git ls-files -co --exclude-standard -- pyproject.toml README.md LICENSE src components \
  pipelines images .dockerignore data/alpaca_gpt4_sample_200.jsonl data/task_types_seed.jsonl \
  data/task_types_benchmark.json data/README.md | sort | xargs sha256sum | sha256sum | cut -c1-16)
opts="--isolation chroot --network host --layers --build-arg ADG_SOURCE_DIGEST=$digest"
for o in "${BUILD_OPTS[@]}"; do
  case "$o" in WHEEL_SOURCES=*) o="WHEEL_SOURCES=$(echo "${o#WHEEL_SOURCES=}" | awk '{print $1 "=" $2}')" ;; esac
  opts+=" $o"
done
: >"$OUT/build-times.tsv"
for f in $FAMILIES; do
  step "building adg-$f:$TAG (log: $OUT/build-$f.log)"
  t=$SECONDS
  make -s images ENGINE=podman FAMILIES="$f" TAG="$TAG" IMAGE_BUILD_OPTS="$opts" \
    >"$OUT/build-$f.log" 2>&1 || { tail -30 "$OUT/build-$f.log"; die "building $f failed"; }
  printf '%s\t%s\n' "$f" "$((SECONDS - t))" >>"$OUT/build-times.tsv"
  step "built adg-$f:$TAG in $((SECONDS - t))s"
done

# 2. Push.
push_opts=
if [ -z "$REGISTRY" ]; then
  start_registry
  REGISTRY=$REGISTRY_ADDR/adg
  push_opts=--tls-verify=false
fi
t=$SECONDS
make -s push ENGINE=podman REGISTRY="$REGISTRY" FAMILIES="$FAMILIES" TAG="$TAG" \
  PUSH_OPTS="$push_opts --quiet" >"$OUT/push.log" 2>&1 || { tail -20 "$OUT/push.log"; die "push failed"; }
step "pushed $FAMILIES to $REGISTRY in $((SECONDS - t))s"

# 3. Digests and sizes, from the registry.
python3 images/digests.py "$REGISTRY" "$TAG" $FAMILIES >"$OUT/images.env" || die "reading digests"
python3 images/digests.py --sizes "$REGISTRY" "$TAG" $FAMILIES >"$OUT/sizes.jsonl"
printf 'family\tcompressed_bytes\tunpacked_bytes\tlayers\treference\n' >"$OUT/sizes.tsv"
while read -r line; do
  f=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["family"])' "$line")
  unpacked=$(podman image inspect --format '{{.Size}}' "$REGISTRY/adg-$f:$TAG")
  python3 -c 'import json, sys; d = json.loads(sys.argv[1]); print(d["family"], d["compressed_bytes"], sys.argv[2], d["layers"], d["reference"], sep="\t")' \
    "$line" "$unpacked" >>"$OUT/sizes.tsv"
done <"$OUT/sizes.jsonl"
step "digests (from the registry's API):"; sed 's/^/  /' "$OUT/images.env"
step "sizes:"; column -t "$OUT/sizes.tsv" | sed 's/^/  /'

# 4. Compile both pipelines with the digests; every task must name one of them.
# shellcheck disable=SC2046
env $(cat "$OUT/images.env") "$VENV/bin/adg" compile --pipeline full --output "$OUT/adg_pipeline.yaml" >/dev/null
# shellcheck disable=SC2046
env $(cat "$OUT/images.env") "$VENV/bin/adg" compile --pipeline select --output "$OUT/adg_select.yaml" >/dev/null
ADG_PUSHED_IMAGES=$OUT "$VENV/bin/python" -m pytest -q -p no:randomly \
  tests/test_images.py::test_compiled_pipelines_name_the_pushed_digests >"$OUT/digests-test.log" 2>&1 \
  || { cat "$OUT/digests-test.log"; die "the compiled pipelines do not name the pushed digests"; }
step "both compiled pipelines name the pushed digests (tests/test_images.py)"

ref_of() { sed -n "s/^ADG_IMAGE_$(echo "$1" | tr a-z A-Z)=//p" "$OUT/images.env"; }
pull() {  # podman pull by digest; plain HTTP for the loopback registry
  podman pull -q $push_opts "$1" >/dev/null || die "pulling $1 failed"
}

# 5. The GPU images, pulled by digest (their layers are already here: the pull only records the
# digest), each run with its stage's checks.
for f in $FAMILIES; do
  [ "$f" = cpu ] && continue
  ref=$(ref_of "$f")
  pull "$ref"
  t=$SECONDS
  images/image-checks.sh "$f" "$ref" 2>&1 | tee "$OUT/checks-$f.log" || die "checks in $f failed"
  step "$f: checks passed inside $ref in $((SECONDS - t))s"
done

# 6. The cpu image: deleted here, pulled back by digest into an image store of its own (empty:
# podman would otherwise reuse the layers the build cache still holds instead of downloading
# them), and put through the container test there.
if [[ " $FAMILIES " == *" cpu "* ]]; then
  ref=$(ref_of cpu)
  id=$(podman image inspect --format '{{.Id}}' "$REGISTRY/adg-cpu:$TAG")
  podman rmi -f "$id" >/dev/null
  podman image exists "$id" && die "the local cpu image is still there"
  PULL_STORE=$(mktemp -d "${TMPDIR:-/tmp}/adg-pull-store.XXXXXX")
  printf '[storage]\ndriver = "overlay"\ngraphroot = "%s/graph"\nrunroot = "%s/run"\n' \
    "$PULL_STORE" "$PULL_STORE" >"$PULL_STORE/storage.conf"
  export CONTAINERS_STORAGE_CONF=$PULL_STORE/storage.conf
  t=$SECONDS
  podman pull $push_opts "$ref" >"$OUT/pull-cpu.log" 2>&1 || { cat "$OUT/pull-cpu.log"; die "pulling $ref failed"; }
  blobs=$(grep -c '^Copying blob' "$OUT/pull-cpu.log" || true)
  skipped=$(grep -c 'skipped: already exists' "$OUT/pull-cpu.log" || true)
  [ "$skipped" = 0 ] || die "the pull reused $skipped local layers"
  step "cpu: local image $id deleted, $ref pulled into an empty store ($blobs blobs) in $((SECONDS - t))s"
  CONTAINER_TEST_IMAGE=$ref VENV=$VENV TAG=$TAG CONTAINER_TEST_OUT="$OUT/container-test" \
    images/container-test.sh 2>&1 | tee "$OUT/container-test.log" || die "the container test failed on $ref"
  podman rmi -a -f >/dev/null 2>&1 || true
  unset CONTAINERS_STORAGE_CONF
fi
step "passed: $FAMILIES built, pushed to $REGISTRY, pinned by digest and run"
