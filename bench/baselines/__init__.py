"""Straightforward implementations of the paper's definitions (README.md, "The math"): benchmark
baselines, test oracles."""
