"""The predictions report of a batch predict run: one self-contained HTML page.

Counts per predicted class, the least confident predictions with a thumbnail (bounded: at most
``MAX_THUMBNAILS`` images, each at most ``THUMB_PX`` on a side, embedded as ``data:`` JPEG),
and every unreadable file with its reason. Read from the run's CSV rows; files are opened
only to draw thumbnails, and one that cannot be drawn is shown without one.
"""

from __future__ import annotations

import base64
import io
from collections import Counter
from pathlib import Path
from typing import Any

LOW_CONFIDENCE = 0.75
MAX_THUMBNAILS = 24
THUMB_PX = 128
MAX_THUMB_SOURCE_BYTES = 50 * 1024 * 1024  # a thumbnail never decodes a file larger than this


def thumbnail(path: str) -> str | None:
    """``data:image/jpeg;base64,...`` of the image at ``path``, at most ``THUMB_PX``; or None."""
    from PIL import Image

    try:
        if Path(path).stat().st_size > MAX_THUMB_SOURCE_BYTES:
            return None
        with Image.open(path) as source:
            source.draft("RGB", (THUMB_PX, THUMB_PX))  # JPEG: decode at a reduced scale
            small = source.convert("RGB")
            small.thumbnail((THUMB_PX, THUMB_PX))
            buf = io.BytesIO()
            small.save(buf, "JPEG", quality=80)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def summarize(rows: list[dict[str, str]], low: float = LOW_CONFIDENCE) -> dict[str, Any]:
    """What the page shows, from the CSV's rows (``path, predicted_label, probability, error``)."""
    scored = [r for r in rows if not r["error"]]
    unreadable = [{"path": r["path"], "error": r["error"]} for r in rows if r["error"]]
    unsure = sorted(
        (r for r in scored if float(r["probability"]) < low), key=lambda r: float(r["probability"])
    )
    return {
        "total": len(rows),
        "counts": sorted(Counter(r["predicted_label"] for r in scored).items()),
        "low": low,
        "unsure_total": len(unsure),
        "unsure": [
            {
                "path": r["path"],
                "label": r["predicted_label"],
                "probability": float(r["probability"]),
            }
            for r in unsure[:MAX_THUMBNAILS]
        ],
        "unreadable": unreadable,
    }


def render(rows: list[dict[str, str]], title: str, low: float = LOW_CONFIDENCE) -> str:
    from imgclf.report import _environment

    summary = summarize(rows, low)
    for item in summary["unsure"]:
        item["thumbnail"] = thumbnail(item["path"])
    return _environment().get_template("predictions.html.j2").render(title=title, **summary)
