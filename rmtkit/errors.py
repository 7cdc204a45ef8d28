"""Typed exceptions of rmtkit.

Every error names the file, layer or tensor concerned, what was expected and what was
found. All derive from :class:`RmtkitError`, so ``except rmtkit.errors.RmtkitError`` catches
any of them; each also derives from the builtin a caller would naturally catch
(``ValueError``, ``TypeError``, ``FileNotFoundError``).
"""


class RmtkitError(Exception):
    """Base class of every error rmtkit raises on purpose."""


class InvalidWeightsError(RmtkitError, ValueError):
    """A weight array has the wrong rank, dtype or layout for the requested operation."""


class InvalidArgumentError(RmtkitError, ValueError):
    """An option is unknown or out of range (checked before any work starts)."""


class UnsupportedModelError(RmtkitError, TypeError):
    """The object or file is of a kind no adapter reads (or has no analyzable layer)."""


class CorruptModelError(RmtkitError, ValueError):
    """A model file exists but cannot be parsed: truncated, bad header, inconsistent tensors."""


class MissingDataError(RmtkitError, FileNotFoundError):
    """A file the model refers to (external data, shard) does not exist."""
