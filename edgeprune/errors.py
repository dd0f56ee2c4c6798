"""The one exception type the CLI turns into a one-line message and exit code 2."""


class EdgepruneError(Exception):
    """A user-facing problem (bad input, missing data, unsafe model): no traceback needed."""


class Interrupted(BaseException):
    """SIGTERM/SIGINT turned into an exception, so `finally` blocks remove partial files."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
