"""Benchmark evaluation: a runner over the backends, reports, model cards."""
