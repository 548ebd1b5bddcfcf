"""The report's newer sections, each a template of its own (``templates/<name>.html.j2``,
included by ``report.html.j2``) and the context and figures it needs: the data checks
(``data``) and what the model looks at (``evidence``)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _short(path: str) -> str:
    return "/".join(Path(path).parts[-2:])


def drift_figure(drift: dict[str, Any]) -> Figure | None:
    """Nearest-neighbour similarity to the champion's training set: this dataset against the
    set itself (leave one out), one histogram each, the novelty cut marked."""
    if not drift or "bins" not in drift:
        return None
    import matplotlib.pyplot as plt

    bins = drift["bins"]
    centres = [(a + b) / 2 for a, b in itertools.pairwise(bins)]
    width = bins[1] - bins[0]
    fig, ax = plt.subplots(figsize=(6, 2.6))
    for counts, label, colour in (
        (drift["reference"], f"champion's training set ({drift['n_reference']}, to itself)", "C0"),
        (drift["ours"], f"this run's images ({drift['n']})", "C1"),
    ):
        total = sum(counts) or 1
        ax.bar(centres, [c / total for c in counts], width=width, alpha=0.55, label=label,
               color=colour)  # fmt: skip
    ax.axvline(drift["cut"], color="#c00", ls="--", lw=1, label="novelty cut (5th percentile)")
    ax.set_xlabel("cosine similarity to the nearest training image of the champion")
    ax.set_ylabel("share of images")
    ax.set_title(f"Drift: {drift['novel_share']:.1%} of this run's images are novel")
    ax.legend(fontsize=7, loc="upper left")
    return fig


def data(checks: dict[str, Any] | None, png: Callable[[Figure], str]) -> dict[str, Any] | None:
    """The context of ``templates/data.html.j2`` (``None``: the run made no checks); ``png``
    turns a figure into the report's data URI."""
    if not checks:
        return None
    drift_fig = drift_figure((checks.get("findings") or {}).get("drift") or {})
    findings = checks.get("findings") or {}
    near = findings.get("near_duplicates") or {}
    leak = findings.get("leakage") or {}
    return {
        "metrics": checks.get("metrics") or {},
        "warnings": checks.get("warnings") or [],
        "failures": checks.get("failures") or [],
        "conflicts": [
            [f"{_short(f['path'])} ({f['label']})" for f in c["files"]]
            for c in findings.get("label_conflicts") or []
        ],
        "threshold": near.get("threshold"),
        "cross": [
            {**p, "a": _short(p["a"]), "b": _short(p["b"])} for p in near.get("cross_class") or []
        ],
        "leakage": {
            **leak,
            "examples": [
                {**e, "test": _short(e["test"]), "train": _short(e["train"])}
                for e in leak.get("examples") or []
            ],
        },
        "balance": findings.get("balance") or {},
        "changes": findings.get("changes"),
        "previous_run": checks.get("previous_run"),
        "drift": findings.get("drift") or {},
        "drift_png": png(drift_fig) if drift_fig is not None else None,
    }


def _pixels(path: str, size: tuple[int, int] | None):
    """The image as the model saw it (oriented, RGB, stretched to ``size``) or as it is."""
    import numpy as np
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            rgb = ImageOps.exif_transpose(img).convert("RGB")
            if size:
                rgb = rgb.resize(size, Image.Resampling.BILINEAR)
            else:
                rgb.thumbnail((320, 320))
            return np.asarray(rgb)
    except OSError:
        return None


def evidence_figure(images: list[dict[str, Any]], labels: list[str], size, title: str) -> Figure:
    """Each image with its evidence map for the class it was predicted as the one that argues
    for ``labels[-1]`` (+, red) against ``labels[0]`` (-, blue) on one colour scale for the
    whole figure; or, for a face model, dlib's face box and landmarks."""
    import math

    import matplotlib.pyplot as plt
    import numpy as np

    cols = min(5, len(images))
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.7 * cols, 3.0 * rows + 0.6), squeeze=False)
    maps = [np.abs(np.asarray(i["map"])).ravel() for i in images if i.get("map") is not None]
    # one scale for the figure, robust to a few extreme cells (those saturate)
    scale = float(np.quantile(np.concatenate(maps), 0.99)) if maps else 1.0
    scale = scale or 1.0
    shown = None
    for ax, item in zip(axes.flat, images, strict=False):
        pixels = _pixels(item["path"], tuple(size) if size else None)
        if pixels is not None:
            ax.imshow(pixels, extent=(0, 1, 1, 0))
        if item.get("map") is not None:
            evidence = np.asarray(item["map"])[..., -1]  # binomial: for labels[-1]
            if len(labels) > 2:  # multinomial: the predicted class against the mean
                full = np.asarray(item["map"])
                evidence = full[..., labels.index(item["predicted"])] - full.mean(axis=-1)
            shown = ax.imshow(evidence, extent=(0, 1, 1, 0), cmap="RdBu_r", alpha=0.55,
                              vmin=-scale, vmax=scale, interpolation="bilinear")  # fmt: skip
        face = item.get("face")
        if face:
            x0, y0, x1, y1 = face["box"]
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="lime", lw=1.2))
            if item.get("map") is None:
                xs, ys = zip(*face["landmarks"], strict=True)
                ax.scatter(xs, ys, s=6, c="yellow")
        ax.set_xlim(0, 1)
        ax.set_ylim(1, 0)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{_plain(Path(item['path']).name)}\ntrue {_plain(item['label'])}, "
                     f"pred {_plain(item['predicted'])} ({item['probability']:.2f})",
                     fontsize=7)  # fmt: skip
    for ax in list(axes.flat)[len(images) :]:
        ax.axis("off")
    if shown is not None:
        bar = fig.colorbar(shown, ax=axes, shrink=0.8, pad=0.02)
        if len(labels) == 2:
            bar.set_label(f"logit contribution: - {_plain(labels[0])} | + {_plain(labels[1])} "
                          "(99th percentile: saturated beyond)", fontsize=8)  # fmt: skip
        else:
            bar.set_label("logit contribution to the predicted class", fontsize=8)
    fig.suptitle(title, fontsize=9)
    return fig


def _plain(text: Any) -> str:
    return str(text).replace("$", r"\$")


def evidence(ev: dict[str, Any] | None, png: Callable[[Figure], str]) -> dict[str, Any] | None:
    """The context of ``templates/evidence.html.j2`` (``None``: this run made no evidence)."""
    if not ev:
        return None
    labels = ev.get("labels") or []
    images = ev.get("images") or []
    size = ev.get("input_size") if ev.get("kind") == "exact" else None
    figures = []
    for title, groups in (
        ("Misclassified test images", ("misclassified",)),
        ("Correct test images: most and least confident per class",
         ("most confident correct", "least confident correct")),
    ):  # fmt: skip
        chosen = [i for i in images if i["group"] in groups]
        if chosen:
            figures.append((title, png(evidence_figure(chosen, labels, size, title))))
    return {
        "kind": ev.get("kind"),
        "note": ev.get("note"),
        "figures": figures,
        "face_share": ev.get("face_share") or {},
        "no_face": [_short(p) for p in ev.get("no_face") or []],
        "max_logit_error": ev.get("max_logit_error"),
        "errors": [
            {"name": _short(e["path"]), "error": e["error"]} for e in ev.get("errors") or []
        ],
        "labels": labels,
    }
