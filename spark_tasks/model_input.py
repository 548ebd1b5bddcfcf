"""Image bytes to model input: decode, orient, convert to RGB, resize. Pillow + NumPy only.

The default policy ("stretch") resizes the whole image to the model's input size with Pillow's
bilinear filter and keeps RGB channel order, float32 0..255; "pad" keeps the aspect ratio and
pads with black (letterbox). Models' own scaling is applied after this, by the model spec.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from imgclf.image_acceptance import open_image


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB; transparency is composited onto white, not dropped to black."""
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img.convert("RGBA")).convert("RGB")
    if img.mode == "I;16" or img.mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        arr = 255.0 * (arr - arr.min()) / max(arr.max() - arr.min(), 1.0)
        return Image.fromarray(arr.astype(np.uint8)).convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV, RGB


def decode(data: bytes, size: tuple[int, int], resize: str = "stretch") -> np.ndarray:
    """Encoded image bytes -> float32 array of shape (height, width, 3), RGB, 0..255.

    ``size`` is (width, height). Raises ``ImageRejectedError`` on bytes the downloader would
    refuse too (empty, undecodable, over ``IMGCLF_MAX_IMAGE_PIXELS``): one rule for both.
    """
    with open_image(data) as img:
        img.load()
        img = ImageOps.exif_transpose(img)
        img = to_rgb(img)
    if resize == "stretch":
        img = img.resize(size, Image.Resampling.BILINEAR)
    elif resize == "pad":
        img = ImageOps.pad(img, size, Image.Resampling.BILINEAR, color=(0, 0, 0))
    else:
        raise ValueError(f"resize {resize!r} is not 'stretch' or 'pad'")
    return np.asarray(img, dtype=np.float32)
