"""kfp's task setters, without reading the source of every frame on the stack.

Every resource setter of a kfp task (`set_cpu_limit`, `set_memory_request`, ... eight of them)
first calls `PipelineTask._ensure_container_spec_exists`, which takes `inspect.stack()[1][3]`
(kfp 2.17, `kfp/dsl/pipeline_task.py` line 389) only to name the setter in its error for a task
that has no container. `inspect.stack()` builds a FrameInfo with source lines for every frame on
the stack, and for frames without a source file (the import machinery's: a pipeline's graph is
built while its module is imported) it scans all of `sys.modules`. Building both pipelines makes
278 such calls: 5.1 s in a bare process and 9.4 s with torch loaded (every test process), against
0.4 s with the stand-in below (`python -m bench.compile`).

`use_cheap_caller_names()` gives kfp's pipeline_task module an `inspect` whose `stack()` returns
just the two frames kfp reads, as FrameInfo, with no source context; everything else is the real
`inspect`. The setters, their checks and their errors stay kfp's own, and the compiled YAML is
unchanged (`make check-compiled`); tests/test_setter_caller.py checks that the error names the
same setter as with the real `inspect.stack()`.
"""

from __future__ import annotations

import inspect
import sys
import types


def _calling_frames(context: int = 1) -> list[inspect.FrameInfo]:
    """`inspect.stack()` cut to what kfp reads: [0] the caller of stack(), [1] its caller."""
    del context  # no source lines are read
    frame = sys._getframe(1)
    frames = []
    while frame is not None and len(frames) < 2:
        code = frame.f_code
        frames.append(
            inspect.FrameInfo(frame, code.co_filename, frame.f_lineno, code.co_name, None, None)
        )
        frame = frame.f_back
    return frames


def use_cheap_caller_names() -> None:
    """Give kfp's pipeline_task module the cheap `stack()` (once; later calls do nothing)."""
    from kfp.dsl import pipeline_task

    if getattr(pipeline_task, "inspect", None) is not inspect:
        return  # done already, or a kfp that no longer reads the stack this way
    pipeline_task.inspect = types.SimpleNamespace(**{**vars(inspect), "stack": _calling_frames})
