"""Benchmark: records per hour per CPU core of the GPU stages run on CPU (every GPU count "0").

What a cluster without GPUs spends per pool record with the embedded model and the pipeline's
defaults (K=5 answers of up to 256 new tokens, batch 8): generate, embed and score, the same
library calls the components make (bench/pipeline.py `time_stages`), on ONE core
(`torch.set_num_threads(1)`; run it under `taskset -c 0` too, so nothing else is used). The CPU
stages (ingest, cluster, select) take well under a second at this size and are left out of the
rate. Prints one line: records, seconds per stage, records/hour/core.

    taskset -c 0 python -m bench.cpu_throughput [--records 8] [--max-new-tokens 256]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from adg.io import models
from bench.pipeline import DEFAULT_POOL, time_stages

GPU_STAGES = ("generate", "load model (embed, score)", "embed", "score")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", default=str(DEFAULT_POOL))
    ap.add_argument("--records", type=int, default=8)
    ap.add_argument("--num-samples", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    a = ap.parse_args()
    torch.set_num_threads(1)
    model = str(models.resolve_model(""))
    times, _ = time_stages(a.input, a.records, model, a.num_samples, a.max_new_tokens, a.batch_size)
    seconds = sum(times[s] for s in GPU_STAGES)
    affinity = len(os.sched_getaffinity(0))
    print(
        f"# bench/cpu_throughput.py {time.strftime('%Y-%m-%d')}: {a.records} records of "
        f"{Path(a.input).name}, {models.EMBEDDED_NAME}, K={a.num_samples}, "
        f"max {a.max_new_tokens} new tokens, batch {a.batch_size}, torch threads "
        f"{torch.get_num_threads()}, CPUs allowed {affinity}"
    )
    print(", ".join(f"{s} {times[s]:.1f} s" for s in GPU_STAGES))
    print(f"records/hour/core: {3600 * a.records / seconds:.0f}")


if __name__ == "__main__":
    main()
