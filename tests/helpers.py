"""Assertions shared by several test files."""


def assert_one_line(exc_info, *needles):
    """The raised error's message is one line and mentions every needle; returns it."""
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert str(n) in msg, msg
    return msg
