"""`adg plan`'s measured GPU factors from a GPU result (`python -m bench.gpu --write-factors`): the
8B shape's forward (score) and decode efficiencies against the vendor peak, written into
data/gpu_factors.json (read by `adg.planning.gpu_factors`); a dry run is refused.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def write_factors(results_path: Path, factors_file: Path) -> None:
    """Add the measured 8B-shape factors of a GPU result to the factors file of `adg plan`."""
    from adg.planning.gpu_factors import load

    results = json.loads(results_path.read_text(encoding="utf-8"))
    if results.get("dry_run"):
        raise SystemExit(f"{results_path}: a dry run (CPU, tiny models) measures no GPU factor")
    key = (results.get("device") or {}).get("plan_gpu")
    if not key:
        raise SystemExit(
            f"{results_path}: device {(results.get('device') or {}).get('name')!r} "
            "is none of adg plan's --gpu cards"
        )
    shape = "llama3-8b"
    res = results["shapes"].get(shape) or {}
    forward = (res.get("score") or {}).get("plan_efficiency")
    decode = (res.get("diagnose") or {}).get("decode_plan_efficiency")
    if not forward or not decode:
        raise SystemExit(
            f"{results_path}: the {shape} score or diagnose part did not run; no factors"
        )
    data = json.loads(factors_file.read_text(encoding="utf-8"))
    data["devices"][key] = {
        "forward": round(forward, 4),
        "decode": round(decode, 4),
        "device": results["device"]["name"],
        "date": results["date"],
        "shape": shape,
        "command": results["command"],
    }
    factors_file.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    load(factors_file)  # the file still reads
    log.info("%s: %s forward %.3f, decode %.3f", factors_file, key, forward, decode)
