"""imgclf.settings: the environment read once, bad values named, the data-root layout."""

import pytest

from imgclf.settings import PROJECT_ROOT, Settings, safe_name


def test_run_ids_become_hadoop_safe_folder_names():
    assert safe_name("manual__2026-11-27T23:33:27.230092+00:00") == (
        "manual__2026-11-27T23_33_27.230092_00_00"
    )
    assert safe_name("scheduled__a/b") == "scheduled__a_b"
    for bad in ("", "   ", "::"):
        with pytest.raises(ValueError, match="run id"):
            safe_name(bad)


def test_defaults_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv("IMGCLF_HOME", raising=False)
    assert Settings.from_env().home == PROJECT_ROOT / "var"
    monkeypatch.setenv("IMGCLF_HOME", str(tmp_path))
    s = Settings.from_env()
    assert s.home == tmp_path
    assert s.run_dir("a:b") == tmp_path / "runs" / "a_b"
    assert s.manifest_path == tmp_path / "raw" / "manifest.json"


def test_the_cache_is_under_the_data_root_unless_set_apart(monkeypatch, tmp_path):
    """Derived files may live apart (``IMGCLF_CACHE_DIR``): data roots that set the same one
    convert each model once between them."""
    monkeypatch.setenv("IMGCLF_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("IMGCLF_CACHE_DIR", raising=False)
    assert Settings.from_env().cache_dir == tmp_path / "home" / "cache"
    monkeypatch.setenv("IMGCLF_CACHE_DIR", str(tmp_path / "shared" / ".." / "cache"))
    s = Settings.from_env()
    assert s.cache_dir == tmp_path / "cache" and s.home == tmp_path / "home"


@pytest.mark.parametrize("root", ["/data/shoot[2]", "/data/a{b,c}", "/data/x*", "/data/c:d"])
def test_a_data_root_spark_would_misread_is_refused_naming_it(monkeypatch, root):
    monkeypatch.setenv("IMGCLF_HOME", root)
    with pytest.raises(ValueError, match=r"^data root '/data/.*' \(IMGCLF_HOME.* set IMGCLF_HOME"):
        Settings.from_env()
    monkeypatch.setenv("IMGCLF_HOME", "/data/shoot 2 #1 %é")
    assert Settings.from_env().home.name == "shoot 2 #1 %é"


def test_bad_env_integer_names_the_variable(monkeypatch):
    monkeypatch.setenv("IMGCLF_DOWNLOAD_WORKERS", "many")
    with pytest.raises(ValueError, match="IMGCLF_DOWNLOAD_WORKERS"):
        Settings.from_env()


def test_github_backoff_from_env_reaches_the_client(monkeypatch):
    from imgclf.github import GitHubClient

    monkeypatch.delenv("IMGCLF_GITHUB_BACKOFF", raising=False)
    assert Settings.from_env().github_backoff == 0.5
    monkeypatch.setenv("IMGCLF_GITHUB_BACKOFF", "0.05")
    monkeypatch.setenv("IMGCLF_MAX_FILE_BYTES", "1234")
    client = GitHubClient.from_settings(Settings.from_env(), "http://127.0.0.1:1", None)
    assert (client.backoff, client.max_file_bytes) == (0.05, 1234)
    for bad in ("soon", "-1", "3600"):
        monkeypatch.setenv("IMGCLF_GITHUB_BACKOFF", bad)
        with pytest.raises(ValueError, match="IMGCLF_GITHUB_BACKOFF"):
            Settings.from_env()


def test_the_remotes_deadlines_come_from_the_environment_within_bounds(monkeypatch):
    from imgclf.github import GitHubClient

    for var in ("IMGCLF_GITHUB_GRACE", "IMGCLF_GITHUB_MIN_RATE", "IMGCLF_GITHUB_DEADLINE"):
        monkeypatch.delenv(var, raising=False)
    s = Settings.from_env()
    assert (s.github_grace, s.github_min_rate, s.github_deadline) == (30.0, 8192.0, 600.0)
    monkeypatch.setenv("IMGCLF_GITHUB_GRACE", "2.5")
    monkeypatch.setenv("IMGCLF_GITHUB_MIN_RATE", "100")
    monkeypatch.setenv("IMGCLF_GITHUB_DEADLINE", "60")
    limits = GitHubClient.from_settings(Settings.from_env(), "http://127.0.0.1:1", None).watch
    assert (limits.limits.grace, limits.limits.min_rate, limits.limits.deadline) == (2.5, 100, 60)
    for var, bad in (("IMGCLF_GITHUB_GRACE", "0"), ("IMGCLF_GITHUB_MIN_RATE", "fast"),
                     ("IMGCLF_GITHUB_DEADLINE", "-1")):  # fmt: skip
        monkeypatch.setenv(var, bad)
        with pytest.raises(ValueError, match=var):
            Settings.from_env()
        monkeypatch.setenv(var, "5")
