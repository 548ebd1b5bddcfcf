"""The predictions report of ``imgclf predict`` (``--report``): from a real run of the session's
champion (``conftest.champion``: no extra training) on the 60 real images, a planted unreadable
file and a name Spark's listing skips; then the page itself in a real browser."""

from __future__ import annotations

import argparse
import base64
import csv
import io
import re
import shutil

import pytest

from tests.serving.test_page import browser, shots  # noqa: F401 (the shared browser fixture)

pytestmark = [pytest.mark.spark, pytest.mark.shared]


@pytest.fixture(scope="module")
def predicted(spark, champion, football, tmp_path_factory):
    from spark_tasks import predict

    tmp = tmp_path_factory.mktemp("predictions")
    folder = tmp / "images"
    shutil.copytree(football, folder)
    (folder / "messi" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    shutil.copy(sorted((football / "ronaldo").iterdir())[0], folder / "ronaldo" / "_x.jpg")
    args = argparse.Namespace(
        images=folder, model_uri=champion.model_uri, out=tmp / "p.csv", version=champion.version,
        report=tmp / "p.html",
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:  # predict reads the registry of the champion's home
        mp.setenv("IMGCLF_HOME", str(champion.settings.home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        summary = predict.run(args, spark=spark)
    rows = list(csv.DictReader(args.out.open()))
    return summary, rows, args.report


def test_the_report_counts_classes_and_lists_the_unreadable(predicted):
    from imgclf.predictions_report import LOW_CONFIDENCE

    summary, rows, report = predicted
    assert summary["report"] == str(report.resolve())
    assert (summary["images"], summary["predicted"]) == (62, 61)
    html = report.read_text()
    counts = dict(re.findall(r"<tr><td>([a-z]+)</td><td class=\"num\">(\d+)</td></tr>", html))
    expected = {}
    for r in rows:
        if not r["error"]:
            expected[r["predicted_label"]] = expected.get(r["predicted_label"], 0) + 1
    assert {k: int(v) for k, v in counts.items()} == {**expected, "unreadable": 1}
    assert set(expected) <= {"messi", "ronaldo"} and sum(expected.values()) == 61
    broken = next(r for r in rows if r["path"].endswith("/messi/broken.jpg"))
    assert broken["error"] and broken["error"] in html and broken["path"] in html
    unsure = [r for r in rows if not r["error"] and float(r["probability"]) < LOW_CONFIDENCE]
    assert html.count('src="data:image/jpeg;base64,') == min(len(unsure), 24)
    assert "<script" not in html and "http" not in html.split("<body>")[1]  # self-contained


def test_low_confidence_thumbnails_are_bounded_and_embedded(predicted):
    from PIL import Image

    from imgclf import predictions_report

    _, rows, _ = predicted
    html = predictions_report.render(rows, "all unsure", low=1.01)  # every image below 1.01
    thumbs = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', html)
    assert len(thumbs) == predictions_report.MAX_THUMBNAILS  # 61 readable, 24 shown
    assert "61 images, the 24 least confident shown" in html
    for b64 in thumbs:
        with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
            assert max(im.size) <= predictions_report.THUMB_PX
    assert len(html) < 24 * 20_000 + 50_000  # bounded whatever the images' size


def test_the_report_in_a_browser(predicted, browser, tmp_path):  # noqa: F811
    _, _, report = predicted
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(report.resolve().as_uri())
    assert page.locator("h1").inner_text().startswith("Predictions:")
    assert page.locator("#unreadable + table tr").count() == 2  # header + broken.jpg
    page.locator("#counts + table").wait_for()
    page.screenshot(path=str(shots(tmp_path) / "predictions-report.png"), full_page=True)
    from imgclf import predictions_report

    _, rows, _ = predicted
    unsure = tmp_path / "unsure.html"  # every image below 1.01: the thumbnails' table
    unsure.write_text(predictions_report.render(rows, "all unsure", low=1.01))
    page.goto(unsure.as_uri())
    images = page.locator("#unsure + p + table img")
    assert images.count() == predictions_report.MAX_THUMBNAILS
    assert all(images.nth(i).evaluate("i => i.complete && i.naturalWidth > 0") for i in range(3))
    page.screenshot(path=str(shots(tmp_path) / "predictions-report-unsure.png"), full_page=True)
    page.close()
