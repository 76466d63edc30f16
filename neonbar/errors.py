"""Errors a person can act on."""


class UserError(Exception):
    """A mistake in what the user asked for: printed as one sentence, exit status 2."""
