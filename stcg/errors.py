"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class StcgError(Exception):
    """A problem the user can fix (bad input, missing tool, unreachable service).

    ``exit_code`` is what the CLI returns; the message must fit on one line.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
