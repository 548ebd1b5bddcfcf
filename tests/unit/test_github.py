"""The trust boundary: names, origins, the token, unreachable remotes (real sockets on loopback)."""

from __future__ import annotations

import socket
import time

import pytest

from imgclf.github import (
    GitHubClient,
    RemoteUnreachableError,
    UntrustedListingError,
    check_name,
    origin_of,
)
from imgclf.testing.github_stub import GitHubStub


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://api.github.com", ("https", "api.github.com", 443)),
        ("HTTPS://Api.GitHub.com:443/x", ("https", "api.github.com", 443)),
        ("http://127.0.0.1:8080/raw/a", ("http", "127.0.0.1", 8080)),
        ("http://[::1]/x", ("http", "::1", 80)),
    ],
)
def test_origin_is_what_requests_connects_to(url, origin):
    assert origin_of(url) == origin


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.2:9\\@127.0.0.1:8/x.jpg", "backslash"),
        ("http://user@127.0.0.1:8/x.jpg", "user-info"),
        ("http://u:p@127.0.0.1/x.jpg", "user-info"),
        ("ftp://127.0.0.1/x.jpg", "not http or https"),
        ("file:///etc/passwd", "not http or https"),
        ("http://127.0.0.1/x y.jpg", "whitespace"),
        ("http://127.0.0.1/x\x00.jpg", "control"),
        ("http:///x.jpg", "host"),
        (None, "not a non-empty string"),
    ],
)
def test_ambiguous_urls_are_refused(url, why):
    with pytest.raises(ValueError, match=why):
        origin_of(url)


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "../x.jpg", "a/b.jpg", "..\\x.jpg", "/abs.jpg", "x\x00.jpg", "x\n.jpg",
     ".hidden.jpg", "x" * 201 + ".jpg", 7, None],
)  # fmt: skip
def test_a_name_must_be_one_safe_path_component(name):
    with pytest.raises(ValueError, match="name"):
        check_name(name)


def test_names_that_are_fine():
    for name in ("messi1.jpeg", "ronaldo 22.JPG", "Müller.png", "a..b.jpg"):
        assert check_name(name) == name


def test_the_token_goes_to_the_api_origin_and_githubs_raw_host_only():
    public = GitHubClient("https://api.github.com", token="t")
    assert public.may_send_token(("https", "raw.githubusercontent.com", 443))
    assert public.may_send_token(("https", "api.github.com", 443))
    assert not public.may_send_token(("https", "api.github.com", 8443))
    assert not public.may_send_token(("http", "api.github.com", 80))
    assert not public.may_send_token(("https", "evil.githubusercontent.com.example", 443))
    enterprise = GitHubClient("http://github.example.com/api/v3", token="t")
    assert not enterprise.may_send_token(("http", "github.example.com", 80))  # plain http
    local = GitHubClient("http://127.0.0.1:8000", token="ghp_SECRET")
    assert local.may_send_token(("http", "127.0.0.1", 8000))
    assert not local.may_send_token(("http", "127.0.0.1", 8001))
    assert not local.may_send_token(("https", "raw.githubusercontent.com", 443))
    assert "SECRET" not in repr(local)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_remote_fails_fast_in_one_line_naming_host_cause_and_remedy():
    port = _closed_port()
    client = GitHubClient(f"http://127.0.0.1:{port}", backoff=0.05)
    started = time.monotonic()
    with pytest.raises(RemoteUnreachableError) as err:
        client.list_folder("o/r", "main", "data/messi", "messi")
    message = str(err.value)
    assert time.monotonic() - started < 10
    assert "\n" not in message
    assert f"cannot reach http://127.0.0.1:{port}" in message
    assert "connection was refused" in message and "github_default" in message
    assert not err.value.retryable


