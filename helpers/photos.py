"""Photo files decoded the way a person sees them: one decoder for the catalogue, the feed and your own photos.

A photo becomes an RGB uint8 array (height, width, 3) of the size asked for. Viewers and shops see a photo
upright, on a white page, in its full brightness range, so the decoder does the same:

- the camera's EXIF orientation is applied (a phone photo stored sideways is turned upright);
- transparent pixels (RGBA, LA, a palette or grey image with a transparent colour) are laid on white, the
  catalogue's background, instead of whatever colour lies under them;
- 16-bit greyscale is scaled to 0-255 (65535 is white), not clipped; 48-bit RGB keeps its top 8 bits;
- the size is changed with Pillow's bilinear filter, as the catalogue's arrays always were.

A file that is not a photo costs only its first bytes: Pillow identifies the format from the header of the
open file, so a video named ``.jpg`` is refused without being read. A photo of more than ``MAX_PIXELS`` is
refused before its pixels are decoded (a 99-byte PNG can claim 20,000 x 20,000 pixels: a decompression
bomb), and a large JPEG is decoded at a reduced scale (1/2 to 1/8), so memory stays small. Whatever goes
wrong inside Pillow on a damaged file becomes one ``DataError`` naming the file and the reason.
"""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import zlib

import numpy as np
from PIL import Image, ImageOps

from helpers.fashion_mnist import DataError

# A 48-megapixel phone photo or a 45-megapixel studio camera is below this; a product page never shows more
# than a few megapixels. Anything larger is refused before decoding, which also bounds memory: about 3 bytes
# a pixel for an RGB PNG, 8 for RGBA (150 and 400 MB at the limit; a large JPEG is decoded at a reduced scale).
# Pillow's own limits, a warning from 89 and an error from 179 megapixels, allow several times more: its
# warning (printed) is always followed by this refusal.
MAX_PIXELS = 50_000_000
DRAFT_SIDE = 4  # a JPEG is decoded at 1/2..1/8 scale only while it stays 4x the asked size or more
EXCLUDED_FORMATS = ("EPS",)  # Pillow hands PostScript to Ghostscript, an outside program: never for a feed's files

# Everything Pillow's plugins raise on a damaged or crafted file (found by fuzzing many formats). Errors of
# the caller (a wrong ``size``) are checked before decoding, so they are never mistaken for a bad file.
# RuntimeError covers DDS's NotImplementedError for a pixel format it does not know; AssertionError, the
# invariants some plugins check with assert.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, TypeError, EOFError, struct.error, zlib.error, LookupError,
                 ArithmeticError, MemoryError, RuntimeError, AssertionError, Image.DecompressionBombError)


def decode_bytes(payload: bytes, where: str, size: tuple[int, int]) -> np.ndarray:
    """The photo in ``payload`` as RGB uint8 ``(*size, 3)`` (size is height, width); a ``DataError`` naming
    ``where`` when it cannot be decoded."""
    return _decode(io.BytesIO(payload), where, size)


def decode_file(path, size: tuple[int, int], where: str | None = None) -> np.ndarray:
    """The photo at ``path`` (str, bytes or a path, any file name the system allows) as RGB uint8
    ``(*size, 3)``; a ``DataError`` naming the file (or ``where``) when it cannot be read or decoded.
    Only what Pillow needs is read: the header of a file that is not a photo, the pixels of one that is."""
    path = os.fsdecode(path)
    where = shown_path(path) if where is None else where
    with _open_regular_file(path, where) as handle:
        return _decode(handle, where, size)


