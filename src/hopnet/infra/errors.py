"""Exceptions. Every user-facing failure is a :class:`HopnetError` with a one-line message;
the CLI prints that line and exits non-zero."""


class HopnetError(Exception):
    """Base class of every error hopnet raises on purpose."""


class StructureError(HopnetError, ValueError):
    """A structure could not be read, or is not physical (overlapping atoms, absurd cell, NaN)."""


class PathError(HopnetError, ValueError):
    """A migration path is ill-defined (missing ion, identical end points, bad band layout)."""


class DataError(HopnetError, ValueError):
    """A data set is missing, corrupt or malformed (bad file, NaN target, checksum mismatch)."""


class ModelFileError(HopnetError, ValueError):
    """A model file or checkpoint is missing, of another format version, or incompatible."""
