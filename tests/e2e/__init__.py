"""End-to-end tests against the whole stack running as processes."""
