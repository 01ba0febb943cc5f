"""Temporal worker: the run workflow and its activities."""
