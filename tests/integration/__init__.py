"""Integration tests of single components against real servers."""
