"""Benchmark scripts (run as `python -m bench.NAME`) and the straightforward baselines they use."""