def test_a_listing_entry_with_another_folders_path_is_refused(tmp_path):
    from imgclf.github.listing import Folder, _entry

    (tmp_path / "messi").mkdir()
    (tmp_path / "messi" / "a.jpg").write_bytes(b"x")
    with GitHubStub(tmp_path, repo="o/r", ref="main", prefix="data") as stub:
        client = GitHubClient(stub.url)
        entries = client._api_json(
            f"{stub.url}/repos/o/r/contents/data/messi", "x", {"ref": "main"}
        )
        where = Folder(stub.url, "o/r", "main", "data/messi", "messi", client.origins)
        entry = {**entries[0], "path": "data/ronaldo/a.jpg"}
        with pytest.raises(ValueError, match=r"path 'data/ronaldo/a\.jpg' is not data/messi/a"):
            _entry(entry, where)
        other = {**entries[0], "download_url": "http://127.0.0.1:1/raw/o/r/main/data/messi/a.jpg"}
        with pytest.raises(ValueError, match="not at a trusted origin"):
            _entry(other, where)
        wrong = {**entries[0], "download_url": entries[0]["download_url"].replace("messi/a", "b")}
        with pytest.raises(ValueError, match=r"is not for data/messi/a\.jpg"):
            _entry(wrong, where)
        assert _entry(entries[0], where).name == "a.jpg"
    assert issubclass(UntrustedListingError, Exception)


@pytest.mark.parametrize(
    ("conn", "url"),
    [
        ({}, "https://api.github.com"),
        ({"conn_type": "http", "host": "http://127.0.0.1:9"}, "http://127.0.0.1:9"),
        ({"conn_type": "http", "host": "127.0.0.1", "schema": "http", "port": 9},
         "http://127.0.0.1:9"),
        ({"conn_type": "https", "host": "ghe.example.com", "schema": "api/v3"},
         "https://ghe.example.com/api/v3"),  # Airflow's reading of a URI connection
        ({"conn_type": "http", "host": "api.github.com"}, "http://api.github.com"),
    ],
)  # fmt: skip
def test_one_reading_of_the_github_connection(conn, url):
    from types import SimpleNamespace

    from imgclf.connections import endpoint

    fields = {"conn_type": None, "host": None, "schema": None, "port": None, "password": "t"}
    assert endpoint(SimpleNamespace(**{**fields, **conn})) == (url, "t")


# --- round two: deadlines, one-line errors, the Trees API's modes --------------------------------
def test_the_floor_rate_rule_solved_for_time():
    from imgclf.github import Limits

    limits = Limits(grace=30.0, min_rate=8192.0)
    assert limits.cut_after(0) == 30.0  # a stall: the grace
    assert limits.cut_after(4096) == pytest.approx(60.0)  # half the floor: twice the grace
    assert limits.cut_after(8192) == float("inf")  # at the floor: never


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("5", 5.0), ("-3", 0.0), ("inf", 366 * 86400.0), ("1e300", 366 * 86400.0), ("nan", None),
     ("soon", None), (None, None), ("Thu, 01 Jan 1970 00:00:10 GMT", 0.0)],
)  # fmt: skip
def test_a_retry_after_is_read_within_a_year_or_not_at_all(value, seconds):
    from imgclf.github.transport import parse_wait

    assert parse_wait(value, now=100.0) == seconds


@pytest.mark.parametrize(
    ("url", "why"),
    [("http://127.0.0.1:99999/x", "parse|port"), ("http://[::1/x", "parse")],
)  # fmt: skip
def test_urls_that_cannot_be_requested_are_refused_by_the_origin_check(url, why):
    with pytest.raises(ValueError, match=why):
        origin_of(url)


def _where():
    from imgclf.github.listing import Folder
    from imgclf.github.origins import Origins

    return Folder("http://127.0.0.1:9", "o/r", "main", "d/m", "m", Origins("http://127.0.0.1:9"))


def _file(name: str, sha: str = "a" * 40) -> dict:
    return {"name": name, "path": f"d/m/{name}", "sha": sha, "size": 3, "type": "file"}


def test_the_same_name_twice_is_a_listing_error():
    from imgclf.github.listing import validate

    with pytest.raises(UntrustedListingError, match=r"entry #1: 'a\.jpg' is listed twice"):
        validate([_file("a.jpg"), _file("a.jpg", "b" * 40)], _where())
    assert [f.name for f in validate([_file("b.jpg"), _file("a.jpg")], _where())] == [
        "a.jpg",
        "b.jpg",
    ]


