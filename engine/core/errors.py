"""Errors that reach a person as one clear sentence (CLI exit 2), never as a traceback."""


class UserError(Exception):
    """A mistake in the user's input: config, form field, run id. The message is the whole story.
    `code` names the kind of mistake for agents (`{"error": {"code": ...}}` under --json)."""

    def __init__(self, message: str = "", code: str = "bad_input"):
        super().__init__(message)
        self.code = code


class CommandFailed(Exception):
    """A command that could not do what was asked for reasons outside the user's input (CLI exit 1)."""

    def __init__(self, message: str = "", code: str = "failed"):
        super().__init__(message)
        self.code = code
