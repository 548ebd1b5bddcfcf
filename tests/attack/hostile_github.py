"""A hostile, fully scriptable stand-in for GitHub's REST contents API and its raw host.

Independent of ``imgclf`` (it imports nothing from it), so the attack tests judge the
``imgclf download`` command from the outside, whatever its internals are.

- ``HostileServer``: a ``ThreadingHTTPServer`` on 127.0.0.1 (or 127.0.0.2, the "other host"),
  daemon threads, used as a context manager. Every request is recorded with its headers
  (``requests``); each path answers whatever a test scripted (``route``), anything else gets
  ``default`` (a GitHub-style 404 unless changed). Answers are ``Reply`` objects or callables
  ``Request -> Reply`` (to reflect a request's headers back, for instance).
- ``Reply.fixed`` / ``Reply.json`` / ``Reply.redirect``: one answer with a Content-Length;
  ``Reply.streamed``: a large known body written in chunks; ``Reply.endless``: a body that never
  ends (chunked), bounded here by ``max_bytes`` and ``max_seconds``, stopping as soon as the
  client goes away. Streamed bodies leave a ``Stream`` record (bytes written, whether the
  client disconnected) in ``streams``.
- ``Reply.trickle``: headers at once, then the body a few bytes at a time, one piece every
  ``interval`` seconds; ``Reply.stall``: accepts the request and never answers (or sends its
  headers and then nothing); ``Reply.raw``: exact bytes on the wire (duplicate headers, odd
  framing), optionally one byte every ``interval`` seconds. All bounded by ``max_seconds`` and
  left as soon as the client goes away.
- ``FakeRepo``: the GitHub shape on top of one server: listing entries with real git blob
  SHA-1s (``entry``), listings (``set_listing``, any JSON at all), raw files.

Every loop here is bounded (bytes, seconds, or the server stopping).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

ALLOWED_HOSTS = ("127.0.0.1", "127.0.0.2")
GIB = 1 << 30


def git_blob_sha(data: bytes) -> str:
    """The SHA-1 git gives a blob: ``sha1(b"blob <len>\\0" + data)``."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    server: str  # base URL of the server that received it
    method: str
    target: str  # the request target as sent (path and query, still percent-encoded)
    path: str  # the target's path, percent-decoded
    query: str
    headers: tuple[tuple[str, str], ...]
    client: str
    time: float

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def text(self) -> str:
        """Everything the client chose to send: request line and headers, with any Basic
        credentials decoded too (so a token hidden in base64 is still found)."""
        lines = [f"{self.method} {self.target}"]
        for k, v in self.headers:
            lines.append(f"{k}: {v}")
            scheme, _, cred = v.strip().partition(" ")
            if scheme.lower() == "basic" and cred:
                with contextlib.suppress(binascii.Error, ValueError):
                    lines.append(base64.b64decode(cred.strip(), validate=False).decode("latin-1"))
        return "\n".join(lines)


