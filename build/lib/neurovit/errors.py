"""Project exception types: every message names the file (and line or field) and says what to do."""

from __future__ import annotations

from pathlib import Path


class NeurovitError(Exception):
    """Base class of every error neurovit raises on bad input or configuration."""


class SWCError(NeurovitError, ValueError):
    """A malformed SWC file; the message names the file and the 1-based line number."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        where = self.path or "<swc>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")


class VolumeError(NeurovitError, ValueError):
    """An image volume (any format) that cannot be read or written as a 3D (Z, Y, X) grey-scale stack;
    the message names the file and what to do."""


class TiffError(VolumeError):
    """A TIFF file that is not a readable 3D stack (wrong dimensionality, several channels, ...)."""


class DatasetError(NeurovitError, ValueError):
    """A dataset folder or generation request that cannot be used as asked."""


class WeightsError(NeurovitError, FileNotFoundError):
    """Pretrained weights that cannot be found or loaded; the message says where to get them."""
