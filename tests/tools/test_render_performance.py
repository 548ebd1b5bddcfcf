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


def test_the_serving_benchmark_renders_latency_batch_cost_and_the_garbage_run(tmp_path):
    srv = {
        "cold_start_s": 4.2,
        "peak_rss_mb": 900.5,
        "c1": {"concurrency": 1, "p50_ms": 21.5, "p99_ms": 40.25, "requests_per_s": 45.1},
        "c4": {"concurrency": 4, "p50_ms": 50.5, "p99_ms": 90.75, "requests_per_s": 70.3},
    }
    ov = {
        **srv,
        "garbage": {
            "requests": 50,
            "statuses": {"400": 30, "413": 5, "415": 15},
            "good_during": [200] * 9 + [503],
            "good_after": 200,
            "peak_rss_mb_before": 900.5,
            "peak_rss_mb_after": 910.0,
        },
    }
    line = {"benchmark": "serve", "server": {"tensorflow": srv, "openvino": ov},
            "batch_predict": {"images": 60, "wall_s": 26.5, "per_image_ms": 441.7}}  # fmt: skip
    (tmp_path / "serve.json").write_text(
        json.dumps({"source": "measured", "date": "2026-12-05T21:00:00Z", "results": [line]})
    )
    page = render_performance.render(tmp_path)
    assert "| tensorflow | 4.20 | 1 | 21.5 | 40.2 | 45.1 | 900.5 |" in page
    assert "| openvino | 4.20 | 4 | 50.5 | 90.8 | 70.3 | 900.5 |" in page
    assert "| 60 | 26.50 | 441.7 |" in page
    assert "| openvino | 50 | 400: 30, 413: 5, 415: 15 | 9 of 10 | 200 | 900.5 | 910.0 |" in page
