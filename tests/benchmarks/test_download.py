"""The download benchmark runs end to end on a few images: a full sync, then an unchanged one."""

from __future__ import annotations

import json

from benchmarks import download
from tests.fixtures_images import make_images


def test_download_benchmark_syncs_everything_then_nothing(tmp_path, capsys):
    source = make_images(tmp_path / "source", per_class=3)
    assert download.main(["--images", "24", "--source", str(source), "--workers", "3"]) == 0
    out = json.loads(capsys.readouterr().out.strip())
    assert (out["files"], out["rerun_downloaded"], out["rerun_unchanged"]) == (24, 0, 24)
    assert out["files_per_s"] > 0 and out["bytes"] > 0
    assert 1 < out["connections"] <= 3 + 1  # kept alive: one per worker, one for the listings
