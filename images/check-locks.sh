#!/usr/bin/env bash
# `make check-locks`: the quick check of the GPU images' locks (generate, train, eval), without
# building them (`make images-test` builds and runs them): each lock, fed back to the resolver for the image's
# Python and platform (x86_64, glibc 2.36), must resolve to exactly itself: every pin exists on
# the index and the pins satisfy each other's requirements. Nothing is installed or built.
# What this does not check: that a wheel (rather than an sdist) exists for every pin, CUDA and
# the driver, and the Dockerfile steps themselves (hadolint parses them in `make lint`).
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
for spec in generate:3.11 train:3.11 eval:3.11; do
  family=${spec%%:*} python=${spec##*:}
  lock=images/$family/requirements.txt
  start=$SECONDS
  if ! "$UV" pip compile "$lock" --quiet --no-header --no-annotate \
      --python-platform x86_64-manylinux_2_36 --python-version "$python" -o "$out/$family.txt"; then
    echo "check-locks: $lock does not resolve for Python $python" >&2
    status=1
    continue
  fi
  if ! diff -u <(grep -v '^#' "$lock") <(grep -v '^#' "$out/$family.txt") >"$out/$family.diff"; then
    echo "check-locks: $lock is not closed under its own requirements:" >&2
    cat "$out/$family.diff" >&2
    status=1
    continue
  fi
  echo "check-locks: $lock resolves to itself for Python $python ($((SECONDS - start))s)"
done
exit $status
