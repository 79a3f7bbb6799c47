"""Wall time of `adg --help` as a whole process: what a user waits for before any command runs.

Runs `python -m adg.cli --help` (the console script's code path, without the script wrapper's
own lookup) `--repeat` times in fresh processes, one after another, and prints the median, the
fastest and the slowest in milliseconds. Every run starts a new interpreter, so module imports
are paid each time, as a user pays them.

    python -m bench.cli_startup --repeat 15
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def measure(repeat: int, argv: list[str]) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "adg.cli", *argv],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="fresh processes to time")
    parser.add_argument("args", nargs="*", default=["--help"], help="adg's arguments")
    a = parser.parse_args()
    measure(2, a.args)  # warm the file cache; not counted
    times = measure(a.repeat, a.args)
    print(
        f"adg {' '.join(a.args)}: median {statistics.median(times):.0f} ms, "
        f"min {min(times):.0f} ms, max {max(times):.0f} ms over {a.repeat} runs"
    )


if __name__ == "__main__":
    main()
