"""``runs/<run_id>/report.html``: one self-contained page about a run.

Sections: summary and gate decisions, baseline vs tuned, confusion matrix, ROC curve (from
predicted probabilities), every misclassified test image with its true label and predicted
probability, accuracy over past runs, and the champion comparison. Figures are matplotlib PNGs
and thumbnails are JPEGs, both embedded as base64: the file opens anywhere, offline.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from imgclf.metrics import roc_curve


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _thumbnail(path: str, size: int = 160) -> str | None:
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
            img.thumbnail((size, size))
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=85)
    except OSError:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _confusion_figure(stage: dict[str, Any], title: str) -> str:
    import matplotlib.pyplot as plt

    labels, cm = stage["labels"], stage["confusion_matrix"]
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
    ax.set_title(f"ROC ({stages[0][1]['labels'][1]} = positive)")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def _history_figure(history: list[dict[str, Any]]) -> str | None:
    import matplotlib.pyplot as plt

    points = [h for h in history if h.get("accuracy") is not None]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(6, 2.6))
    xs = range(1, len(points) + 1)
    ax.plot(xs, [h["accuracy"] for h in points], marker="o")
    for x, h in zip(xs, points, strict=True):
        if h.get("promoted_version"):
            ax.annotate(h["promoted_version"], (x, h["accuracy"]), fontsize=7,
                        textcoords="offset points", xytext=(0, 6), ha="center")  # fmt: skip
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("run")
    ax.set_ylabel("test accuracy")
    ax.set_title("Accuracy over runs (candidate model of each run)")
    return _png(fig)


def _stage_rows(m: dict[str, Any]) -> str:
    rows = []
    for name in ("baseline", "tuned"):
        s = m.get(name)
        if not s:
            rows.append(f"<tr><td>{name}</td><td colspan=5>skipped</td></tr>")
            continue
        lo, hi = s["accuracy_ci95"]
        auc = "n/a" if s.get("roc_auc") is None else f"{s['roc_auc']:.3f}"
        cv = s.get("cv") or {}
        cv_txt = (f"{cv['metric']} {cv['best_mean']:.4f} &plusmn; {cv['best_std']:.4f}"
                  if cv else "")  # fmt: skip
        rows.append(
            f"<tr><td>{name}</td><td>{s['accuracy']:.4f}</td><td>[{lo:.3f}, {hi:.3f}]</td>"
            f"<td>{auc}</td><td>{html.escape(str(s['params']))}</td><td>{cv_txt}</td></tr>"
        )
    return "".join(rows)


def _per_class(stage: dict[str, Any]) -> str:
    return "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v['precision']:.3f}</td><td>{v['recall']:.3f}</td>"
        f"<td>{v['f1']:.3f}</td><td>{v['support']}</td></tr>"
        for k, v in stage["per_class"].items()
    )


def _no_face_item(m: dict[str, Any]) -> str:
    """dlib-face runs: which images had no face (they were classified by the fallback)."""
    paths = m.get("no_face_images")
    if paths is None:
        return ""
    names = ", ".join(html.escape("/".join(Path(p).parts[-2:])) for p in paths) or "none"
    return f"<li>no face found in {len(paths)} images: {names}</li>"


def render(metrics: dict[str, Any], history: list[dict[str, Any]]) -> str:
    """The report of one run as an HTML string."""
    import matplotlib

    matplotlib.use("Agg")
    m = metrics
    chosen = m.get(m["candidate"]) or m["baseline"]
    stages = [(n, m[n]) for n in ("baseline", "tuned") if m.get(n)]
    figures = [_confusion_figure(chosen, f"{m['candidate']} model")]
    roc = _roc_figure(stages)
    if roc:
        figures.append(roc)
    hist = _history_figure(history)
    wrong = [p for p in chosen.get("predictions", []) if p["label"] != p["predicted"]]
    cards = []
    for p in wrong:
        thumb = _thumbnail(p["path"])
        img = f'<img src="{thumb}" alt="{html.escape(Path(p["path"]).name)}">' if thumb else ""
        cards.append(
            f'<div class="card">{img}<div>{html.escape(Path(p["path"]).name)}<br>'
            f"true <b>{html.escape(p['label'])}</b>, predicted "
            f"<b>{html.escape(p['predicted'])}</b> (p={p['probability']:.2f})</div></div>"
        )
    challenge = m.get("champion_comparison") or {}
    promoted = m.get("promoted_version")
    verdict = "PASSED" if m["passed_gate"] else "FAILED"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>imgclf run {html.escape(m['run_id'])}</title><style>",
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}",
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}",
        ".card{display:inline-block;width:170px;margin:6px;font-size:12px;vertical-align:top}",
        ".fail{color:#b00}.pass{color:#070}</style></head><body>",
        f"<h1>Run {html.escape(m['run_id'])}</h1>",
        "<h2 id='summary'>Summary and gate decisions</h2><ul>",
        f"<li>model: <code>{html.escape(str(m['model']))}</code> "
        f"(featurizer {html.escape(str(m.get('featurizer')))})</li>",
        f"<li>{m['n_train']} training and {m['n_test']} test images; "
        f"{m['featurized_images']} images through the CNN in this run</li>",
        _no_face_item(m),
        f"<li>gate <b class='{'pass' if m['passed_gate'] else 'fail'}'>{verdict}</b>: "
        f"{html.escape(m['gate']['reason'])}</li>",
        f"<li>tuning: {'ran' if m.get('tuned') else 'skipped (baseline reached the target)'}</li>",
        f"<li>promotion: {html.escape(challenge.get('decision', 'not reached'))}"
        f"{f' &rarr; <b>{promoted}</b>' if promoted else ''}</li></ul>",
        "<h2 id='stages'>Baseline vs tuned</h2><table><tr><th>stage</th><th>test accuracy</th>"
        "<th>95% Wilson</th><th>ROC AUC</th><th>params</th><th>cross-validation</th></tr>",
        _stage_rows(m),
        "</table><h3>Per class (candidate)</h3><table><tr><th>class</th><th>precision</th>"
        f"<th>recall</th><th>F1</th><th>support</th></tr>{_per_class(chosen)}</table>",
        "<h2 id='figures'>Confusion matrix and ROC curve</h2>",
        *[f"<img src='{f}'>" for f in figures],
        f"<h2 id='misclassified'>Misclassified test images ({len(wrong)})</h2>",
        "".join(cards) or "<p>none</p>",
        "<h2 id='history'>Accuracy over past runs</h2>",
        f"<img src='{hist}'>" if hist else "<p>no history yet</p>",
        "<h2 id='champion'>Champion comparison</h2>",
    ]
    if challenge.get("champion"):
        theirs = challenge.get("champion_accuracy")
        parts.append(
            f"<p>champion {html.escape(str(challenge['champion']))}: "
            + (f"{theirs:.4f}" if theirs is not None else "not comparable")
            + f" on the same {m['n_test']} test images; candidate {m['accuracy']:.4f}.</p>"
        )
    else:
        parts.append(
            "<p>no champion to compare with</p>"
            if challenge
            else "<p>not compared (the gate failed)</p>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)
