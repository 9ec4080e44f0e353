"""Decoding one image robustly: `load_image` and the reasons it gives when it cannot.

The authors did `Image.open(path).convert("RGB")`; that is the default here too, with the failure modes
made explicit: a file that cannot be decoded raises `BadImage` with a short reason (truncated, empty,
not an image, decompression bomb) instead of a PIL exception deep inside a worker, and the decode is
forced (`img.load()`) so a truncated JPEG fails here and not later inside a resize. Two deliberate
departures from a bare `.convert("RGB")`: 16-bit and 32-bit grey images are scaled to 8 bits (PIL's
convert clips them to 0..255, so almost every pixel of a 16-bit image becomes white) and float images
are mapped from 0..1. Alpha is dropped exactly as `.convert("RGB")` drops it (the stored colour is kept,
nothing is composited on a background), because that is what the paper's numbers were computed on.

`DecodeOptions` is how a source applies it (`Source.with_decoding`): EXIF orientation, a border to cut
(ObjectNet's red frame) and the pixel limit.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

class BadImage(ValueError):
    """An image that cannot be decoded; `reason` is short enough for a results table."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def short_error(exc: BaseException, limit: int = 160) -> str:
    """An exception as one short line, "Type: first line", for an error column or a one-line message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reason(exc: BaseException) -> str:
    """Map PIL's many exception types to the few reasons a user can act on."""
    if isinstance(exc, Image.DecompressionBombError):
        return f"decompression bomb ({short_error(exc)})"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image (unrecognised format)"
    if "truncated" in str(exc).lower():
        return f"truncated file ({short_error(exc)})"
    return f"decode error ({short_error(exc)})"


def _open(src) -> tuple[Image.Image, bool]:
    """Open (header only) a path, bytes, file object or PIL image. Returns (image, opened_here)."""
    if isinstance(src, Image.Image):
        return src, False
    if isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise BadImage("empty file (0 bytes)")
        fp = io.BytesIO(bytes(src))
    elif isinstance(src, (str, os.PathLike)):
        path = Path(src)
        try:
            if path.stat().st_size == 0:
                raise BadImage("empty file (0 bytes)")
        except FileNotFoundError:
            raise BadImage(f"file not found: {path}") from None
        except OSError as e:
            raise BadImage(f"unreadable file ({short_error(e)})") from e
        fp = path
    elif hasattr(src, "read"):
        fp = src
    else:
        raise ValueError(f"load_image: src must be a path, bytes, a file or a PIL image, got {type(src).__name__}")
    try:
        return Image.open(fp), True
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, struct.error... by format
        raise BadImage(_reason(e)) from e


def _sixteen_bit_to_rgb(im: Image.Image) -> Image.Image:
    """16-bit grey (I;16*): the top byte, as a 16-to-8-bit conversion should (PIL's convert clips)."""
    arr = np.asarray(im).astype(np.uint32)  # [H, W], 0..65535
    return Image.fromarray((arr >> 8).astype(np.uint8), "L").convert("RGB")


def _int32_to_rgb(im: Image.Image) -> Image.Image:
    """Mode I: 16-bit PNG/TIFF decode to I in older Pillows, so values within 0..65535 are taken as
    16-bit samples (>> 8); anything else (negative or wider) is stretched from its min..max."""
    arr = np.asarray(im).astype(np.int64)  # [H, W]
    lo, hi = int(arr.min()), int(arr.max())
    if lo >= 0 and hi <= 65535:
        out = arr >> 8
    else:
        span = max(hi - lo, 1)
        out = ((arr - lo) * 255 + span // 2) // span  # integer rounding, half up
    return Image.fromarray(out.astype(np.uint8), "L").convert("RGB")


def _float_to_rgb(im: Image.Image) -> Image.Image:
    """Mode F: intensities in 0..1 when the maximum is at most 1, else grey levels 0..255 (clipped);
    NaN and infinities become 0."""
    arr = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)  # [H, W]
    if arr.size and arr.max() <= 1.0:
        arr = arr * 255.0
    return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), "L").convert("RGB")


def _palette_to_rgb(im: Image.Image) -> Image.Image:
    """Same pixels as `.convert("RGB")` (palette colours, transparency ignored); going through RGBA
    only avoids PIL's warning about palette transparency given as bytes."""
    if "transparency" in im.info:
        return im.convert("RGBA").convert("RGB")
    return im.convert("RGB")


#: Modes that need more than PIL's `.convert("RGB")`; every other mode (L, 1, LA, RGBA, CMYK,
#: YCbCr, ...) goes through `.convert("RGB")`, the authors' conversion.
_TO_RGB: dict[str, Callable[[Image.Image], Image.Image]] = {
    "RGB": lambda im: im,
    "I;16": _sixteen_bit_to_rgb,
    "I;16L": _sixteen_bit_to_rgb,
    "I;16B": _sixteen_bit_to_rgb,
    "I;16N": _sixteen_bit_to_rgb,
    "I": _int32_to_rgb,
    "F": _float_to_rgb,
    "P": _palette_to_rgb,
}


def _to_rgb(im: Image.Image) -> Image.Image:
    convert = _TO_RGB.get(im.mode)
    if convert is not None:
        return convert(im)
    try:
        return im.convert("RGB")
    except ValueError as e:
        raise BadImage(f"unsupported image mode {im.mode!r}") from e


def load_image(src, *, exif_transpose: bool = False, max_pixels: int | None = None) -> Image.Image:
    """Decode `src` (path, bytes, binary file object or PIL image) fully into a new RGB image.

    exif_transpose: False (default) keeps the stored pixel orientation, as the authors'
    `Image.open().convert("RGB")` did; True applies the EXIF orientation tag (what a viewer shows).
    max_pixels: width * height above which the image is refused as a decompression bomb; None uses
    PIL's `Image.MAX_IMAGE_PIXELS` (89,478,485). PIL itself refuses twice its limit at open time, so a
    larger `max_pixels` also needs a larger `Image.MAX_IMAGE_PIXELS`.
    Raises BadImage (a ValueError) with a short reason. Note: if some library has set
    `PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True`, PIL pads truncated files with grey instead of
    failing; `Source.provenance()` records that flag.
    """
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"load_image: max_pixels must be >= 1 or None, got {max_pixels}")
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    im, opened_here = _open(src)
    try:
        w, h = im.size
        if w < 1 or h < 1:
            raise BadImage(f"empty image ({w}x{h})")
        if limit is not None and w * h > limit:
            raise BadImage(f"decompression bomb ({w}x{h} = {w * h} pixels > {limit})")
        try:
            im.load()  # the full decode: truncated and corrupt data fail here
            oriented = ImageOps.exif_transpose(im) if exif_transpose else im
            rgb = _to_rgb(oriented)
        except BadImage:
            raise
        except Exception as e:
            raise BadImage(_reason(e)) from e
        # never hand back the caller's object or one tied to an open file
        return rgb.copy() if rgb is im else rgb
    finally:
        if opened_here:
            im.close()


@dataclass(frozen=True)
class DecodeOptions:
    """How a source turns stored bytes into the Sample's image (see `load_image`).

    crop_border: pixels cut from every side after decoding (ObjectNet's red frame); images not larger
    than twice the border are left whole.
    """

    exif_transpose: bool = False
    crop_border: int = 0
    max_pixels: int | None = None

