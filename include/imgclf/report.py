"""``runs/<run_id>/report.html``: one self-contained page about a run.

Sections: summary and gate decisions, baseline vs tuned, confusion matrix, ROC curve (from
predicted probabilities), every misclassified test image with its true label and predicted
probability, accuracy over past runs, and the champion comparison. Figures are matplotlib PNGs
and thumbnails are JPEGs, both embedded as base64: the file opens anywhere, offline.

The page is ``templates/report.html.j2`` (Jinja2, autoescaped: run ids, paths, class names and
messages are escaped there, never by hand). The figures and thumbnails are made here and passed
in as ``data:`` URIs. ``StrictUndefined``: a required metric that is missing fails the render
instead of printing a blank; the optional ones are read with ``.get`` in the template.
"""

from __future__ import annotations

import base64
import functools
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgclf import sections
from imgclf.metrics import roc_curve
from imgclf.tracking import registry_outcome

if TYPE_CHECKING:
    import jinja2
    from matplotlib.figure import Figure

TEMPLATES = Path(__file__).parent / "templates"  # shipped as package data (pyproject.toml)


@functools.cache
def _environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _png(fig: Figure) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _thumbnail(path: str, size: int = 160) -> str | None:
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            rgb = ImageOps.exif_transpose(img).convert("RGB")
            rgb.thumbnail((size, size))
            buf = io.BytesIO()
            rgb.save(buf, format="JPEG", quality=85)
    except OSError:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _plain(text: Any) -> str:
    """``text`` for a matplotlib label: a ``$`` would otherwise start mathtext."""
    return str(text).replace("$", r"\$")


def _confusion_figure(stage: dict[str, Any], title: str) -> str:
    import matplotlib.pyplot as plt

    labels, cm = [_plain(x) for x in stage["labels"]], stage["confusion_matrix"]
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    peak = max(max(row) for row in cm) or 1
    for i, row in enumerate(cm):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center",
                    color="white" if v > peak / 2 else "black")  # fmt: skip
    return _png(fig)


def _roc_figure(stages: list[tuple[str, dict[str, Any]]]) -> str | None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.8, 3.4))
    drawn = False
    for name, stage in stages:
        preds, labels = stage.get("predictions") or [], stage["labels"]
        if len(labels) != 2 or not preds:
            continue
        pts = roc_curve([int(p["label"] == labels[1]) for p in preds], [p["score"] for p in preds])
        if pts:
            ax.plot(*zip(*pts, strict=True), marker=".",
                    label=f"{name} (AUC {stage.get('roc_auc') or 0:.3f})")  # fmt: skip
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC ({_plain(stages[0][1]['labels'][1])} = positive)")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def history_figure(history: list[dict[str, Any]]) -> Figure | None:
    """Test accuracy of each run's candidate, run by run (``None`` before any run has one).

    x is the run's number among the runs with an accuracy, oldest first, on integer ticks.
    Runs that failed the gate (``passed_gate`` false) get a red cross and a legend entry;
    promoted runs are labelled with their version. The caller closes the figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    points = [h for h in history if h.get("accuracy") is not None]
    if not points:
        return None
    xs = list(range(1, len(points) + 1))
    accuracy = [h["accuracy"] for h in points]
    failed = [not h.get("passed_gate", True) for h in points]
    fig, ax = plt.subplots(figsize=(6, 2.6))
    ax.plot(xs, accuracy, color="C0", lw=1, zorder=1)
    for is_failed, style in (
        (False, {"marker": "o", "color": "C0", "label": "passed the gate"}),
        (True, {"marker": "X", "color": "#c00", "s": 60, "label": "failed the gate"}),
    ):
        sel = [(x, a) for x, a, f in zip(xs, accuracy, failed, strict=True) if f == is_failed]
        if sel:
            ax.scatter(*zip(*sel, strict=True), zorder=2, **style)
    for x, h in zip(xs, points, strict=True):
        if h.get("promoted_version"):
            ax.annotate(_plain(h["promoted_version"]), (x, h["accuracy"]), fontsize=7,
                        textcoords="offset points", xytext=(0, 6), ha="center")  # fmt: skip
    ax.set_xlim(0.5, len(points) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("run")
    ax.set_ylabel("test accuracy")
    ax.set_title("Accuracy over runs (candidate model of each run)")
    ax.legend(loc="best", fontsize=8)
    return fig


def _stage_row(name: str, stage: dict[str, Any] | None) -> dict[str, Any]:
    return {"name": name, "stage": stage, "cv": (stage or {}).get("cv") or {}}


def _short(path: str) -> str:
    """``class/file`` of an image path."""
    return "/".join(Path(path).parts[-2:])


def figures(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """The run's figures as ``(title, PNG data URI)``: the report embeds them, MLflow keeps them
    as artifacts (``figure_files``)."""
    import matplotlib

    matplotlib.use("Agg")
    m = metrics
    chosen = m.get(m["candidate"]) or m["baseline"]
    stages = [(n, m[n]) for n in ("baseline", "tuned") if m.get(n)]
    out = [("confusion matrix", _confusion_figure(chosen, f"{m['candidate']} model"))]
    roc = _roc_figure(stages)
    if roc:
        out.append(("ROC curve", roc))
    return out


def figure_files(metrics: dict[str, Any]) -> dict[str, bytes]:
    """``figures`` as PNG files by name (``confusion_matrix.png``, ``roc_curve.png``), with
    the evidence maps (``evidence_*.png``) and the drift figure (``drift.png``)."""
    named = [(title.replace(" ", "_").lower(), uri) for title, uri in figures(metrics)]
    evidence = sections.evidence(metrics.get("evidence"), _png) or {}
    for title, uri in evidence.get("figures", []):
        named.append(("evidence_" + title.split(":")[0].split()[0].lower(), uri))
    drift = (sections.data(metrics.get("data_checks"), _png) or {}).get("drift_png")
    if drift:
        named.append(("drift", drift))
    return {name + ".png": base64.b64decode(uri.split(",", 1)[1]) for name, uri in named}


def render(metrics: dict[str, Any], history: list[dict[str, Any]]) -> str:
    """The report of one run as an HTML string."""
    m = metrics
    chosen = m.get(m["candidate"]) or m["baseline"]
    hist = history_figure(history)
    wrong = [
        {**p, "name": Path(p["path"]).name, "thumbnail": _thumbnail(p["path"])}
        for p in chosen.get("predictions", [])
        if p["label"] != p["predicted"]
    ]
    no_face = m.get("no_face_images")
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            m=m,
            chosen=chosen,
            stage_rows=[_stage_row(n, m.get(n)) for n in ("baseline", "tuned")],
            figures=figures(m),
            history_png=_png(hist) if hist else None,
            wrong=wrong,
            no_face=None if no_face is None else [_short(p) for p in no_face],
            failed_images=[
                {"name": _short(f["path"]), "error": f.get("error", "")}
                for f in m.get("failed_images") or []
            ],
            challenge=m.get("champion_comparison") or {},
            registry=registry_outcome(m),
            data=sections.data(m.get("data_checks"), _png),
            evidence=sections.evidence(m.get("evidence"), _png),
        )
    )


def render_stopped(
    run_id: str,
    params: dict[str, Any],
    checks: dict[str, Any],
    failure: dict[str, Any] | None,
) -> str:
    """The report of a run that a data check stopped before training: which check, the files
    it names (the data section), and the parameters; no metrics exist."""
    return (
        _environment()
        .get_template("stopped.html.j2")
        .render(
            run_id=run_id,
            model=params.get("model"),
            failure=failure or {},
            data=sections.data(checks, _png),
        )
    )
