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
