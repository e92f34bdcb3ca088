"""Errors a user can act on.

Every failure caused by user input (a bad RAW file, an unknown model, a missing phone) is raised as a
:class:`MobileISPError` subclass with a one-line message. The CLI prints ``mobileisp: error: <message>``
to stderr and exits with :attr:`MobileISPError.exit_code` (2), never with a traceback.
"""

from __future__ import annotations


class MobileISPError(Exception):
    """Base class: a one-line, user-facing error."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class RawFormatError(MobileISPError):
    """A RAW file that cannot be read, is not a RAW file, or has a layout we cannot process."""


class UnsupportedSensorError(RawFormatError):
    """A readable RAW file whose sensor is not a 2x2 Bayer mosaic (X-Trans, Foveon, linear DNG)."""


class ImageSizeError(MobileISPError):
    """An image whose size does not fit what the operation needs (odd width/height, too small)."""


class DatasetError(MobileISPError):
    """A dataset folder that is missing, empty or malformed."""


class ModelError(MobileISPError):
    """Unknown model name, missing or mismatched weights."""


class OutputExistsError(MobileISPError):
    """Refusing to overwrite an existing output without --force."""
