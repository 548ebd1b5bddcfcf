"""MLflow tracking, for real, on a temporary SQLite store (no mocks)."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from imgclf import registry, tracking
from imgclf.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def settings(tmp_path_factory, seed_mlflow_store):
    home = seed_mlflow_store(tmp_path_factory.mktemp("mlflow-home"))
    return dataclasses.replace(Settings.from_env(), home=home, tracking_uri="", registry_uri="")


def _logged_model(settings, mlflow_run_id: str, tmp_path: Path) -> str:
    """A stand-in artifact for a logged model (the Spark flavor is tested with Spark)."""
    mlflow = tracking.client(settings)
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "MLmodel").write_text("flavors: {}\n")
    mlflow.log_artifacts(mlflow_run_id, str(model), "model")
    return f"runs:/{mlflow_run_id}/model"


def test_register_promote_rollback_and_an_identical_candidate(settings, tmp_path):
    rid = tracking.start_run(settings, "d", "manual__3", {})["mlflow_run_id"]
    source = _logged_model(settings, rid, tmp_path)
    v1, same = registry.register(settings, source, rid, "key-1", {"accuracy": "0.9"})
    assert (v1, same) == ("1", None)
    assert registry.register(settings, source, rid, "key-1", {}) == (None, "1")  # no duplicate
    v2, _ = registry.register(settings, source, rid, "key-2", {"accuracy": "0.95"})
    registry.promote(settings, v1, "first")
    registry.promote(settings, v2, "better")
    assert registry.champion(settings)["version"] == "2"
    assert registry.champion(settings)["tags"]["previous_champion"] == "1"
    assert registry.model_uri(settings, "champion") == "models:/football_classifier@champion"
    demoted_by_promote = registry.version(settings, "1")["tags"]
    assert "champion_since" not in demoted_by_promote and "champion_until" in demoted_by_promote
    assert registry.rollback(settings) == "1"
    assert registry.champion(settings)["version"] == "1"
    assert registry.champion(settings)["tags"]["champion_reason"] == "rolled back from version 2"
    demoted = registry.version(settings, "2")["tags"]  # history, not a claim to be champion
    assert "champion_since" not in demoted and "champion_reason" not in demoted
    assert demoted["champion_until"].endswith("rolled back from version 2")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ .. \d{4}-.*", demoted["champion_until"])
    with pytest.raises(KeyError, match="no earlier champion"):
        registry.rollback(settings)
    with pytest.raises(KeyError, match="no version '42'"):
        registry.version(settings, "42")


def _history(settings) -> list[str]:
    model = tracking.client(settings).get_registered_model(settings.registered_model)
    return json.loads(model.tags.get(registry.HISTORY_TAG, "[]"))


def _in_processes(settings, calls: list[str]) -> None:
    """Each call in its own process, all at once (``promote N`` or ``rollback``)."""
    code = (
        "import sys, dataclasses, pathlib; from imgclf import registry; "
        "from imgclf.settings import Settings; "
        "s = dataclasses.replace(Settings.from_env(), home=pathlib.Path(sys.argv[1]), "
        "tracking_uri='', registry_uri=''); "
        "registry.promote(s, sys.argv[3], 'concurrent') if sys.argv[2] == 'promote' "
        "else registry.rollback(s)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(settings.home), *call.split()], cwd=ROOT)
        for call in calls
    ]
    assert [p.wait(timeout=300) for p in procs] == [0] * len(procs)


def test_concurrent_promotes_and_rollbacks_lose_nothing(settings, tmp_path):
    rid = tracking.start_run(settings, "d", "manual__4", {})["mlflow_run_id"]
    source = _logged_model(settings, rid, tmp_path)
    made = [registry.register(settings, source, rid, f"c-{i}", {})[0] for i in range(3)]
    registry.promote(settings, made[2], "before")
    before = _history(settings)
    _in_processes(settings, [f"promote {v}" for v in made[:2]])
    after = _history(settings)
    assert after[: len(before)] == before and sorted(after[len(before) :]) == sorted(made[:2])
    assert registry.champion(settings)["version"] == after[-1]  # the alias and its log agree
    _in_processes(settings, ["rollback", "rollback"])
    assert _history(settings) == after[:-2]  # each rollback took exactly one step back
    assert registry.champion(settings)["version"] == after[-3] == made[2]
