"""``python -m agentstream``: the same CLI as the ``agentstream`` command."""

from agentstream.cli import main

main()
