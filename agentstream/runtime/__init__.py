"""What the services import at run time: settings, connections and the shared contracts.

Nothing here imports the developer stack (the local stack, the load test, the chat client).
"""
