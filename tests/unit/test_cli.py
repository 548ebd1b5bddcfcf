"""The imgclf command, run as a user would (in-process main() against the stand-in)."""

from __future__ import annotations

import json
import os
import re

import pytest

from imgclf.cli import _classes, build_parser, main
from imgclf.connections import endpoint_from_env
from imgclf.testing.github_stub import GitHubStub
from tests.fixtures_images import make_images


@pytest.fixture
def stub(tmp_path):
    make_images(tmp_path / "remote" / "football", per_class=3)
    with GitHubStub(tmp_path / "remote" / "football", prefix="CH13/football") as s:
        yield s


def _download(stub, dest, capsys):
    classes = ["--class", "red=CH13/football/red", "--class", "blue=CH13/football/blue"]
    code = main(["download", "--dest", str(dest), "--api-url", stub.url, *classes])
    out = capsys.readouterr()
    return code, out.out.strip().splitlines(), out.err


def test_download_then_rerun_reports_counts_on_the_last_line(stub, tmp_path, capsys):
    code, lines, _ = _download(stub, tmp_path / "d", capsys)
    assert code == 0
    assert lines[-1] == "downloaded=6 unchanged=0 removed=0 failed=0"
    code, lines, _ = _download(stub, tmp_path / "d", capsys)
    assert code == 0
    assert lines[-1] == "downloaded=0 unchanged=6 removed=0 failed=0"


def test_unverifiable_file_fails_the_command_naming_it(stub, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("IMGCLF_GITHUB_BACKOFF", "0.01")  # 4 tries, without the real waits
    stub.add_faults(r"/raw/.*/red1\.png$", ["garbage"] * 8)
    code, lines, err = _download(stub, tmp_path / "d", capsys)
    assert code == 1
    assert "red/red1.png' failed verification" in err
    assert lines[-1] == "downloaded=5 unchanged=0 removed=0 failed=1"


def test_wrong_folder_fails_with_the_repo_ref_and_path(stub, tmp_path, capsys):
    classes = ["--class", "red=CH13/football/nope", "--class", "blue=CH13/football/blue"]
    code = main(["download", "--dest", str(tmp_path / "d"), "--api-url", stub.url, *classes])
    assert code == 1
    assert "'CH13/football/nope'" in capsys.readouterr().err


def test_connection_from_airflow_env_json_and_uri(monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.setenv(
        "AIRFLOW_CONN_GITHUB_DEFAULT",
        json.dumps({"conn_type": "http", "host": "http://127.0.0.1:9", "password": "tok"}),
    )
    assert endpoint_from_env(dict(os.environ)) == ("http://127.0.0.1:9", "tok")
    monkeypatch.setenv("AIRFLOW_CONN_GITHUB_DEFAULT", "https://:tok2@ghe.example.com/api/v3")
    assert endpoint_from_env(dict(os.environ)) == ("https://ghe.example.com/api/v3", "tok2")
    monkeypatch.delenv("AIRFLOW_CONN_GITHUB_DEFAULT")
    assert endpoint_from_env(dict(os.environ)) == ("https://api.github.com", None)


def test_model_files_given_relative_become_absolute_names_stay(tmp_path, monkeypatch):
    import zipfile

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    with zipfile.ZipFile(tmp_path / "m" / "lite.keras", "w") as zf:
        for member in ("metadata.json", "config.json", "model.weights.h5"):
            zf.writestr(member, "{}")
    parsed = build_parser().parse_args(
        ["featurize", "--images", "x", "--model", "m/lite.keras", "--out", "o"]
    )
    assert parsed.model == str(tmp_path / "m" / "lite.keras")
    with pytest.raises(SystemExit):  # checked where it is typed, not minutes later in a job
        build_parser().parse_args(
            ["featurize", "--images", "x", "--model", "no.keras", "--out", "o"]
        )
    for name in ("InceptionV3", "dlib-face"):
        parsed = build_parser().parse_args(["evaluate", "--images", "x", "--model", name])
        assert parsed.model == name


@pytest.mark.parametrize(
    ("item", "why"),
    [
        ("..=CH13/football/messi", r"class name '\.\.' must not start with '\.'"),
        ("/tmp/x=CH13/football/messi", r"class name '/tmp/x' must be letters, digits"),
        (".hidden=CH13/football/messi", r"class name '\.hidden' must not start with '\.'"),
        ("a b=CH13/football/messi", r"class name 'a b' must be letters, digits"),
        ("messi=/etc", r"classes\.messi folder '/etc' must be relative"),
        ("messi=CH13/../../etc", r"classes\.messi folder 'CH13/\.\./\.\./etc' must not contain"),
        ("messi=CH13\\football", r"classes\.messi folder .* not a backslash"),
    ],
)
def test_bad_class_options_exit_naming_the_option(item, why):
    with pytest.raises(SystemExit, match=rf"^imgclf: --class {re.escape(repr(item))}: {why}"):
        _classes([item, "ronaldo=CH13/football/ronaldo"])


def test_clashing_class_options_exit():
    with pytest.raises(SystemExit, match=r"^imgclf: --class 'a=y': class 'a' is given twice"):
        _classes(["a=x", "a=y"])
    with pytest.raises(
        SystemExit, match=r"^imgclf: --class: class names 'Messi' and 'messi' differ only in case"
    ):
        _classes(["Messi=CH13/football/messi", "messi=CH13/football/messi2"])
    with pytest.raises(SystemExit, match=r"^imgclf: --class 'nope' must be NAME=PATH"):
        _classes(["nope"])


def test_good_class_options_and_the_default():
    assert _classes(["red=CH13/football/red", "blue=CH13/football/blue"]) == {
        "red": "CH13/football/red",
        "blue": "CH13/football/blue",
    }
    assert _classes(None) == {
        "messi": "CH13/football/messi",
        "ronaldo": "CH13/football/ronaldo",
    }


def test_download_refuses_a_bad_class_before_any_request(tmp_path):
    dead = "http://127.0.0.1:9"  # nothing listens: a request would fail differently
    argv = ["download", "--dest", str(tmp_path / "d"), "--api-url", dead]
    with pytest.raises(SystemExit, match=r"^imgclf: --class '\.\.=CH13/football/messi': "):
        main([*argv, "--class", "..=CH13/football/messi", "--class", "b=CH13/football/b"])
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("command", ["predict", "featurize", "evaluate"])
def test_a_missing_images_folder_is_one_line_before_spark(command, tmp_path, capsys, monkeypatch):
    import subprocess

    started = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: started.append(a))
    missing = tmp_path / "nonexistent"
    argv = [command, "--images", str(missing)]
    argv += ["--out", str(tmp_path / "o")] if command != "evaluate" else []
    argv += ["--model", "InceptionV3"] if command != "predict" else []
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"imgclf {command}: --images {str(missing)!r} does not exist"]
    assert started == []  # no spark-submit
    (tmp_path / "file.jpg").write_bytes(b"x")
    argv[2] = str(tmp_path / "file.jpg")
    assert main(argv) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_models_list_names_each_accuracys_test_set_and_show_reads_as_dates(
    tmp_path, monkeypatch, capsys, seed_mlflow_store
):
    """v1's accuracy on seed 12 and the champion's on a challenger's seed-7 split are different
    measurements: the list says which test set each figure comes from."""
    from imgclf import registry, tracking
    from imgclf.settings import Settings

    home = seed_mlflow_store(tmp_path / "home")
    monkeypatch.setenv("IMGCLF_HOME", str(home))
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(key, raising=False)
    settings = Settings.from_env()
    rid = tracking.start_run(settings, "d", "manual__1", {})["mlflow_run_id"]
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "MLmodel").write_text("flavors: {}\n")
    tracking.client(settings).log_artifacts(rid, str(tmp_path / "model"), "model")
    common = {"dataset_fingerprint": "f" * 64, "test_fraction": "0.4", "n_test": "24"}
    first = {**common, "accuracy": "0.916667", "test_split_seed": "12"}
    v1, _ = registry.register(settings, f"runs:/{rid}/model", rid, "k1", first)
    registry.promote(settings, v1, "first")
    registry.register(settings, f"runs:/{rid}/model", rid, "k2", {
        **common, "accuracy": "0.958333", "test_split_seed": "7",
        "challenged_version": "1", "challenged_accuracy": "0.958333"})  # fmt: skip
    registry.register(settings, f"runs:/{rid}/model", rid, "k3", {"accuracy": "0.5"})
    assert main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("*    1  accuracy 0.916667 (test split seed 12, fraction 0.4, "
                               "24 images of dataset ffffffffffff)")  # fmt: skip
    assert "(test split seed 7," in lines[1]
    assert lines[2].strip() == "champion then, version 1: accuracy 0.958333 on the same test set"
    assert "(test set not recorded)" in lines[3]
    assert main(["models", "show", "1"]) == 0
    shown = json.loads(capsys.readouterr().out)
    iso = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    assert re.fullmatch(iso, shown["created"])
    assert re.fullmatch(iso, shown["tags"]["champion_since"])


