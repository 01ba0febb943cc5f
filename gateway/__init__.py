"""Gateway: the HTTP and SSE edge of agentstream."""