def shown_path(path) -> str:
    """``path`` as text that can always be printed: bytes that are not UTF-8 appear as ``\\xe9``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _open_regular_file(path: str, where: str):
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)  # a pipe must not block
    try:
        handle = os.open(path, flags)
    except (OSError, ValueError) as err:  # missing, a dangling or looping symlink, no permission, a NUL byte
        raise DataError(f"{where} cannot be read ({getattr(err, 'strerror', None) or err}); check the file, or "
                        "remove it.") from err
    try:
        regular = stat.S_ISREG(os.fstat(handle).st_mode)
    except OSError as err:
        os.close(handle)
        raise DataError(f"{where} cannot be read ({err.strerror or err}); check the file, or remove it.") from err
    if not regular:
        os.close(handle)
        raise DataError(f"{where} is not a file (a folder, pipe or device); remove it or move it elsewhere.")
    return os.fdopen(handle, "rb")


def _decode(handle, where: str, size: tuple[int, int]) -> np.ndarray:
    size = checked_size(size)
    try:
        with Image.open(handle, formats=_formats()) as img:
            _refuse_too_many_pixels(img.size, where)
            _draft(img, size)
            img.load()
            return np.asarray(_as_shown(img, where, size), dtype=np.uint8)
    except DataError:
        raise
    except Image.UnidentifiedImageError as err:  # its message names an in-memory buffer, not the file
        raise DataError(f"{where} cannot be decoded (not an image format Pillow reads); replace or remove the "
                        "file.") from err
    except Image.DecompressionBombError as err:  # more than Pillow's own limit: refused while opening
        pixels = re.search(r"\((\d+) pixels\)", str(err))
        raise DataError(_too_many_pixels(where, int(pixels.group(1)) if pixels else None)) from err
    except DECODE_ERRORS as err:
        reason = str(err) or type(err).__name__
        raise DataError(f"{where} cannot be decoded ({reason}); replace or remove the file.") from err


def checked_size(size) -> tuple[int, int]:
    """``size`` as (height, width), two positive integers; a ``ValueError`` naming ``size`` otherwise."""
    try:
        height, width = size
    except (TypeError, ValueError):
        height = width = None
    if not all(isinstance(n, int | np.integer) and not isinstance(n, bool) and n > 0 for n in (height, width)):
        raise ValueError(f"size {size!r} must be two positive whole numbers (height, width), e.g. (80, 60).")
    return int(height), int(width)


def _refuse_too_many_pixels(dimensions: tuple[int, int], where: str) -> None:
    width, height = dimensions
    if width * height > MAX_PIXELS:
        raise DataError(_too_many_pixels(where, width * height, f"{width:,} x {height:,} = "))


def _too_many_pixels(where: str, pixels: int | None, shape: str = "") -> str:
    count = f"{shape}{pixels:,} pixels" if pixels is not None else "too many pixels"
    return (f"{where} claims {count}, more than the {MAX_PIXELS:,} a product photo ever needs (a small file "
            "claiming that many is a decompression bomb); it is refused before decoding: make the photo "
            "smaller, or remove it.")


def _draft(img: Image.Image, size: tuple[int, int]) -> None:
    """Let a JPEG decode at 1/2, 1/4 or 1/8 scale while it stays ``DRAFT_SIDE`` times the asked size in both
    directions (either way up, as the EXIF orientation may turn it); other formats ignore drafts."""
    side = DRAFT_SIDE * max(size)
    if min(img.size[0] // side, img.size[1] // side) >= 2:
        img.draft(None, (side, side))


def _as_shown(img: Image.Image, where: str, size: tuple[int, int]) -> Image.Image:
    """Upright, in 8 bits, on white, at ``size``: RGB."""
    _upright(img)
    if img.mode == "F":
        raise DataError(f"{where} is a floating-point image, whose brightness scale is not defined; save it as "
                        "an 8- or 16-bit image.")
    if img.mode == "I" or img.mode.startswith("I;16"):
        img = _eight_bit_grey(img)
    if img.has_transparency_data:  # resized before compositing: Pillow resizes RGBA premultiplied
        rgba = _resized(_in_mode(img, "RGBA"), size)
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    if img.mode == "L":  # grey resized before it is made RGB: the same pixels, a third of the memory
        return _resized(img, size).convert("RGB")
    return _resized(_in_mode(img, "RGB"), size)


def _in_mode(img: Image.Image, mode: str) -> Image.Image:
    """``img`` converted to ``mode``; itself, not a copy, when it is in that mode already."""
    return img if img.mode == mode else img.convert(mode)


def _upright(img: Image.Image) -> None:
    """Turn ``img`` as its EXIF orientation says; a damaged EXIF block leaves it as stored, as viewers do."""
    try:
        ImageOps.exif_transpose(img, in_place=True)
    except DECODE_ERRORS:
        return


def _eight_bit_grey(img: Image.Image) -> Image.Image:
    """16-bit grey (Pillow's modes I;16 and I, 0 black to 65535 white) scaled to 8 bits, rounded."""
    values = np.clip(np.asarray(img), 0, 65535).astype(np.uint32)
    grey = Image.fromarray(((values + 128) // 257).astype(np.uint8))
    if "transparency" in img.info and isinstance(img.info["transparency"], int):
        grey.info["transparency"] = (int(img.info["transparency"]) + 128) // 257
    return grey


def _resized(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    return img if img.size == size[::-1] else img.resize(size[::-1], Image.Resampling.BILINEAR)


def _formats() -> list[str]:
    Image.init()
    return [name for name in Image.OPEN if name not in EXCLUDED_FORMATS]
