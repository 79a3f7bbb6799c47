"""adg_kfp.pipelines.setter_caller against kfp with the real `inspect.stack()`: the frames kfp reads
are the same, and a setter on a task without a container fails with the same error either way."""

from __future__ import annotations

import inspect

import pytest
from kfp import dsl
from kfp.dsl import pipeline_task

from adg_kfp.pipelines import placement  # noqa: F401  (installs the stand-in, as the pipelines do)
from adg_kfp.pipelines.setter_caller import _calling_frames

SETTERS = {
    "set_cpu_request": "1",
    "set_cpu_limit": "1",
    "set_memory_request": "1Gi",
    "set_memory_limit": "1Gi",
    "set_accelerator_type": "nvidia.com/gpu",
    "set_accelerator_limit": "1",
}


def test_the_stand_in_is_what_kfp_reads():
    assert pipeline_task.inspect.stack is _calling_frames
    assert pipeline_task.inspect.signature is inspect.signature  # the rest is the real module


def test_the_frames_read_are_the_real_stacks():
    def caller():
        return _calling_frames(), inspect.stack()

    ours, real = caller()
    for mine, theirs in zip(ours, real[:2], strict=True):
        assert mine.frame is theirs.frame
        assert (mine.filename, mine.lineno, mine.function) == (
            theirs.filename,
            theirs.lineno,
            theirs.function,
        )
    assert [f.function for f in ours] == ["caller", "test_the_frames_read_are_the_real_stacks"]


@dsl.component(base_image="python:3.11")
def _noop():
    pass


@dsl.pipeline
def _inner():
    _noop()


def _error_of(setter: str) -> str:
    with pytest.raises(ValueError) as err:

        @dsl.pipeline
        def outer():
            getattr(_inner(), setter)(SETTERS[setter])  # a pipeline as a task: no container

    return str(err.value)


@pytest.mark.parametrize("setter", SETTERS)
def test_a_setter_on_a_pipeline_task_fails_as_with_the_real_stack(setter, monkeypatch):
    ours = _error_of(setter)
    monkeypatch.setattr(pipeline_task, "inspect", inspect)
    real = _error_of(setter)
    assert ours == real
    assert ours.startswith(f"{setter} can only be used on single-step components")
