"""Agent service: a LangChain agent that streams every step to the callback bridge."""
