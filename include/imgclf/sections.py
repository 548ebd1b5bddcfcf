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
