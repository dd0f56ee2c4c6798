"""The one exception type the CLI turns into a one-line message and exit code 2."""


class EdgepruneError(Exception):
    """A user-facing problem (bad input, missing data, unsafe model): no traceback needed."""


def one_line(error: BaseException, *, limit: int = 200) -> str:
    """The line of a third-party exception that says what went wrong, for a one-line refusal.

    Usually the first line; but TensorFlow's traced errors start with a preamble ("in user code:")
    followed by a stack, and say the cause on their last line.
    """
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    line = lines[-1] if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    return line[:limit]


class Interrupted(BaseException):
    """SIGTERM/SIGINT turned into an exception, so `finally` blocks remove partial files."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
