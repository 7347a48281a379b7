"""The toolkit's error types: mistakes a user can fix, each with a message that says how.

This module imports nothing of the toolkit, so every other module (data, checkpoints, training,
the GANs) can raise these errors without depending on the command line; :func:`cli.run` turns a
:class:`UserError` into the one-line ``error: <message>`` exit. Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

__all__ = ["UserError", "DataError", "CheckpointError", "MetricError", "ModelError"]


class UserError(Exception):
    """A bad flag, missing or corrupt file, or incompatible checkpoint; the message says what to do."""


class DataError(UserError):
    """A problem with a dataset path or file; its message is one line saying what to do."""


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, or of another kind, format or model."""


class MetricError(UserError):
    """A metric cannot be computed from the given input."""


class ModelError(UserError):
    """An invalid network configuration (e.g. an --image-size the nets cannot make)."""
