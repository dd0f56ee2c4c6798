"""The one exception type the CLI turns into a one-line message and exit code 2."""


class EdgepruneError(Exception):
    """A user-facing problem (bad input, missing data, unsafe model): no traceback needed."""
