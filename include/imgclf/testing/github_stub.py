"""A local stand-in for the parts of GitHub the downloader uses, for tests and offline runs.

It serves a folder of files as if it were ``<prefix>/`` of ``<repo>`` at ``<ref>``:

- ``GET /repos/{owner}/{repo}/contents/{path}?ref=REF``: a JSON list (folder) or object (file)
  with ``name``, ``path``, ``sha`` (the real git blob / tree SHA-1), ``size``, ``type``,
  ``download_url``, ``url``, ``git_url``, ``html_url`` and ``_links``, like GitHub;
- ``GET /repos/{owner}/{repo}/git/trees/{tree_sha}``: the Git Trees API for one folder;
- ``GET /raw/{owner}/{repo}/{ref}/{path}``: the bytes, as raw.githubusercontent.com serves them;
- 404s with GitHub's JSON body, ``X-RateLimit-*`` headers on API answers.

Faults are scripted per request path (regular expression) and served in order, one per
matching request, before the path is served normally: ``500``/``502``/``503`` (a status),
``reset`` (the connection dropped mid-body), ``short`` (fewer bytes than Content-Length),
``garbage`` (other bytes, same length), ``html`` (an HTML error page with status 200),
``ratelimit`` (403, remaining 0, reset in ``ratelimit_reset`` seconds) and ``retry-after``
(429 with ``Retry-After: 1``). Only 127.0.0.1 is listened on, unless ``host`` says otherwise
(the deployment test runs it as a service on its own Docker network: ``public_url`` is then the
base URL the other containers reach it at, used in the ``download_url`` of every entry).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from imgclf.github import git_blob_sha as blob_sha

FAULTS = ("500", "502", "503", "reset", "short", "garbage", "html", "ratelimit", "retry-after")


def tree_sha(folder: Path, found: dict[str, Path] | None = None) -> str:
    """The git tree SHA-1 of ``folder`` (mode, name and child SHA of each entry, git's order).

    ``found``, when given, collects ``{tree SHA: folder}`` for ``folder`` and every folder
    below it, each file read once.
    """
    entries = []
    with os.scandir(folder) as children:
        for child in children:
            if child.is_dir():
                sha = tree_sha(folder / child.name, found)
                entries.append((child.name + "/", b"40000 " + child.name.encode(), sha))
            elif child.is_file():
                with open(child.path, "rb") as fh:
                    sha = blob_sha(fh.read())
                entries.append((child.name, b"100644 " + child.name.encode(), sha))
    body = b"".join(head + b"\x00" + bytes.fromhex(sha) for _, head, sha in sorted(entries))
    sha = hashlib.sha1(b"tree %d\x00" % len(body) + body, usedforsecurity=False).hexdigest()
    if found is not None:
        found.setdefault(sha, folder)
    return sha


@dataclass
class StubState:
    root: Path
    repo: str
    ref: str
    prefix: str
    faults: list[tuple[re.Pattern, deque]] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    ratelimit_reset: float = 2.0
    remaining: int = 5000
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_fault(self, path: str) -> str | None:
        with self.lock:
            for pattern, queue in self.faults:
                if queue and pattern.search(path):
                    return queue.popleft()
        return None


class _Handler(BaseHTTPRequestHandler):
    server_version = "GitHub.com"
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as web servers set it: with Nagle's algorithm a body written after its
    # headers waits for the client's delayed ACK (40 ms on Linux), on every keep-alive request
    disable_nagle_algorithm = True

    @property
    def state(self) -> StubState:
        return self.server.state  # type: ignore[attr-defined]

    def log_message(self, format, *args):  # quiet
        pass

    def _base(self) -> str:
        public = self.server.public_url  # type: ignore[attr-defined]
        if public:
            return public
        host, port = self.server.server_address[:2]  # type: ignore[index,str-unpack]
        return f"http://{host}:{port}"

    def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _rate_headers(self) -> dict:
        with self.state.lock:
            self.state.remaining = max(0, self.state.remaining - 1)
            remaining = self.state.remaining
        return {
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(int(time.time()) + 3600),
            "X-RateLimit-Used": str(5000 - remaining),
            "X-RateLimit-Resource": "core",
        }

    def _json(self, status: int, data) -> None:
        body = json.dumps(data, indent=2).encode()
        self._send(status, body, "application/json; charset=utf-8", self._rate_headers())

    def _not_found(self) -> None:
        self._json(
            404,
            {
                "message": "Not Found",
                "documentation_url": "https://docs.github.com/rest",
                "status": "404",
            },
        )

    def _fault(self, fault: str, payload: bytes) -> None:
        if fault in ("500", "502", "503"):
            self._send(int(fault), b'{"message":"Server Error"}', "application/json")
        elif fault == "ratelimit":
            reset = int(time.time() + self.state.ratelimit_reset + 0.999)
            self._send(
                403,
                b'{"message":"API rate limit exceeded for 127.0.0.1."}',
                "application/json",
                {
                    "X-RateLimit-Limit": "60",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(reset),
                },
            )
        elif fault == "retry-after":
            self._send(
                429, b'{"message":"secondary rate limit"}', "application/json", {"Retry-After": "1"}
            )
        elif fault == "html":
            self._send(200, b"<html><body><h1>Unicorn! 503</h1></body></html>", "text/html")
        elif fault == "garbage":
            self._send(200, bytes(reversed(payload)) or b"x", "application/octet-stream")
        elif fault in ("reset", "short"):
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            if fault == "reset":  # RST instead of FIN
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
            self.close_connection = True
        else:
            raise ValueError(f"unknown fault {fault!r}")

    def _local(self, repo_path: str) -> Path | None:
        prefix = self.state.prefix.strip("/")
        repo_path = repo_path.strip("/")
        if repo_path == prefix:
            rel = ""
        elif repo_path.startswith(prefix + "/"):
            rel = repo_path[len(prefix) + 1 :]
        else:
            return None
        target = (self.state.root / rel).resolve()
        root = self.state.root.resolve()
        if target != root and root not in target.parents:
            return None
        return target if target.exists() else None

    def _entry(self, repo_path: str, local: Path) -> dict:
        s = self.state
        base = self._base()
        api = f"{base}/repos/{s.repo}/contents/{repo_path}?ref={s.ref}"
        html = f"{base}/{s.repo}/blob/{s.ref}/{repo_path}"
        if local.is_dir():
            sha = tree_sha(local)
            git = f"{base}/repos/{s.repo}/git/trees/{sha}"
            return {
                "name": local.name,
                "path": repo_path,
                "sha": sha,
                "size": 0,
                "url": api,
                "html_url": html,
                "git_url": git,
                "download_url": None,
                "type": "dir",
                "_links": {"self": api, "git": git, "html": html},
            }
        data = local.read_bytes()
        sha = blob_sha(data)
        git = f"{base}/repos/{s.repo}/git/blobs/{sha}"
        raw = f"{base}/raw/{s.repo}/{s.ref}/{quote(repo_path)}"  # as GitHub: %23 for "#"
        return {
            "name": local.name,
            "path": repo_path,
            "sha": sha,
            "size": len(data),
            "url": api,
            "html_url": html,
            "git_url": git,
            "download_url": raw,
            "type": "file",
            "_links": {"self": api, "git": git, "html": html},
        }

    def do_GET(self):
        s = self.state
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query)
        with s.lock:
            s.requests.append(
                {"path": path, "query": parts.query, "headers": dict(self.headers.items())}
            )
        fault = s.next_fault(path)
        if fault is not None:
            payload = b""
            m = re.match(rf"^/raw/{re.escape(s.repo)}/[^/]+/(.+)$", path)
            if m and (local := self._local(m.group(1))) is not None and local.is_file():
                payload = local.read_bytes()
            return self._fault(fault, payload)

        m = re.match(r"^/repos/([^/]+/[^/]+)/contents/?(.*)$", path)
        if m:
            repo, repo_path = m.group(1), m.group(2).strip("/")
            ref = query.get("ref", [s.ref])[0]
            if repo != s.repo:
                return self._not_found()
            if ref != s.ref:
                return self._json(
                    404,
                    {
                        "message": f"No commit found for the ref {ref}",
                        "documentation_url": "https://docs.github.com/rest",
                        "status": "404",
                    },
                )
            local = self._local(repo_path)
            if local is None:
                return self._not_found()
            if local.is_dir():
                entries = [
                    self._entry(f"{repo_path}/{c.name}", c)
                    for c in sorted(local.iterdir(), key=lambda p: p.name)
                ]
                return self._json(200, entries)
            return self._json(200, self._entry(repo_path, local))

        m = re.match(r"^/repos/([^/]+/[^/]+)/git/trees/([0-9a-f]{40})$", path)
        if m:
            if m.group(1) != s.repo:
                return self._not_found()
            found = {}
            tree_sha(s.root, found)  # every folder's tree SHA, in one walk
            folder = found.get(m.group(2))
            if folder is None:
                return self._not_found()
            tree = []
            for c in sorted(folder.iterdir(), key=lambda p: p.name):
                if c.is_dir():
                    tree.append(
                        {"path": c.name, "mode": "040000", "type": "tree", "sha": tree_sha(c)}
                    )
                else:
                    data = c.read_bytes()
                    tree.append(
                        {
                            "path": c.name,
                            "mode": "100644",
                            "type": "blob",
                            "sha": blob_sha(data),
                            "size": len(data),
                        }
                    )
            return self._json(200, {"sha": m.group(2), "tree": tree, "truncated": False})

        m = re.match(r"^/raw/([^/]+/[^/]+)/([^/]+)/(.+)$", path)
        if m:
            repo, ref, repo_path = m.groups()
            local = self._local(repo_path) if (repo, ref) == (s.repo, s.ref) else None
            if local is None or not local.is_file():
                return self._send(404, b"404: Not Found", "text/plain; charset=utf-8")
            data = local.read_bytes()
            return self._send(
                200, data, "application/octet-stream", {"ETag": f'"{blob_sha(data)}"'}
            )
        return self._not_found()


class GitHubStub:
    """Run the stand-in on 127.0.0.1 in a background thread (a context manager)."""

    def __init__(
        self,
        root: str | Path,
        *,
        repo: str = "asherif844/ApacheSparkDeepLearningCookbook",
        ref: str = "master",
        prefix: str = "CH13/football",
        port: int = 0,
        host: str = "127.0.0.1",
        public_url: str = "",
    ):
        self.state = StubState(Path(root), repo, ref, prefix.strip("/"))
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._server.state = self.state  # type: ignore[attr-defined]
        self._server.public_url = public_url.rstrip("/")  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server.public_url:  # type: ignore[attr-defined]
            return self._server.public_url  # type: ignore[attr-defined]
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def add_faults(self, pattern: str, faults: list[str]) -> None:
        bad = [f for f in faults if f not in FAULTS]
        if bad:
            raise ValueError(f"unknown faults {bad}; known are {FAULTS}")
        with self.state.lock:
            self.state.faults.append((re.compile(pattern), deque(faults)))

    @property
    def requests(self) -> list[dict]:
        with self.state.lock:
            return list(self.state.requests)

    def start(self) -> GitHubStub:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def __enter__(self) -> GitHubStub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
