"""Benchmarks: figures and ratios, printed; never asserted in the test suite."""
