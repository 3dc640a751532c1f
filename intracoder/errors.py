"""User-facing errors: one clear line and a non-zero exit, never a traceback."""


class UserError(Exception):
    """Something about the user's input or environment is wrong; the message says what."""

    exit_code = 2


def require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)
