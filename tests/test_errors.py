"""One-line refusals name the cause, not the preamble of a third-party stack."""

from edgeprune.errors import one_line

TRACED = """in user code:

    File "/venv/lib/python3.11/site-packages/nncf/tensorflow/graph/converter.py", line 120, in call
        outputs = layer(inputs, mask=mask)

    TypeError: tf__call() got an unexpected keyword argument 'mask'
"""


def test_traced_tensorflow_error_gives_its_cause() -> None:
    assert one_line(RuntimeError(TRACED)) == "TypeError: tf__call() got an unexpected keyword argument 'mask'"


def test_plain_error_gives_its_first_line() -> None:
    assert one_line(ValueError("bad shape (3, 4)\nmore detail")) == "bad shape (3, 4)"


def test_empty_message_gives_the_type_and_long_lines_are_cut() -> None:
    assert one_line(KeyError()) == "KeyError"
    assert len(one_line(ValueError("x" * 500))) == 200
