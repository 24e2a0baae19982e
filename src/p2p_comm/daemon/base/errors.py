"""The daemon's own error for a command it cannot carry out (the socket server turns it
into an error reply; the daemon never raises the CLI protocol's types)."""

from __future__ import annotations


class CommandError(Exception):
    """A command failed for a reason the user can act on: a code and one sentence."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
