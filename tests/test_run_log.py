"""What `adg run` shows of a kfp.local run: one line per task as it starts and ends, kfp.local's
own output in the run's log files, and a failed task's last lines with its log's path."""

import io

import pytest
from kfp import dsl, local

from adg_kfp.pipelines.run_log import RunLog, TaskFailed, task_numbers


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def count_bins(n: int) -> int:
    print(f"counting {n} bins")
    return n


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def break_down(n: int):
    for i in range(30):
        print(f"working on part {i}")
    raise ValueError(f"part {n} is broken")


@dsl.pipeline(name="run-log-test")
def two_tasks(n: int = 3):
    first = count_bins(n=n)
    break_down(n=first.output)


@pytest.mark.kfp_local
def test_one_line_per_task_and_the_failed_tasks_tail(tmp_path):
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    terminal = io.StringIO()
    log = RunLog(tmp_path / "logs", terminal=terminal)
    failed = r"task break-down failed; its log: .*break-down\.log"
    with pytest.raises(TaskFailed, match=failed), log:
        try:
            two_tasks(n=3)
        except RuntimeError as err:
            raise log.failure(err) from err
    shown = terminal.getvalue().splitlines()
    assert shown[0] == "adg run: count-bins ..."
    assert shown[1].startswith("adg run: count-bins done in ")
    assert shown[2] == "adg run: break-down ..."
    assert shown[3].startswith("adg run: break-down FAILED after ")
    # The tail: the task's last lines (its traceback), not its first ones nor kfp.local's dicts.
    tail = "\n".join(shown[4:-1])
    assert "ValueError: part 3 is broken" in tail and "working on part 0" not in tail
    assert "executor_input" not in terminal.getvalue()
    assert shown[-1] == (
        f"adg run: break-down's log: {tmp_path / 'logs' / 'break-down.log'} "
        f"(every task: {tmp_path / 'logs' / 'kfp-local.log'})"
    )
    whole = (tmp_path / "logs" / "kfp-local.log").read_text()
    assert "Got executor_input" in whole and "counting 3 bins" in whole
    assert "working on part 0" in (tmp_path / "logs" / "break-down.log").read_text()
    assert "counting" not in (tmp_path / "logs" / "break-down.log").read_text()


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def fail_and_count(attempts: str):
    with open(attempts, "a") as fh:
        fh.write("attempt\n")
    raise ValueError("always broken")


@dsl.pipeline(name="retry-test")
def retried(attempts: str):
    fail_and_count(attempts=attempts).set_retry(num_retries=2, backoff_duration="0s")


@pytest.mark.kfp_local
def test_a_local_run_does_not_retry_a_failed_task(tmp_path):
    """kfp.local honours a task's retry policy; `adg run` runs a copy without one, so a failure
    shows at once and once. The pipeline compiled for a cluster keeps its GPU retries."""
    from adg_kfp.pipelines.adg_pipeline import adg_pipeline
    from adg_kfp.pipelines.local import LOCAL_ADG_PIPELINE, without_retries

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    for pipeline, expected in ((retried, 3), (without_retries(retried), 1)):
        attempts = tmp_path / f"attempts-{expected}"
        with pytest.raises(RuntimeError):
            pipeline(attempts=str(attempts))
        assert attempts.read_text().count("attempt") == expected

    def retrying(pipeline):
        spec = pipeline.pipeline_spec
        dags = [spec.root.dag] + [c.dag for c in spec.components.values() if c.HasField("dag")]
        return [
            name for dag in dags for name, task in dag.tasks.items() if task.retry_policy.ByteSize()
        ]

    assert {"generate", "score", "embed"} <= set(retrying(adg_pipeline))
    assert retrying(LOCAL_ADG_PIPELINE) == []


@pytest.mark.kfp_local
def test_verbose_shows_kfp_locals_output(tmp_path):
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    terminal = io.StringIO()
    with RunLog(tmp_path / "logs", verbose=True, terminal=terminal):
        count_bins(n=2)
    assert "counting 2 bins" in terminal.getvalue() and "Got executor_input" in terminal.getvalue()


def test_task_numbers_from_outputs():
    """Counts come back from kfp.local as floats (metadata travels as a protobuf Struct)."""
    pool, rejects = dsl.Dataset(name="pool"), dsl.Dataset(name="rejects")
    pool.metadata["records"], rejects.metadata["records"] = 64.0, 2.0
    assert task_numbers("ingest", {}, {"pool": pool, "rejects": rejects}) == (
        "64 records read, 2 rejected"
    )
    generated = dsl.Dataset(name="generated")
    generated.metadata["records"] = 64.0
    assert task_numbers("generate-2", {"num_samples": 5}, {"generated": generated}) == (
        "320 answers (5 for each of 64 records)"
    )
    assert task_numbers("cluster", {}, {"Output": 4}) == "4 bins"
    assert task_numbers("shard", {}, {"Output": [0]}) == ""


def test_no_logging_handler_outlives_the_run_log(tmp_path, capsys):
    """A handler put on sys.stdout during the run (as kfp.local's logger context does) and left
    behind is removed with the RunLog, so later warnings do not write to its closed log."""
    import logging
    import sys

    root = logging.getLogger()
    before = list(root.handlers)
    with RunLog(tmp_path / "logs", terminal=io.StringIO()):
        root.addHandler(logging.StreamHandler(sys.stdout))
    assert root.handlers == before
    logging.getLogger("adg.test").warning("after the run")
    assert "Traceback" not in capsys.readouterr().err
