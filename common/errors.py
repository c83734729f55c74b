"""User-facing errors.

A :class:`UserError` is a problem with the user's input or files (missing body model, wrong checkpoint, unreadable
image, ...). Entry points catch it and print its one-line message with exit code 2 instead of a traceback; its
message always says what is wrong and what to do about it.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by input the user can fix; ``str(err)`` names the problem and the fix."""


class BodyModelFilesMissing(UserError, FileNotFoundError):
    """Body-model files (SMPL-X / SMPL) are missing or unreadable."""


class CheckpointError(UserError):
    """A checkpoint file is missing, unreadable, or does not fit the model."""


class ConfigError(UserError, ValueError):
    """A config file or a ``key=value`` override is invalid."""


class InputError(UserError, ValueError):
    """An input image, video or box cannot be used."""


class CacheWaitTimeout(UserError, TimeoutError):
    """A rank waited too long for the process that builds a shared datalist cache (see data/cache_sync.py)."""
