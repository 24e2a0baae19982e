"""The daemon's agent-facing layer: the socket server, the CLI's byte pipe and argv, the
command handlers. Imports only lower layers.
"""
