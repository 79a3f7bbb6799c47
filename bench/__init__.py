"""Benchmark scripts (run as `python bench/NAME.py`) and the straightforward baselines they use."""
