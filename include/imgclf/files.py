"""Durable file writes: the one atomic-write helper of the project (write, fsync, rename)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    """Make a rename or new entry in ``path`` durable (POSIX: fsync the directory)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


class LockError(OSError):
    """A lock file that cannot be used as one (a symlink, not a regular file), or a lock held
    by another process past the wait allowed. The message says which, and who holds it."""


def _open_lock(path: Path) -> int:
    """``path`` opened for locking, created if need be, never through a symlink: a ``.lock``
    planted as a symlink would otherwise have its target opened (and written) instead."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LockError(f"lock file {path} is a symbolic link: refusing to use it") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LockError(f"lock file {path} is not a regular file: refusing to use it")
    return fd


def _holder(fd: int) -> str:
    """What the lock's holder wrote into it (``pid N on HOST since TIME``), shown escaped."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return repr(text)[1:-1] if text else "a process that wrote nothing into it"


@contextlib.contextmanager
def locked(
    path: Path,
    *,
    wait: float | None = None,
    on_wait: Callable[[str], None] | None = None,
    poll: float = 0.2,
) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if need be) for the block: one writer
    at a time across processes on this machine.

    The holder writes ``pid N on HOST since TIME`` into the file. If another process holds it,
    ``on_wait(holder)`` is called at once, then the lock is retried every ``poll`` seconds for at
    most ``wait`` seconds (``None``: for as long as it takes), then ``LockError`` naming the
    holder. ``path`` is never followed if it is a symlink (``LockError``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _open_lock(path)
    try:
        if not _try_lock(fd):
            holder = _holder(fd)
            if on_wait is not None:
                on_wait(holder)
            deadline = None if wait is None else time.monotonic() + wait
            while not _try_lock(fd):
                if deadline is not None and time.monotonic() >= deadline:
                    raise LockError(
                        f"gave up after {wait:g} s waiting for {path}, held by {_holder(fd)}"
                    )
                time.sleep(poll)
        try:
            os.ftruncate(fd, 0)
            since = datetime.now(UTC).isoformat(timespec="seconds")
            os.pwrite(
                fd, f"pid {os.getpid()} on {socket.gethostname()} since {since}\n".encode(), 0
            )
        except OSError:  # who holds it is for messages only
            pass
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
