"""The one error of the intake subsystem: a source that cannot be read as intake forms."""


class IntakeFormatError(ValueError):
    """The input as a whole cannot be read as intake forms (exit status 2, one line a user can act on)."""