@dataclass
class Stream:
    """What the server saw while writing one streamed body."""

    path: str
    sent: int = 0  # bytes of body written into the socket (kernel buffers included)
    disconnected: bool = False  # the client closed or reset the connection
    stalled: bool = False  # a write blocked for longer than the socket timeout
    capped: bool = False  # the server's own bound (bytes or seconds) ended it
    seconds: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class Reply:
    """One scripted answer. Build with the class methods."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    kind: str = "fixed"  # fixed | streamed | endless | trickle | stall | raw
    chunk_size: int = 64 * 1024
    max_bytes: int = 256 * 1024 * 1024
    max_seconds: float = 60.0
    interval: float = 0.0  # trickle / raw: seconds between pieces

    @classmethod
    def fixed(cls, status: int = 200, body: bytes | str = b"", headers=None) -> Reply:
        if isinstance(body, str):
            body = body.encode()
        return cls(status=status, body=body, headers=dict(headers or {}))

    @classmethod
    def json(cls, obj: Any, status: int = 200, headers=None) -> Reply:
        h = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        return cls(status=status, body=json.dumps(obj).encode(), headers=h)

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Reply:
        return cls(status=status, body=b"", headers={"Location": location})

    @classmethod
    def streamed(cls, body: bytes, chunk_size: int = 64 * 1024, headers=None) -> Reply:
        """A known body with its true Content-Length, written chunk by chunk (recorded)."""
        return cls(body=body, kind="streamed", chunk_size=chunk_size, headers=dict(headers or {}))

    @classmethod
    def endless(
        cls,
        chunk: bytes = b"\xff" * (64 * 1024),
        max_bytes: int = 256 * 1024 * 1024,
        max_seconds: float = 60.0,
        headers=None,
    ) -> Reply:
        """200, chunked, and the chunks never stop (until the client leaves, or the bounds)."""
        max_bytes = min(max_bytes, 2 * GIB)
        max_seconds = min(max_seconds, 60.0)
        return cls(
            body=chunk,
            kind="endless",
            max_bytes=max_bytes,
            max_seconds=max_seconds,
            headers=dict(headers or {}),
        )

    @classmethod
    def trickle(
        cls, body: bytes, interval: float = 1.0, piece: int = 1, max_seconds: float = 60.0,
        headers=None,
    ) -> Reply:  # fmt: skip
        """200 with the body's true Content-Length, then ``piece`` bytes every ``interval``."""
        return cls(body=body, kind="trickle", chunk_size=piece, interval=interval,
                   max_seconds=min(max_seconds, 300.0), headers=dict(headers or {}))  # fmt: skip

    @classmethod
    def stall(cls, max_seconds: float = 60.0, headers: dict[str, str] | None = None) -> Reply:
        """Read the request, then send nothing; with ``headers``, send a 200 with those
        headers (a Content-Length among them, say) and then no body."""
        return cls(kind="stall", headers=dict(headers or {}), max_bytes=int(headers is not None),
                   max_seconds=min(max_seconds, 300.0))  # fmt: skip

    @classmethod
    def raw(cls, data: bytes, interval: float = 0.0, max_seconds: float = 60.0) -> Reply:
        """Exactly ``data`` on the wire (status line, headers, body), then close; one byte
        every ``interval`` seconds when it is given."""
        return cls(body=data, kind="raw", interval=interval, max_seconds=min(max_seconds, 300.0))


Answer = Reply | Callable[[Request], Reply]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "GitHub.com"
    sys_version = ""
    timeout = 10  # every blocking read/write on the connection is bounded

    def do_GET(self) -> None:
        self.server.owner._handle(self)  # type: ignore[attr-defined]

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


