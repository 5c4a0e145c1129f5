"""The one exception type users see: a one-line message, printed by the CLI as ``error: ...`` with exit status 2."""


class SparsecError(Exception):
    """A user-facing failure (bad model, bad option, corrupted artifact). The message is one line."""
