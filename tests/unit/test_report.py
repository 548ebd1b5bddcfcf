"""The run report: sections, embedded figures and the misclassified images."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import matplotlib
import pytest
from PIL import Image

from imgclf import report
from imgclf.metrics import classification_report
from imgclf.report import history_figure, render

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _stage(tmp_path, wrong_name="messi7.jpeg"):
    paths = []
    for i, (label, color) in enumerate(
        [("messi", (200, 0, 0))] * 3 + [("ronaldo", (0, 0, 200))] * 3
    ):
        p = tmp_path / (wrong_name if i == 0 else f"{label}{i}.jpg")
        Image.new("RGB", (60, 40), color).save(p, format="JPEG")
        paths.append((str(p), label))
    predicted = ["ronaldo", "messi", "messi", "ronaldo", "ronaldo", "ronaldo"]
    scores = [0.8, 0.2, 0.1, 0.9, 0.7, 0.6]
    report = classification_report(
        [lab for _, lab in paths], predicted, ["messi", "ronaldo"], scores
    )
    report["params"] = {"regParam": 0.05}
    report["predictions"] = [
        {"path": p, "label": lab, "predicted": pr, "probability": max(s, 1 - s), "score": s}
        for (p, lab), pr, s in zip(paths, predicted, scores, strict=True)
    ]
    return report


def _metrics(tmp_path, **over):
    stage = _stage(tmp_path)
    m = {
        "run_id": "manual__1", "accuracy": stage["accuracy"], "candidate": "baseline",
        "passed_gate": True, "gate": {"reason": "baseline model passes the gate"},
        "model": "/m.keras", "featurizer": "file-abc-avg", "n_train": 36, "n_test": 6,
        "featurized_images": 60, "baseline": stage, "tuned": None,
        "champion_comparison": {"champion": "v0001", "champion_accuracy": 0.5,
                                "decision": "candidate 0.8333 vs champion v0001: promoted"},
        "promoted_version": "v0002",
    }  # fmt: skip
    m.update(over)
    return m


def test_report_has_every_section_figures_and_the_misclassified_image(tmp_path):
    history = [{"accuracy": 0.7, "promoted_version": "v0001"}, {"accuracy": 0.83}]
    page = render(_metrics(tmp_path), history)
    for section in ("summary", "stages", "figures", "misclassified", "history", "champion"):
        assert f"id='{section}'" in page
    pngs = re.findall(r"data:image/png;base64,[A-Za-z0-9+/=]{200,}", page)
    assert len(pngs) == 3  # confusion matrix, ROC curve, accuracy over runs
    assert "Misclassified test images (1)" in page
    assert "messi7.jpeg" in page and "true <b>messi</b>, predicted <b>ronaldo</b>" in page
    assert page.count("data:image/jpeg;base64,") == 1
    assert "champion v0001: 0.5000 on the same 6 test images" in page
    assert "registry: <b>nothing registered (the run stopped before promotion)</b>" in page
    assert "[0." in page and "ROC AUC" in page  # Wilson interval and AUC columns


def test_an_identical_rerun_says_nothing_was_registered_not_promoted(tmp_path):
    """The challenge alone would read "promoted": the registry line says what happened."""
    registry = "identical to version 1 (same dataset, featurizer, params and code): " + (
        "no new version registered"
    )
    m = _metrics(tmp_path, promoted_version=None)
    m["champion_comparison"] = {
        **m["champion_comparison"], "registry": registry, "promoted": True,
    }  # fmt: skip
    page = render(m, [])
    assert f"registry: <b>{registry}</b>" in page
    assert "&rarr;" not in page


def test_report_of_a_failed_gate_says_so(tmp_path):
    page = render(
        _metrics(tmp_path, passed_gate=False, champion_comparison=None, promoted_version=None,
                 gate={"reason": "baseline model fails the gate: 0.8333 < 0.9900"}),
        [],
    )  # fmt: skip
    assert "<b class='fail'>FAILED</b>" in page
    assert "not compared (the gate failed)" in page
    assert "no history yet" in page


def test_face_runs_list_the_images_without_a_face(tmp_path):
    page = render(_metrics(tmp_path, no_face_images=["/d/messi/messi20.jpeg"]), [])
    assert "no face found in 1 images: messi/messi20.jpeg" in page
    assert "no face found" not in render(_metrics(tmp_path), [])  # not a face model


HOSTILE = "<script>alert(1)</script>\"'&"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;&amp;"  # as Jinja2 autoescape writes it


def test_hostile_strings_in_the_metrics_come_out_escaped(tmp_path):
    stage = _stage(tmp_path, wrong_name=f"x{HOSTILE.replace('/', '')}.jpg")
    cls = f"messi{HOSTILE}"
    stage["labels"] = [cls, "ronaldo"]
    stage["per_class"][cls] = stage["per_class"].pop("messi")
    for p in stage["predictions"]:
        p["label"] = cls if p["label"] == "messi" else p["label"]
        p["predicted"] = cls if p["predicted"] == "messi" else p["predicted"]
    stage["params"] = {"regParam": HOSTILE}
    m = _metrics(
        tmp_path, baseline=stage, run_id=f"manual__{HOSTILE}", model=f"/models/{HOSTILE}.keras",
        featurizer=HOSTILE, gate={"reason": HOSTILE}, no_face_images=[f"/d/{HOSTILE}/a.jpg"],
        failed_images=[{"path": f"/d/messi/{HOSTILE}.jpg", "error": HOSTILE}],
        champion_comparison={"champion": HOSTILE, "champion_accuracy": 0.5, "decision": HOSTILE,
                             "registry": HOSTILE},
        promoted_version=HOSTILE,
    )  # fmt: skip
    page = render(m, [{"accuracy": 0.8, "passed_gate": True, "promoted_version": HOSTILE}])
    assert "<script" not in page.lower() and "alert(1)</" not in page
    assert page.count(ESCAPED) >= 10  # shown as text, escaped, wherever it appears
    assert f"<title>imgclf run manual__{ESCAPED}</title>" in page
    assert f"<code>/models/{ESCAPED}.keras</code>" in page
    assert f"<td>messi{ESCAPED}</td>" in page  # the per-class row
    assert f"true <b>messi{ESCAPED}</b>, predicted <b>ronaldo</b>" in page
    assert "script&gt;&#34;&#39;&amp;/a.jpg" in page  # the no-face image (class/file)
    assert f"registry: <b>{ESCAPED}</b>" in page  # what happened to the registry
    # an attribute value cannot be closed by a quote in the data: the thumbnail's alt text
    assert 'alt="x&lt;script&gt;alert(1)&lt;script&gt;&#34;&#39;&amp;.jpg"' in page


def _visible_xticks(fig):
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    return [t for t in ax.get_xticks() if lo <= t <= hi]


@pytest.mark.parametrize("n", [1, 3, 12])
def test_history_chart_has_integer_run_ticks(n):
    fig = history_figure([{"accuracy": 0.8, "passed_gate": True} for _ in range(n)])
    try:
        fig.canvas.draw()
        ticks = _visible_xticks(fig)
        assert ticks and all(float(t).is_integer() for t in ticks)
        assert ticks[0] >= 1 and ticks[-1] <= n
        if n <= 3:
            assert ticks == list(range(1, n + 1))
        lo, hi = fig.axes[0].get_xlim()
        assert lo < 1 and hi > n and hi - lo <= n + 1  # one run: centred, not 0.96..1.04
    finally:
        plt.close(fig)


def test_history_chart_marks_the_runs_that_failed_the_gate():
    history = [
        {"accuracy": 0.7, "passed_gate": True, "promoted_version": "v0001"},
        {"accuracy": 0.4, "passed_gate": False},
        {"accuracy": None, "passed_gate": False, "failed_at": "train"},  # no metrics: not drawn
        {"accuracy": 0.9, "passed_gate": True, "promoted_version": "v0002"},
    ]
    fig = history_figure(history)
    try:
        ax = fig.axes[0]
        legend = {t.get_text() for t in ax.get_legend().get_texts()}
        assert legend == {"passed the gate", "failed the gate"}
        by_label = {c.get_label(): c for c in ax.collections}
        failed, passed = by_label["failed the gate"], by_label["passed the gate"]
        assert failed.get_offsets().tolist() == [[2.0, 0.4]]
        assert passed.get_offsets().tolist() == [[1.0, 0.7], [3.0, 0.9]]
        assert failed.get_facecolor().tolist() != passed.get_facecolor().tolist()
        assert failed.get_paths()[0] != passed.get_paths()[0]  # another marker, not only colour
        assert [a.get_text() for a in ax.texts] == ["v0001", "v0002"]  # promoted, as before
    finally:
        plt.close(fig)
    all_passed = history_figure([{"accuracy": 0.8, "passed_gate": True}])
    try:
        texts = [t.get_text() for t in all_passed.axes[0].get_legend().get_texts()]
        assert texts == ["passed the gate"]
    finally:
        plt.close(all_passed)
    assert history_figure([]) is None
    assert history_figure([{"accuracy": None, "passed_gate": False}]) is None


def test_a_missing_required_metric_fails_the_render_instead_of_a_blank(tmp_path):
    m = _metrics(tmp_path)
    del m["n_train"]
    with pytest.raises(jinja2.UndefinedError, match="n_train"):
        render(m, [])
    # optional ones may be absent or None
    m = _metrics(tmp_path, tuned=None, champion_comparison=None, promoted_version=None)
    del m["featurizer"]
    page = render(m, [])
    assert "<td>tuned</td><td colspan=5>skipped</td>" in page
    assert "not compared (the challenge did not run)" in page


def test_the_template_ships_with_the_package():
    assert (report.TEMPLATES / "report.html.j2").is_file()
    assert report.TEMPLATES.parent == Path(report.__file__).parent


def test_the_data_section_names_the_files_and_shows_the_drift_figure(tmp_path):
    import numpy as np

    from imgclf.datachecks import Settings, check

    rng = np.random.default_rng(0)
    rows = [{"path": f"/raw/{c}/{c}{i}.jpg", "label": c, "sha256": f"{c}{i}"}
            for c in ("messi", "ronaldo") for i in range(10)]  # fmt: skip
    feats = rng.normal(size=(20, 32)).astype("float32")
    feats[15] = feats[2] + 0.01  # ronaldo5 ~ messi2
    before = {"files": [{"path": "messi/messi0.jpg", "sha256": "y"}]}
    now = {"files": [{"path": "messi/messi0.jpg", "sha256": "x"}]}
    _, out = check(rows, feats, Settings(), test_fraction=0.4, seed=1, folds=2,
                   reference=feats[::2], manifest=now, previous_manifest=before)  # fmt: skip
    page = render(_metrics(tmp_path, data_checks=out.as_dict()), [])
    assert "id='data'" in page and "messi/messi2.jpg ~ ronaldo/ronaldo5.jpg" in page
    assert "1 changed (messi/messi0.jpg)" in page
    assert "alt='drift'" in page and "% novel" in page
    assert "not run" in render(_metrics(tmp_path), [])  # older runs: said, not hidden