@pytest.mark.parametrize(
    ("item", "kind"),
    [({"mode": "100644", "type": "blob"}, "file"), ({"mode": "100755", "type": "blob"}, "file"),
     ({"mode": "120000", "type": "blob"}, "symlink"), ({"mode": "040000", "type": "tree"}, "dir"),
     ({"mode": "160000", "type": "commit"}, "submodule")],
)  # fmt: skip
def test_git_trees_modes_map_to_the_contents_apis_types(item, kind):
    from imgclf.github.listing import tree_entry, validate

    entry = tree_entry({"path": "a.jpg", "sha": "a" * 40, "size": 3, **item}, "d/m", "x")
    assert entry["type"] == kind
    assert len(validate([entry], _where())) == (kind == "file")  # only files are images


def test_a_tree_blob_of_unknown_mode_fails_the_listing():
    from imgclf.github.listing import tree_entry

    with pytest.raises(UntrustedListingError, match="mode '100666'"):
        tree_entry({"path": "a.jpg", "mode": "100666", "type": "blob"}, "d/m", "x")


def test_errors_say_whether_a_retry_can_help():
    from imgclf import github as gh

    never = (gh.RemoteTooSlowError, gh.DownloadStoppedError, gh.UntrustedAnswerError,
             gh.UntrustedListingError, gh.RemoteUnreachableError, gh.NotFoundError,
             gh.RateLimitError)  # fmt: skip
    assert not any(e.retryable for e in never)  # the DAG fails these at once
    assert gh.AnswerBrokeOffError.retryable and gh.FetchError.retryable
    assert gh.DownloadStoppedError.consequence and not gh.RemoteTooSlowError.consequence


def test_an_unforeseen_exception_below_the_client_is_one_line(monkeypatch):
    import imgclf.github.client as client_module

    def broken(get_json, where):
        raise TypeError("something nobody foresaw\nsecond line")

    monkeypatch.setattr(client_module, "list_folder", broken)
    from imgclf.github import UntrustedAnswerError

    with pytest.raises(UntrustedAnswerError) as err:
        GitHubClient("http://127.0.0.1:9", token="ghp_SECRET").list_folder("o/r", "main", "d", "m")
    assert "\n" not in str(err.value) and "TypeError" in str(err.value)


def test_the_watchdog_thread_ends_when_nothing_is_in_flight():
    import threading

    from imgclf.github import Limits
    from imgclf.github.deadlines import Watch

    watch = Watch(Limits(grace=0.2, min_rate=10, deadline=5))
    with watch.download(), watch.transfer("x", "h"):
        assert any(t.name == "imgclf-watchdog" for t in threading.enumerate())
    deadline = time.monotonic() + 5
    while any(t.name == "imgclf-watchdog" for t in threading.enumerate()):  # bounded
        assert time.monotonic() < deadline, "the watchdog outlived its transfers"
        time.sleep(0.05)


def test_a_bad_github_connection_in_the_environment_is_one_line():
    from imgclf.connections import endpoint_from_env
    from imgclf.github import DownloadError

    with pytest.raises(DownloadError, match="AIRFLOW_CONN_GITHUB_DEFAULT is not a connection"):
        endpoint_from_env({"AIRFLOW_CONN_GITHUB_DEFAULT": "{not json"})


def test_an_unreachable_file_host_stops_the_download_without_fetch_retries(tmp_path, caplog):
    """The listing comes from the API; every file from a raw host that refuses connections:
    one 'cannot reach' line, no per-file attempts on top of urllib3's connection retries."""
    import logging

    from imgclf.dataset import sync_dataset
    from imgclf.github import DownloadError
    from tests.attack.hostile_github import FakeRepo, HostileServer

    caplog.set_level(logging.WARNING)
    port = _closed_port()
    raw = f"http://127.0.0.1:{port}/raw/{{repo}}/{{ref}}/{{path}}"
    with HostileServer() as api:
        gh = FakeRepo(api)
        entries = gh.set_files("d/m", {f"m{i}.jpg": bytes([i]) * 10 for i in range(6)})
        gh.set_listing("d/m", [{**e, "download_url": None} for e in entries])
        client = GitHubClient(api.url, raw_url=raw, backoff=0.01)
        with pytest.raises(DownloadError) as err:
            sync_dataset(client, "owner/repo", "main", {"m": "d/m"}, tmp_path / "raw", workers=2)
    message = str(err.value)
    assert f"cannot reach http://127.0.0.1:{port}" in message and "refused" in message
    assert not err.value.retryable and "\n" not in message
    assert "attempt 1/4" not in caplog.text  # the client did not retry what urllib3 had
