"""Every error rpg_core raises derives from :class:`RPGError`."""

from __future__ import annotations


class RPGError(Exception):
    """Base class of every rpg_core error."""


class RPGConfigError(RPGError, ValueError):
    """An argument or spec field is invalid; the message names it and says what is allowed."""


class RPGFormatError(RPGError, ValueError):
    """A file is not a valid ``.rpg`` file (or not one this version can read)."""


class RPGKeyError(RPGFormatError):
    """A keyed model was opened without its key, or with the wrong one."""


class RPGTrainingError(RPGError, RuntimeError):
    """Training cannot go on (for example the loss became NaN)."""


class RPGDataError(RPGError, ValueError):
    """A dataset is missing, malformed, or would be read from outside the data root."""


class RPGImageError(RPGDataError):
    """An image cannot be read within bounds (too many pixels, too elongated, a decompression
    bomb, not an image): the message names the image as the caller gave it."""
