"""No silent skips in CI: the hooks that turn a skip under CI=true into a failure that names what
is missing (conftest.py imports them; tests/test_ci_skips.py runs them in an inner pytest).

A skip says what the test needed and did not find (hadolint, kubectl with kustomize v5, make,
`datasets`, DeepSpeed, the embedded model, ...). On a laptop that is fine; in CI it would let a
check vanish without anyone noticing, so `.ci/run` and the CI workflow install all of it and a
skip there fails. The designated exceptions are tests marked `gpu` (CI has no GPU), tests marked
`images_test` (they check what `make images-test` pushed: that script runs them, in CI too, once
the images are in its registry) and tests that need vLLM installed (skipped with a reason that
contains "vllm": vLLM is installed only in the generate image and on GPU machines, where those
tests run).
"""

from __future__ import annotations

import os

import pytest


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _allowed_in_ci(item: pytest.Item | None, reason: str) -> bool:
    """The only skips CI accepts: a test marked `gpu` (CI has no GPU) or `images_test` (run by
    `make images-test` once it has pushed the images) and a test that needs vLLM installed
    (skipped with a reason that says "vllm"; vLLM is installed only in the generate image and on
    GPU machines, where those tests run)."""
    marked = item is not None and any(item.get_closest_marker(m) for m in ("gpu", "images_test"))
    return marked or "vllm" in reason.lower()


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (file, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _no_silent_skip(report, item: pytest.Item | None) -> None:
    """No silent skips in CI: under CI=true a skipped test (or module) fails instead, naming what
    was missing (the skip's reason: a tool, a package, the embedded model), except the designated
    skips of `_allowed_in_ci`. Outside CI a skip stays a skip (a laptop without hadolint)."""
    if not (report.skipped and _in_ci()) or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if _allowed_in_ci(item, reason):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped under CI=true, which allows no silent skip: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _no_silent_skip(outcome.get_result(), item)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _no_silent_skip(outcome.get_result(), None)
