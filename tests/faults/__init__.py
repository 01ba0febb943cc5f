"""Fault tests: the exactly-once, in-order guarantee while things break on purpose."""
