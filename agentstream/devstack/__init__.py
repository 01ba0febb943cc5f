"""The developer stack: the local stack supervisor, its processes and PostgreSQL, the demo
dataset, the chat and SSE clients and the load test. No service imports it."""
