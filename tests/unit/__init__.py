"""Unit tests: one module each, no stack; real PostgreSQL where a database is needed."""
