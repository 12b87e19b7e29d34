"""Errors that reach a person as one clear sentence (CLI exit 2), never as a traceback."""


class UserError(Exception):
    """A mistake in the user's input: config, form field, run id. The message is the whole story."""
