"""Exception types that carry a one-line, user-facing message."""

from __future__ import annotations


class FieldlabError(Exception):
    """Base class: the message is complete and is printed as one line, without a traceback."""


class ConfigError(FieldlabError, ValueError):
    """A parameter in params.yaml or on the command line is missing, mistyped or out of range."""


class InputError(FieldlabError, ValueError):
    """An input file or array does not follow the documented schema."""


class PhysicsError(FieldlabError, RuntimeError):
    """A physical invariant is violated (an unconverged solve, a non-positive-definite tensor, ...)."""
