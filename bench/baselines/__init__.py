"""Straightforward implementations of DESIGN.md's definitions: benchmark baselines, test oracles."""
