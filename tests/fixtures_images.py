"""Synthetic images and a tiny Keras model, made at test time (nothing binary in git)."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image


def make_tiny_model(path: Path, size: int = 32) -> Path:
    """A small real Keras CNN (scaling built in) saved as a .keras file."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.Conv2D(6, 3, strides=2, activation="relu")(x)
    keras.Model(inputs, x).save(path)
    return path


def make_images(root: Path, per_class: int = 6) -> Path:
    """Two visually separable classes in every colour mode the featurizer must handle."""
    modes = ["RGB", "RGBA", "L", "CMYK", "P", "RGB"]
    for label, base in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            mode = modes[i % len(modes)]
            w, h = 40 + 7 * i, 30 + 5 * i
            img = Image.new("RGB", (w, h), tuple(min(255, c + 4 * i) for c in base))
            img.paste((255, 255, 255), (i, i, i + 8, i + 6))
            fmt, ext = ("PNG", "png") if mode in ("RGBA", "P") else ("JPEG", "jpg")
            if mode == "CMYK":
                img = img.convert("CMYK")
            elif mode != "RGB":
                img = img.convert(mode)
            buf = io.BytesIO()
            img.save(buf, format=fmt)
            (root / label / f"{label}{i}.{ext}").write_bytes(buf.getvalue())
    return root