def test_summary_says_what_happened_to_the_registry(tmp_path, monkeypatch, capsys):
    from imgclf.files import atomic_write_json

    monkeypatch.setenv("IMGCLF_HOME", str(tmp_path))
    same = "identical to version 1 (same dataset, featurizer, params and code): no new version"
    atomic_write_json(tmp_path / "runs" / "r2" / "metrics.json", {
        "run_id": "r2", "gate": {"reason": "passes"}, "accuracy": 0.9, "passed_gate": True,
        "baseline": {"accuracy": 0.9, "params": {}}, "featurized_images": 0,
        "promoted_version": None,
        "champion_comparison": {"decision": "candidate 0.9 vs champion 1: promoted",
                                "registry": same},
    })  # fmt: skip
    assert main(["summary"]) == 0
    out = capsys.readouterr().out
    assert f"registry: {same}" in out and "promoted nothing" in out


def test_a_download_starts_without_spark_pandas_or_tensorflow(tmp_path):
    """Every ``imgclf`` command builds all the parsers; ``imgclf featurize`` / ``evaluate``
    contribute theirs from spark_tasks. Building them must not import what only a Spark job
    needs: the download, the CLI the attack suite runs in a subprocess per test, would pay
    for it on every call."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from imgclf.cli import main\n"
        "code = main(['download', '--dest', sys.argv[1], '--api-url', 'http://127.0.0.1:9'])\n"
        "heavy = ('pyspark', 'pandas', 'numpy', 'scipy', 'tensorflow', 'keras', 'airflow')\n"
        "print(code, sorted(m for m in heavy if m in sys.modules))\n"
    )
    env = {**os.environ, "IMGCLF_HOME": str(tmp_path / "home"), "IMGCLF_GITHUB_BACKOFF": "0"}
    # no github_default connection: parsing one is Airflow's job (imgclf.connections imports it
    # then); a session fixture may have left one in this worker's environment
    env.pop("AIRFLOW_CONN_GITHUB_DEFAULT", None)
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "d")], env=env,
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert out.stdout.strip().splitlines()[-1] == "1 []", out.stdout + out.stderr[-2000:]
