"""Looking into a running deployment from a terminal: ``agentstream tail``, ``runs``, ``inspect``.

They do the ``nats`` and ``temporal`` CLIs' job where those cannot be installed, and speak the
system's own contracts (``runtime.nats_contract``, ``runtime.temporal``, the message store), so
what they print is what the gateway serves.
"""
