"""``agentstream loadtest``: a crowd of users driving the whole path, checked event by event.

Each simulated user starts a run with ``POST /api/messages`` and reads it with several SSE
readers spread over the gateway replicas; some readers drop and resume with ``Last-Event-ID``.
Every reader is checked against the run's completeness proof with this package's own hash.
"""
