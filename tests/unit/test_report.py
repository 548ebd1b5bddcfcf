"""The run report: sections, embedded figures and the misclassified images."""

from __future__ import annotations

import re

from PIL import Image

from imgclf.metrics import classification_report
from imgclf.report import render


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
    assert "&rarr; <b>v0002</b>" in page
    assert "[0." in page and "ROC AUC" in page  # Wilson interval and AUC columns


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
