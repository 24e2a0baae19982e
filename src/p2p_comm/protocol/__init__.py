"""The sans-IO core: wire formats and state machines, with no sockets and no clock reads."""