class HostileServer:
    """A scriptable HTTP server that records everything it is sent."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        if host not in ALLOWED_HOSTS:
            raise ValueError(f"only {ALLOWED_HOSTS} are listened on, not {host!r}")
        self.host = host
        self._httpd = _Server((host, port), _Handler)
        self._httpd.owner = self  # type: ignore[attr-defined]
        self.port = self._httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self.routes: dict[str, Answer] = {}
        self.default: Answer = lambda req: Reply.json(
            {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}, 404
        )
        self._requests: list[Request] = []
        self._streams: list[Stream] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> HostileServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()  # ends every streaming loop at its next chunk
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- scripting ------------------------------------------------------------------------
    def route(self, path: str, answer: Answer) -> None:
        """Answer requests for ``path`` (percent-decoded, without query) with ``answer``."""
        with self._lock:
            self.routes[path] = answer

    def clear_log(self) -> None:
        with self._lock:
            self._requests.clear()
            self._streams.clear()

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    @property
    def streams(self) -> list[Stream]:
        with self._lock:
            return list(self._streams)

    def requests_containing(self, secret: str) -> list[Request]:
        return [r for r in self.requests if secret in r.text()]

    # --- serving --------------------------------------------------------------------------
    def _handle(self, h: _Handler) -> None:
        parts = urlsplit(h.path)
        req = Request(
            server=self.url,
            method=h.command,
            target=h.path,
            path=unquote(parts.path),
            query=parts.query,
            headers=tuple((k, v) for k, v in h.headers.items()),
            client=f"{h.client_address[0]}:{h.client_address[1]}",
            time=time.time(),
        )
        # drain a request body, if any (bounded), so keep-alive stays in step
        try:
            length = min(int(h.headers.get("Content-Length") or 0), 1 << 20)
        except ValueError:
            length = 0
        if length:
            h.rfile.read(length)
        with self._lock:
            self._requests.append(req)
            answer = self.routes.get(req.path, self.default)
        reply = answer if isinstance(answer, Reply) else answer(req)
        try:
            if reply.kind == "endless":
                self._send_endless(h, req, reply)
            elif reply.kind in ("trickle", "stall", "raw"):
                self._send_slowly(h, req, reply)
            elif reply.kind == "streamed":
                self._send_streamed(h, req, reply)
            else:
                self._send_fixed(h, req, reply)
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            h.close_connection = True

    @staticmethod
    def _head(h: _Handler, status: int, headers: dict[str, str]) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)

    def _send_fixed(self, h: _Handler, req: Request, reply: Reply) -> None:
        self._head(h, reply.status, reply.headers)
        h.send_header("Content-Length", str(len(reply.body)))
        h.end_headers()
        if req.method != "HEAD":
            h.wfile.write(reply.body)

    def _stream(self, req: Request) -> Stream:
        s = Stream(path=req.path)
        with self._lock:
            self._streams.append(s)
        return s

    def _send_streamed(self, h: _Handler, req: Request, reply: Reply) -> None:
        s = self._stream(req)
        started = time.monotonic()
        try:
            self._head(h, reply.status, reply.headers)
            h.send_header("Content-Length", str(len(reply.body)))
            h.end_headers()
            view = memoryview(reply.body)
            for off in range(0, len(view), reply.chunk_size):  # bounded by the body
                if self._stopping.is_set():
                    s.capped = True
                    break
                piece = view[off : off + reply.chunk_size]
                h.wfile.write(piece)
                s.sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            s.disconnected = True
        except TimeoutError:
            s.stalled = True
        finally:
            h.close_connection = True
            s.seconds = time.monotonic() - started
            s.done.set()

    def _send_endless(self, h: _Handler, req: Request, reply: Reply) -> None:
        s = self._stream(req)
        started = time.monotonic()
        deadline = started + reply.max_seconds
        chunk = reply.body or b"\xff" * 65536
        framed = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        try:
            self._head(h, 200, {"Content-Type": "image/jpeg", **reply.headers})
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            h.wfile.flush()
            while True:  # bounded: max_bytes, deadline, server stopping
                if s.sent >= reply.max_bytes or time.monotonic() >= deadline:
                    s.capped = True
                    break
                if self._stopping.is_set():
                    break
                h.wfile.write(framed)
                s.sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            s.disconnected = True
        except TimeoutError:
            s.stalled = True
        finally:
            h.close_connection = True  # no terminating chunk: the body never "ends"
            s.seconds = time.monotonic() - started
            s.done.set()

    def _client_left(self, h: _Handler, wait: float) -> bool:
        """Whether the client closed its end, waiting up to ``wait`` seconds to see."""
        ready, _, _ = select.select([h.connection], [], [], max(0.0, wait))
        if not ready:
            return False
        try:
            return h.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _send_slowly(self, h: _Handler, req: Request, reply: Reply) -> None:
        """trickle, stall, raw: every wait is bounded by ``max_seconds`` and the server
        stopping, and ends as soon as the client has gone."""
        s = self._stream(req)
        started = time.monotonic()
        deadline = started + reply.max_seconds
        body = reply.body if reply.kind in ("trickle", "raw") else b""
        try:
            if reply.kind == "trickle" or (reply.kind == "stall" and reply.max_bytes):
                h.send_response(200)
                for k, v in reply.headers.items():
                    h.send_header(k, v)
                if reply.kind == "trickle":
                    h.send_header("Content-Length", str(len(reply.body)))
                    h.send_header("Connection", "close")
                h.end_headers()
                h.wfile.flush()
            step = reply.chunk_size if reply.kind == "trickle" else (1 if reply.interval else 0)
            pieces = [body[i : i + step] for i in range(0, len(body), step)] if step else [body]
            for piece in pieces:  # bounded: the body's length
                if self._stopping.is_set() or time.monotonic() >= deadline:
                    s.capped = True
                    break
                h.connection.sendall(piece)
                s.sent += len(piece)
                if reply.interval and self._client_left(h, reply.interval):
                    s.disconnected = True
                    break
            if reply.kind == "stall":
                while not self._stopping.is_set() and time.monotonic() < deadline:  # bounded
                    if self._client_left(h, 0.1):
                        s.disconnected = True
                        break
                else:
                    s.capped = True
        except (BrokenPipeError, ConnectionResetError):
            s.disconnected = True
        finally:
            h.close_connection = True
            s.seconds = time.monotonic() - started
            s.done.set()


class FakeRepo:
    """GitHub's contents API and raw files for one ``owner/repo`` at one ref, on ``server``."""

    def __init__(self, server: HostileServer, repo: str = "owner/repo", ref: str = "main"):
        self.server = server
        self.repo = repo
        self.ref = ref

    def listing_path(self, folder: str) -> str:
        return f"/repos/{self.repo}/contents/{folder}"

    def raw_path(self, folder: str, name: str) -> str:
        return f"/raw/{self.repo}/{self.ref}/{folder}/{name}"

    def raw_url(self, folder: str, name: str) -> str:
        """Like GitHub: the folder path as is, the name percent-encoded (one segment)."""
        return (
            f"{self.server.url}{quote(f'/raw/{self.repo}/{self.ref}/{folder}/')}"
            f"{quote(name, safe='')}"
        )

    _UNSET: Any = object()

    def entry(
        self,
        folder: str,
        name: str,
        data: bytes | None,
        *,
        sha: Any = _UNSET,
        size: Any = _UNSET,
        path: Any = _UNSET,
        download_url: Any = _UNSET,
        type: str = "file",
        serve: bool = True,
        drop: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """A listing entry for ``data`` (true sha and size unless overridden); its bytes are
        served at the default raw URL unless ``serve`` is false. ``drop`` removes keys."""
        if download_url is self._UNSET:
            download_url = self.raw_url(folder, name)
        if serve and data is not None:
            self.server.route(self.raw_path(folder, name), Reply.fixed(200, data))
        e: dict[str, Any] = {
            "name": name,
            "path": f"{folder}/{name}" if path is self._UNSET else path,
            "sha": (git_blob_sha(data) if data is not None else "0" * 40)
            if sha is self._UNSET
            else sha,
            "size": (len(data) if data is not None else 0) if size is self._UNSET else size,
            "url": f"{self.server.url}/repos/{self.repo}/contents/{folder}/{quote(name)}",
            "type": type,
            "download_url": download_url,
        }
        for key in drop:
            e.pop(key, None)
        return e

    def set_listing(self, folder: str, listing: Any, status: int = 200, headers=None) -> None:
        """``GET .../contents/{folder}`` answers ``listing`` (any JSON value)."""
        self.server.route(self.listing_path(folder), Reply.json(listing, status, headers=headers))

    def set_files(self, folder: str, files: dict[str, bytes]) -> list[dict[str, Any]]:
        """An honest folder: every file listed truthfully and served."""
        entries = [self.entry(folder, name, data) for name, data in sorted(files.items())]
        self.set_listing(folder, entries)
        return entries

    def set_tree(self, folder: str, items: list[dict[str, Any]], contents_limit: int = 1000):
        """A folder too big for the contents API: its listing has ``contents_limit`` entries,
        its parent lists it as a ``dir``, and the Git Trees API answers ``items``."""
        parent, _, leaf = folder.rpartition("/")
        tree_sha = hashlib.sha1(json.dumps(items).encode(), usedforsecurity=False).hexdigest()
        filler = {"name": "x.txt", "path": f"{folder}/x.txt", "type": "file", "size": 1}
        self.set_listing(folder, [filler] * contents_limit)
        self.set_listing(parent, [{"name": leaf, "path": folder, "type": "dir", "sha": tree_sha}])
        tree = {"sha": tree_sha, "tree": items, "truncated": False}
        self.server.route(f"/repos/{self.repo}/git/trees/{tree_sha}", Reply.json(tree))

    @staticmethod
    def tree_item(name: str, data: bytes, mode: str = "100644") -> dict[str, Any]:
        """A Git Trees item (a blob) for ``data``."""
        return {"path": name, "mode": mode, "type": "blob", "sha": git_blob_sha(data),
                "size": len(data)}  # fmt: skip

    def raw_requests(self) -> list[Request]:
        return [r for r in self.server.requests if r.path.startswith("/raw/")]

    def listing_requests(self) -> list[Request]:
        prefix = f"/repos/{self.repo}/contents/"
        return [r for r in self.server.requests if r.path.startswith(prefix)]
