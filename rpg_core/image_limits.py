"""Bounds on every image rpg_core decodes: ``rpg predict``, image folders, MPII, scene folders.

An image file says its size in a few header bytes, and decoding allocates width x height x
channels bytes whatever the file's size: a 1 KB PNG can declare 1,000,000 x 1 pixels (resized to
the model's input by its shorter side: 32,000,000 x 32), a 40 KB one 50,000 x 50,000. Every
reader here checks the declared size before decoding (:func:`check_image_size`), and
:func:`open_image` turns PIL's own refusals (``DecompressionBombError``, oversized text chunks,
``MemoryError``, truncated data) into one-line :class:`~rpg_core.exceptions.RPGImageError`\\ s
that name the image as the caller knows it.

Torch-free; PIL is imported when an image is opened.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from .exceptions import RPGImageError

MAX_IMAGE_PIXELS = 64_000_000  # about 256 MB decoded as RGBA
MAX_ASPECT_RATIO = 16  # longer side / shorter side: fitting by the shorter side stays bounded
MAX_IMAGE_SIZE = 1024  # the largest model input side (data.image_size, inference.image_size)


def check_image_size(
    width: int,
    height: int,
    where: str,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_aspect: float = MAX_ASPECT_RATIO,
) -> None:
    """Raise :class:`RPGImageError` (naming ``where``) unless ``width`` x ``height`` is a size
    worth decoding: at least 1 x 1, at most ``max_pixels`` pixels and ``max_aspect`` : 1."""
    if width < 1 or height < 1:
        raise RPGImageError(f"{where}: an image of {width}x{height} pixels has no pixels")
    if width * height > max_pixels:
        raise RPGImageError(
            f"{where}: {width}x{height} is {width * height:,} pixels, over the limit of "
            f"{max_pixels:,}; downscale the image first"
        )
    ratio = max(width, height) / min(width, height)
    if ratio > max_aspect:
        raise RPGImageError(
            f"{where}: {width}x{height} has an aspect ratio of {ratio:,.0f}:1, over the limit of "
            f"{max_aspect:g}:1; crop the image to the part to classify"
        )


def open_image(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_aspect: float = MAX_ASPECT_RATIO,
) -> Any:
    """The decoded image at ``path`` (a loaded PIL image, the file closed), its size checked
    before decoding. Every failure is an :class:`RPGImageError` naming ``name`` (default: the
    path as given, never a symlink's target)."""
    from PIL import Image, UnidentifiedImageError

    where = name if name is not None else str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(Path(path)) as raw:
                check_image_size(
                    raw.width, raw.height, where, max_pixels=max_pixels, max_aspect=max_aspect
                )
                raw.load()
                return raw.copy()
    except RPGImageError:
        raise
    except FileNotFoundError:
        raise RPGImageError(f"{where}: no such image file") from None
    except IsADirectoryError:
        raise RPGImageError(f"{where}: a folder, not an image file") from None
    except UnidentifiedImageError:
        raise RPGImageError(f"{where}: not an image PIL can read (give a PNG or JPEG)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise RPGImageError(
            f"{where}: a decompression bomb (its declared size is over {max_pixels:,} pixels)"
        ) from None
    except MemoryError:
        raise RPGImageError(
            f"{where}: not enough memory to decode this image; downscale it first"
        ) from None
    except ValueError as err:  # PIL: "Decompressed data too large for ...MAX_TEXT_CHUNK"
        raise RPGImageError(f"{where}: cannot decode the image: {str(err)[:120]}") from None
    except OSError as err:  # truncated or corrupt data, permission denied
        message = err.strerror or str(err)
        raise RPGImageError(f"{where}: cannot read the image: {message[:120]}") from None
