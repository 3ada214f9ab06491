"""Benchmarks: each hot path of the platform against a hand-written baseline, in the same run.

.venv/bin/python -m bench.foundation [--quick]
"""
