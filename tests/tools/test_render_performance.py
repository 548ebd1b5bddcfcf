"""docs/performance.md is rendered from the benchmarks' result files, never typed: a measurement
kept by benchmarks.record shows up in the page with where and when it was measured."""

from __future__ import annotations

import io
import json

import pytest

from benchmarks import record
from tools import render_performance


def test_the_page_is_the_render_of_the_kept_results():
    assert render_performance.PAGE.read_text() == render_performance.render(), (
        "docs/performance.md is stale or edited by hand: run make perf-docs"
    )


def test_a_recorded_measurement_reaches_the_page_with_its_provenance(tmp_path, monkeypatch):
    line = {"files": 600, "seconds": 1.234, "files_per_s": 486.2, "rerun_seconds": 0.05,
            "workers": 4}  # fmt: skip
    monkeypatch.setattr("sys.stdin", io.StringIO("a log line\n" + json.dumps(line) + "\n"))
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    cmd = "python -m benchmarks.download --images 600"
    assert record.main(["download", "--command", cmd, "--dir", str(tmp_path)]) == 0
    assert out.getvalue().startswith("a log line\n")  # what the benchmark prints still shows
    kept = json.loads((tmp_path / "download.json").read_text())
    assert kept["results"] == [line] and kept["source"] == "measured"
    assert kept["machine"]["cores"] and kept["date"].endswith("Z")
    page = render_performance.render(tmp_path)
    assert "| 600 | 1.23 | 486.2 | 0.05 | 4 |" in page
    assert f"_{kept['date']}, commit {kept['commit']}" in page and cmd in page
    assert "Not measured yet: no `benchmarks/results/scale.json`" in page


def test_transcribed_results_say_so_and_unknown_results_are_refused(tmp_path):
    (tmp_path / "decode.json").write_text(json.dumps({
        "benchmark": "decode", "source": "transcribed", "transcribed_from": "a notebook",
        "date": "2026-01-01", "commit": "abc", "command": "x", "machine": {"cores": 2},
        "results": [{"images": 60, "images_per_s": {"binaryFile": 700.0, "image": 190.0},
                     "ratio_image_to_binaryFile": 0.271}],
    }))  # fmt: skip
    page = render_performance.render(tmp_path)
    assert "| 60 | 700.0 | 190.0 | 0.271 |" in page
    assert "_Transcribed, not written by `benchmarks.record`: a notebook." in page
    (tmp_path / "mystery.json").write_text("{}")
    with pytest.raises(ValueError, match="mystery"):
        render_performance.render(tmp_path)


def test_no_stdin_json_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("Traceback: the benchmark failed\n"))
    assert record.main(["featurize", "--dir", str(tmp_path)]) == 1
    assert not list(tmp_path.iterdir())
