import json
import os

import pytest

from imgclf.registry import Registry


def _model(tmp_path, name="m"):
    d = tmp_path / name
    (d / "stages").mkdir(parents=True)
    (d / "stages" / "x").write_text(name)
    return d


def test_register_and_champion(tmp_path):
    reg = Registry(tmp_path / "models")
    assert reg.champion() is None
    v1 = reg.register(_model(tmp_path), {"accuracy": 0.9})
    assert v1 == "v0001"
    assert reg.champion() is None  # registering is not promoting
    reg.set_champion(v1)
    v2 = reg.register(_model(tmp_path, "n"), {"accuracy": 0.95})
    reg.set_champion(v2, reason="better")
    assert reg.versions() == ["v0001", "v0002"]
    assert reg.champion() == "v0002"
    assert (reg.model_path(v2) / "stages" / "x").read_text() == "n"
    pointer = json.loads((tmp_path / "models" / "champion.json").read_text())
    assert pointer["previous"] == "v0001"


def test_crash_while_registering_keeps_the_old_champion_and_no_debris(tmp_path, monkeypatch):
    reg = Registry(tmp_path / "models")
    reg.set_champion(reg.register(_model(tmp_path), {"accuracy": 0.9}))

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        reg.register(_model(tmp_path, "n"), {"accuracy": 0.95})  # version.json write fails
    monkeypatch.undo()
    assert reg.champion() == "v0001"
    assert reg.versions() == ["v0001"]
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".")]


def test_pointer_write_failure_leaves_previous_pointer_readable(tmp_path, monkeypatch):
    reg = Registry(tmp_path / "models")
    reg.set_champion(reg.register(_model(tmp_path), {"accuracy": 0.9}))
    v2 = reg.register(_model(tmp_path, "n"), {"accuracy": 0.95})
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("crash")))
    with pytest.raises(OSError, match="crash"):
        reg.set_champion(v2)
    monkeypatch.undo()
    assert reg.champion() == "v0001"
    assert [p.name for p in (tmp_path / "models").iterdir() if p.name.startswith(".")] == []


def test_unknown_version_is_a_clear_error(tmp_path):
    with pytest.raises(KeyError, match="v0042"):
        Registry(tmp_path).info("v0042")
    with pytest.raises(FileNotFoundError, match="nope"):
        Registry(tmp_path).register(tmp_path / "nope", {})


def test_rollback_walks_back_the_champion_history(tmp_path):
    reg = Registry(tmp_path / "models")
    versions = [reg.register(_model(tmp_path, n), {"accuracy": 0.9}) for n in "abc"]
    for v in versions:
        reg.set_champion(v)
    assert reg.rollback() == "v0002"
    assert reg.champion() == "v0002"
    assert reg.rollback() == "v0001"
    with pytest.raises(KeyError, match="no earlier champion"):
        reg.rollback()


def test_extra_files_are_kept_with_the_version(tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"fingerprint": "abc"}')
    reg = Registry(tmp_path / "models")
    v = reg.register(_model(tmp_path), {"accuracy": 0.9}, extra_files={"manifest.json": manifest})
    assert json.loads((tmp_path / "models" / v / "manifest.json").read_text()) == {
        "fingerprint": "abc"
    }
