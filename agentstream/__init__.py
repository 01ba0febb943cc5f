"""agentstream: local stack, CLI and infrastructure shared by the services."""
