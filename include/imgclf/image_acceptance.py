"""The one image-acceptance rule, shared by the downloader, the featurizer and prediction.

An image is accepted when Pillow identifies it, its pixel count is within the limit, and every
pixel decodes. The limit (``IMGCLF_MAX_IMAGE_PIXELS``, default 64 megapixels) is checked from the
header, before any pixel is allocated, so a decompression bomb costs nothing.
"""

from __future__ import annotations

import io
import re
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image


class ImageRejectedError(ValueError):
    """These bytes are not an image the pipeline accepts; the message says why."""


def max_image_pixels() -> int:
    """``IMGCLF_MAX_IMAGE_PIXELS`` (``Settings.max_image_pixels``), read where the image is."""
    from imgclf.settings import Settings, _env_int

    return _env_int("IMGCLF_MAX_IMAGE_PIXELS", Settings.max_image_pixels)


def _undecodable(exc: Exception) -> str:
    return f"not a decodable image ({type(exc).__name__}: {exc})"


def open_image(data: bytes, max_pixels: int | None = None) -> Image.Image:
    """Pillow's image of ``data``, header read and size checked, pixels not yet decoded."""
    from PIL import Image

    limit = max_pixels or max_image_pixels()
    if not data:
        raise ImageRejectedError("empty file (0 bytes)")
    # Pillow's own bomb guard at the same limit: it errors at twice MAX_IMAGE_PIXELS, ours first
    Image.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():  # Pillow warns past the limit: we refuse just below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(bytes(data)))
    except Image.DecompressionBombError as exc:  # past twice the limit Pillow refuses first
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f"{int(found.group(1)):,} pixels" if found else "its size"
        raise ImageRejectedError(
            f"{pixels} is over the limit of {limit:,} (IMGCLF_MAX_IMAGE_PIXELS)"
        ) from None
    except Exception as exc:  # any decoder failure of untrusted bytes: reject
        raise ImageRejectedError(_undecodable(exc)) from None
    width, height = img.size
    if width * height > limit:
        img.close()
        raise ImageRejectedError(
            f"{width}x{height} = {width * height:,} pixels is over the limit of {limit:,} "
            "(IMGCLF_MAX_IMAGE_PIXELS)"
        )
    return img


def verify_image(data: bytes, max_pixels: int | None = None) -> tuple[int, int]:
    """``(width, height)`` if every pixel of ``data`` decodes within the limit, else
    ``ImageRejectedError`` saying why."""
    with open_image(data, max_pixels) as img:
        try:
            img.load()
        except Exception as exc:
            raise ImageRejectedError(
                f"not a decodable image ({type(exc).__name__}: {exc})"
            ) from None
        return img.size
