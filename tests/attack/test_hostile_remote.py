"""Black-box attacks on ``imgclf download`` from a hostile GitHub (see ``hostile_github.py``).

Each test runs the real command line in a subprocess against scripted servers on 127.0.0.1
(the API and raw host, plus a second port) and 127.0.0.2 (the "other host"), and asserts the
outcome on disk, on the wire and in the output, not only the exit code:

- success: exit 0, ``D/<class>/<name>`` are exactly the files, ``D/manifest.json`` complete;
- bad remote input: exit 1, no ``Traceback``, one ``imgclf download:`` line that names the
  offending entry (or URL / host) and the reason, nothing written for it, and ``D`` (followed
  if it is a symlink) plus ``D/manifest.json`` byte-identical to before;
- the token (``GITHUB_TOKEN``) never reaches another host or port and never reaches the output.

``D`` lives deep inside a sandbox folder that is walked before and after: nothing may appear,
change or disappear there outside ``D`` and its sibling ``D.name + ".snapshots"``.

Everything is bounded: subprocess timeouts (30 to 60 s), server-side byte and time caps.
Images are made with Pillow at test time.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.attack.hostile_github import FakeRepo, HostileServer, Reply, git_blob_sha

TOKEN = "ghp_SECRET123hostileTOKEN"
LEAK = "SECRET123"  # any part of the token that shows up is a leak
MIB = 1024 * 1024
MESSI, RONALDO = "data/messi", "data/ronaldo"
CLASSES = [f"messi={MESSI}", f"ronaldo={RONALDO}"]
ABSOLUTE = "<absolute path into the sandbox>"  # placeholder, replaced per test


def _imgclf() -> list[str]:
    script = Path(sys.executable).with_name("imgclf")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from imgclf.cli import main; sys.exit(main())"]


# --- images (Pillow, at test time) ---------------------------------------------------------
def _jpeg(color: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGB", size, color)
    img.paste((255, 255, 255), (2, 2, 6, 5))
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _png(color: tuple[int, int, int], size: tuple[int, int] = (12, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _noise_png(side: int, seed: int) -> bytes:
    """A valid PNG of random pixels: about 3 * side**2 bytes (noise does not compress)."""
    rnd = __import__("random").Random(seed)
    img = Image.frombytes("RGB", (side, side), rnd.randbytes(side * side * 3))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@dataclass(frozen=True)
class Pics:
    messi: dict[str, bytes]
    ronaldo: dict[str, bytes]
    extra: bytes  # a fourth, valid Messi image
    poison: tuple[bytes, ...]  # valid images that must never land anywhere


@pytest.fixture(scope="module")
def pics() -> Pics:
    messi = {f"messi{i}.jpg": _jpeg((200, 40 + 40 * i, 30), (20 + i, 16)) for i in range(1, 4)}
    ronaldo = {f"ronaldo{i}.jpg": _jpeg((30, 40 + 40 * i, 200), (18, 14 + i)) for i in range(1, 4)}
    poison = tuple(_png((10, 200, 20 * i)) for i in range(4))
    return Pics(messi, ronaldo, _jpeg((250, 250, 10), (16, 16)), poison)


# --- running the command -------------------------------------------------------------------
@dataclass
class Run:
    args: list[str]
    rc: int
    out: str
    err: str
    seconds: float
    maxrss_kib: int  # ru_maxrss from wait4: an upper bound (Linux counts the forking parent too)
    hwm_kib: int  # VmHWM of the child's own program, polled every 20 ms until it exits
    timed_out: bool

    @property
    def peak_rss_kib(self) -> int:
        """The child's peak RSS: its polled VmHWM (exact up to its last 20 ms), else wait4's."""
        return self.hwm_kib or self.maxrss_kib

    def error_lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.startswith("imgclf download:")]

    def describe(self) -> str:
        tail = "\n".join(self.err.splitlines()[-25:])
        return (
            f"\n[imgclf {' '.join(self.args[:1])} ...] rc={self.rc} timed_out={self.timed_out} "
            f"{self.seconds:.1f}s peak RSS={self.peak_rss_kib // 1024} MiB\n"
            f"--- stdout (tail) ---\n{self.out[-1500:]}\n--- stderr (tail) ---\n{tail[-4000:]}"
        )


_DROP_ENV = (
    "AIRFLOW_CONN_GITHUB_DEFAULT",
    "GH_TOKEN",
    "GITHUB_TOKEN",
    "IMGCLF_MAX_FILE_BYTES",
    "IMGCLF_MAX_IMAGE_PIXELS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


def _vm_hwm_kib(pid: int) -> int:
    """The high-water RSS of ``pid``'s current program (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run_cli(args: list[str], *, home: Path, extra_env=None, timeout: float = 30.0) -> Run:
    """Run ``imgclf <args>``; kill it at ``timeout``; its peak RSS.

    ``ru_maxrss`` from ``wait4`` alone is not enough on Linux: exec records the forking
    parent's high-water RSS into the child's, so a big pytest process would inflate it.
    VmHWM belongs to the program after exec; it only grows, so polling it is exact but for
    the last poll interval."""
    env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    env.update(
        GITHUB_TOKEN=TOKEN,
        IMGCLF_HOME=str(home),
        NO_PROXY="127.0.0.1,127.0.0.2,localhost",
        no_proxy="127.0.0.1,127.0.0.2,localhost",
        PYTHONUNBUFFERED="1",
        # retries at once: these tests count attempts, they need not sit out the real backoff
        # (the unreachable-remote test sets a small one, to show it backs off and still ends)
        IMGCLF_GITHUB_BACKOFF="0.01",
    )
    env.update(extra_env or {})
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        started = time.monotonic()
        proc = subprocess.Popen(
            [*_imgclf(), *args],
            stdin=subprocess.DEVNULL,
            stdout=out_f,
            stderr=err_f,
            env=env,
            cwd=home,
        )
        timed_out = False
        hwm = 0
        deadline = started + timeout
        while True:  # bounded by the deadline
            hwm = max(hwm, _vm_hwm_kib(proc.pid))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() >= deadline:
                timed_out = True
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        seconds = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        out = out_f.read().decode("utf-8", "replace")
        err = err_f.read().decode("utf-8", "replace")
    return Run(args, proc.returncode, out, err, seconds, usage.ru_maxrss, hwm, timed_out)


# --- the file system, before and after ---------------------------------------------------
def _entry_value(p: Path) -> bytes:
    if p.is_symlink():
        return b"<symlink> " + os.readlink(p).encode("utf-8", "surrogateescape")
    if p.is_dir():
        return b"<dir>"
    if p.is_file():
        return p.read_bytes()
    return b"<other>"


def dest_tree(dest: Path) -> dict[str, bytes]:
    """relative path -> bytes of every file under ``dest`` (followed if it is a symlink)."""
    real = Path(os.path.realpath(dest))
    out: dict[str, bytes] = {}
    if not real.is_dir():
        return out
    for root, dirs, files in os.walk(real):  # inner symlinks are recorded, not followed
        for name in dirs + files:
            p = Path(root, name)
            if p.is_symlink() or name in files:
                out[p.relative_to(real).as_posix()] = _entry_value(p)
    return out


def outside_tree(sandbox: Path, dest: Path) -> dict[str, bytes]:
    """Everything in the sandbox except ``dest`` and ``dest.name + '.snapshots'`` next to it."""
    excluded = {dest, dest.with_name(dest.name + ".snapshots")}
    out: dict[str, bytes] = {}
    for root, dirs, files in os.walk(sandbox):
        here = Path(root)
        dirs[:] = [d for d in dirs if here / d not in excluded]
        for name in dirs + files:
            p = here / name
            if p in excluded:
                continue
            out[p.relative_to(sandbox).as_posix()] = _entry_value(p)
    return out


def _diff(before: dict[str, bytes], after: dict[str, bytes]) -> str:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    parts = []
    for label, keys in (("added", added), ("removed", removed), ("changed", changed)):
        if keys:
            parts.append(f"{label}: {keys[:12]}{' ...' if len(keys) > 12 else ''}")
    return "; ".join(parts)


def _all_files(root: Path) -> dict[str, bytes]:
    out = {}
    for r, _dirs, files in os.walk(root):
        for name in files:
            p = Path(r, name)
            if p.is_file() and not p.is_symlink():
                out[str(p)] = p.read_bytes()
    return out


# --- messages -------------------------------------------------------------------------------
def _forms(name: str) -> set[str]:
    return {name, repr(name)[1:-1], json.dumps(name)[1:-1]}


def _shown_truncated(line: str, form: str, keep: int = 32) -> bool:
    """``line`` shows at least ``keep`` leading characters of ``form`` then an ellipsis (a long
    hostile name cut short so that it cannot flood the log still names the entry)."""
    if len(form) <= keep:
        return False
    start = line.find(form[:keep])
    while start >= 0:  # bounded: each pass moves right
        rest = line[start:]
        n = next((i for i, (a, b) in enumerate(zip(rest, form, strict=False)) if a != b), None)
        if n is not None and rest[n:].startswith(("...", "\u2026")):
            return True
        start = line.find(form[:keep], start + 1)
    return False


def names(line: str, name: str) -> bool:
    """``line`` names ``name``: as given, or its repr / JSON escape; a name of one or two
    characters (``.``, ``..``) only counts quoted or right after its class folder."""
    for f in _forms(name):
        if len(name) > 2:
            if f in line or _shown_truncated(line, f):
                return True
            continue
        if any(q + f + q in line for q in ("'", '"', "`")):
            return True
        if re.search(r"messi/" + re.escape(f) + r"(?![\w./\\])", line):
            return True
    return False


class Verdict:
    """Collects every broken expectation of one run, then fails once with all of them."""

    def __init__(self, run: Run):
        self.run = run
        self.problems: list[str] = []

    def check(self, ok: bool, problem: str) -> bool:
        if not ok:
            self.problems.append(problem)
        return ok

    def no_leak_no_traceback(self) -> None:
        r = self.run
        self.check(not r.timed_out, f"did not end within its time limit ({r.seconds:.0f} s)")
        self.check("Traceback" not in r.err, "stderr holds a raw Traceback")
        self.check(LEAK not in r.out and LEAK not in r.err, "the token appears in stdout/stderr")

    def clean_failure(self) -> None:
        self.no_leak_no_traceback()
        self.check(self.run.rc == 1, f"exit code {self.run.rc}, expected 1")

    def error_line(self, *, name_any=(), text_any=(), regex=None, what="") -> None:
        """Some ``imgclf download:`` line names one of ``name_any`` (see ``names``), contains one
        of ``text_any`` (case-insensitive) and matches ``regex`` (each when given)."""
        lines = self.run.error_lines()

        def ok(ln: str) -> bool:
            if name_any and not any(names(ln, n) for n in name_any):
                return False
            if text_any and not any(t.lower() in ln.lower() for t in text_any):
                return False
            return not (regex and not re.search(regex, ln, re.IGNORECASE))

        self.check(
            any(ok(ln) for ln in lines),
            f"no 'imgclf download:' line {what} (names any of {list(name_any)!r}, "
            f"text any of {list(text_any)!r}, regex {regex!r}); those lines: {lines[:5]!r}",
        )

    def finish(self) -> None:
        if self.problems:
            pytest.fail(
                "\n".join(f"- {p}" for p in self.problems) + self.run.describe(), pytrace=False
            )


# --- the world: servers, a repository, a destination ------------------------------------------
@dataclass
class World:
    api: HostileServer
    other_host: HostileServer  # 127.0.0.2
    other_port: HostileServer  # 127.0.0.1, another port
    gh: FakeRepo
    pics: Pics
    sandbox: Path
    dest: Path
    home: Path
    honest: dict[str, list[dict]] = field(default_factory=dict)

    @property
    def servers(self) -> tuple[HostileServer, ...]:
        return (self.api, self.other_host, self.other_port)

    def download(self, *, classes=CLASSES, min_images=3, api_url=None, env=None, timeout=30.0):
        args = ["download", "--dest", str(self.dest), "--api-url", api_url or self.api.url]
        args += ["--repo", self.gh.repo, "--ref", self.gh.ref]
        for c in classes:
            args += ["--class", c]
        args += ["--min-images-per-class", str(min_images)]
        return run_cli(args, home=self.home, extra_env=env, timeout=timeout)

    def serve_honest(self) -> None:
        self.honest = {
            MESSI: self.gh.set_files(MESSI, self.pics.messi),
            RONALDO: self.gh.set_files(RONALDO, self.pics.ronaldo),
        }

    def sync_honest(self) -> None:
        """Precondition of most attacks: a complete, honest local copy in ``dest``."""
        self.serve_honest()
        run = self.download()
        manifest = self.dest / "manifest.json"
        complete = manifest.is_file() and json.loads(manifest.read_bytes()).get("complete")
        if run.rc != 0 or complete is not True:
            pytest.fail("precondition: the honest sync failed" + run.describe(), pytrace=False)
        for s in self.servers:
            s.clear_log()

    def messi_plus(self, *entries: dict) -> None:
        self.gh.set_listing(MESSI, [*self.honest[MESSI], *entries])

    def snapshot(self) -> tuple[dict[str, bytes], dict[str, bytes]]:
        return dest_tree(self.dest), outside_tree(self.sandbox, self.dest)

    def unchanged(self, v: Verdict, before) -> None:
        d0, o0 = before
        d1, o1 = self.snapshot()
        v.check(d1 == d0, f"D (and its manifest) changed: {_diff(d0, d1)}")
        v.check(o1 == o0, f"files outside D changed: {_diff(o0, o1)}")

    def poison_anywhere(self) -> list[str]:
        bad = set(self.pics.poison)
        return [p for p, b in _all_files(self.sandbox).items() if b in bad]


@pytest.fixture
def world(tmp_path: Path, pics: Pics):
    sandbox = tmp_path / "sandbox"
    dest = sandbox / "a" / "b" / "c" / "dest"
    dest.parent.mkdir(parents=True)
    for canary in (dest.parent, dest.parent.parent, sandbox):  # next to D and above it
        (canary / "canary.txt").write_text(f"canary in {canary.name}\n")
    with contextlib.ExitStack() as stack:
        api = stack.enter_context(HostileServer("127.0.0.1"))
        other_host = stack.enter_context(HostileServer("127.0.0.2"))
        other_port = stack.enter_context(HostileServer("127.0.0.1"))
        yield World(
            api, other_host, other_port, FakeRepo(api), pics, sandbox, dest, tmp_path / "home"
        )


# === 1. path traversal in entry names =============================================================
TRAVERSAL_NAMES = {
    "dotdot-slash": "../../../poison.jpg",
    "absolute": ABSOLUTE,
    "backslash": "..\\poison.jpg",
    "subfolder": "a/poison.jpg",
    "dot": ".",
    "dotdot": "..",
}


@pytest.mark.parametrize("name", TRAVERSAL_NAMES.values(), ids=TRAVERSAL_NAMES.keys())
def test_traversal_entry_name_is_rejected_and_nothing_escapes(world: World, name: str):
    world.sync_honest()
    if name == ABSOLUTE:  # absolute, but inside the sandbox so that a write is seen, not harmful
        name = str(world.sandbox / "abs" / "poison.jpg")
    before = world.snapshot()
    world.messi_plus(world.gh.entry(MESSI, name, world.pics.poison[0]))

    run = world.download()
    v = Verdict(run)
    v.clean_failure()
    v.error_line(name_any=[name], what="naming the bad entry")
    world.unchanged(v, before)
    v.check(not world.poison_anywhere(), f"the entry's bytes landed at {world.poison_anywhere()}")
    v.finish()


# === 2. class names from the command line =========================================================
BAD_CLASSES = {"dotdot": "..", "absolute": ABSOLUTE, "dotdot-x": "../x"}


@pytest.mark.parametrize("label", BAD_CLASSES.values(), ids=BAD_CLASSES.keys())
def test_traversal_class_name_is_refused_before_any_request(world: World, label: str):
    world.sync_honest()
    if label == ABSOLUTE:
        victim = world.sandbox / "victim"
        label = str(victim)
    else:
        victim = world.dest.parent / "x"
    victim.mkdir()
    (victim / "canary.txt").write_text("victim canary\n")
    before = world.snapshot()

    run = world.download(classes=[f"{label}={MESSI}", f"ronaldo={RONALDO}"])
    v = Verdict(run)
    v.no_leak_no_traceback()
    v.check(run.rc != 0, f"exit code {run.rc}: a class name {label!r} was accepted")
    v.check(run.err.strip() != "", "nothing on stderr says why")
    for s in world.servers:
        v.check(not s.requests, f"{len(s.requests)} requests reached {s.url} before the refusal")
    world.unchanged(v, before)
    v.finish()


# === 3. mislabelling: an entry of one class landing in another, case duplicates ===================
def test_mislabel_sibling_class_name_is_rejected(world: World):
    world.sync_honest()
    before = world.snapshot()
    world.messi_plus(world.gh.entry(MESSI, "../ronaldo/poison1.jpg", world.pics.poison[1]))

    run = world.download()
    v = Verdict(run)
    v.clean_failure()
    v.error_line(name_any=["../ronaldo/poison1.jpg"], what="naming the entry")
    world.unchanged(v, before)
    ronaldo = sorted(p.name for p in (world.dest / "ronaldo").iterdir())
    v.check(ronaldo == sorted(world.pics.ronaldo), f"D/ronaldo now holds {ronaldo}")
    v.finish()


def test_mislabel_entry_path_in_another_folder_is_rejected(world: World):
    world.sync_honest()
    before = world.snapshot()
    world.messi_plus(
        world.gh.entry(MESSI, "poison2.jpg", world.pics.poison[2], path=f"{RONALDO}/poison2.jpg")
    )

    run = world.download()
    v = Verdict(run)
    v.clean_failure()
    v.error_line(name_any=["poison2.jpg"], what="naming the entry whose path is elsewhere")
    world.unchanged(v, before)
    v.check(not world.poison_anywhere(), f"the entry landed at {world.poison_anywhere()}")
    v.finish()


def test_mislabel_case_duplicates_in_one_class_are_rejected(world: World):
    world.sync_honest()
    before = world.snapshot()
    world.messi_plus(
        world.gh.entry(MESSI, "poison3.jpg", world.pics.poison[1]),
        world.gh.entry(MESSI, "POISON3.jpg", world.pics.poison[2]),
    )

    run = world.download()
    v = Verdict(run)
    v.clean_failure()
    v.error_line(name_any=["poison3.jpg", "POISON3.jpg"], what="naming a case duplicate")
    world.unchanged(v, before)
    v.check(not world.poison_anywhere(), f"a duplicate landed at {world.poison_anywhere()}")
    v.finish()


# === 4. token exfiltration ========================================================================
EXFIL = ("backslash-userinfo", "other-host", "other-port", "userinfo")


def _exfil_url(world: World, kind: str, name: str) -> tuple[str, list[str]]:
    """The hostile download_url and what naming its problem looks like."""
    raw = world.gh.raw_path(MESSI, name)
    oh, op, api = world.other_host, world.other_port, world.api
    if kind == "backslash-userinfo":
        return f"http://127.0.0.2:{oh.port}\\@127.0.0.1:{api.port}{raw}", ["127.0.0.2"]
    if kind == "other-host":
        return f"{oh.url}/x.jpg", ["127.0.0.2"]
    if kind == "other-port":
        return f"{op.url}/x.jpg", [f"127.0.0.1:{op.port}", f"port {op.port}"]
    return f"http://user@127.0.0.1:{api.port}{raw}", ["user@", "userinfo", "credential"]


@pytest.mark.parametrize("kind", EXFIL)
def test_download_url_elsewhere_is_refused_and_the_token_stays_home(world: World, kind: str):
    world.sync_honest()
    before = world.snapshot()
    data = world.pics.extra
    for s in (world.other_host, world.other_port):  # the bait: the right bytes, anywhere
        s.default = Reply.fixed(200, data, {"Content-Type": "image/jpeg"})
    url, markers = _exfil_url(world, kind, "messi4.jpg")
    world.messi_plus(world.gh.entry(MESSI, "messi4.jpg", data, download_url=url))

    run = world.download()
    v = Verdict(run)
    v.clean_failure()
    v.error_line(text_any=markers, what="naming the download URL's host/port/userinfo problem")
    for s in (world.other_host, world.other_port):
        got = s.requests_containing(LEAK)
        v.check(not got, f"the token reached {s.url}: {[r.text() for r in got][:2]}")
    world.unchanged(v, before)
    strays = [r for s in (world.other_host, world.other_port) for r in s.requests]
    if strays:
        warnings.warn(f"{kind}: {len(strays)} requests reached another host/port", stacklevel=1)
    v.finish()


@pytest.mark.parametrize("target", ["other-host", "other-port"])
def test_redirect_elsewhere_does_not_carry_the_token(world: World, target: str):
    world.sync_honest()
    data = world.pics.extra
    other = world.other_host if target == "other-host" else world.other_port
    other.default = Reply.fixed(200, data, {"Content-Type": "image/jpeg"})
    world.messi_plus(world.gh.entry(MESSI, "messi4.jpg", data))
    world.api.route(world.gh.raw_path(MESSI, "messi4.jpg"), Reply.redirect(f"{other.url}/x.jpg"))

    run = world.download()
    v = Verdict(run)
    v.no_leak_no_traceback()
    got = other.requests_containing(LEAK)
    v.check(not got, f"the redirect carried the token to {other.url}: {[r.text() for r in got]}")
    if run.rc == 0:  # following it is allowed, without the token, and the bytes verified
        landed = world.dest / "messi" / "messi4.jpg"
        v.check(landed.is_file() and landed.read_bytes() == data, "exit 0 but the file is wrong")
    else:
        v.check(run.rc == 1, f"exit code {run.rc}")
        v.error_line(text_any=["127.0.0.2", str(other.port), "redirect"], what="naming it")
    v.finish()


@pytest.mark.parametrize("status", [500, 403])
def test_error_body_reflecting_the_token_is_not_printed(world: World, status: int):
    world.sync_honest()
    before = world.snapshot()

    def reflect(req) -> Reply:
        auth = req.header("Authorization") or ""
        body = {
            "message": f"Bad credentials: you sent Authorization: {auth}",
            "echo": dict(req.headers),
        }
        return Reply.json(body, status, headers={"X-Echo": auth or "-"})

    world.api.route(world.gh.listing_path(MESSI), reflect)

    run = world.download(timeout=60)
    v = Verdict(run)
    v.clean_failure()
    v.error_line(text_any=[str(status)], what=f"naming the HTTP {status}")
    v.check(
        any(LEAK in (r.header("Authorization") or "") for r in world.api.requests),
        "the token was never sent to the API, so nothing could be reflected (GITHUB_TOKEN unused?)",
    )
    world.unchanged(v, before)
    v.finish()


# === 5. a shrunken or empty listing over a complete copy ==========================================
@pytest.mark.parametrize("left", [0, 1])
def test_shrunken_listing_leaves_the_complete_copy_untouched(world: World, left: int):
    world.sync_honest()
    before = world.snapshot()
    world.gh.set_listing(MESSI, world.honest[MESSI][:left])

    run = world.download(min_images=3)
    v = Verdict(run)
    v.clean_failure()
    v.error_line(text_any=["messi"], what="naming the class that shrank")
    world.unchanged(v, before)
    v.finish()


# === 6. sizes =====================================================================================
def test_endless_body_is_cut_at_the_listed_size(world: World):
    world.sync_honest()
    before = world.snapshot()
    fake = b"\xff" * 1000
    entry = world.gh.entry(MESSI, "messi4.jpg", fake, serve=False)  # listed: 1000 bytes
    world.api.route(world.gh.raw_path(MESSI, "messi4.jpg"), Reply.endless(max_seconds=60))
    world.messi_plus(entry)

    run = world.download(timeout=30)
    v = Verdict(run)
    v.clean_failure()
    v.error_line(name_any=["messi4.jpg"], what="naming the endless file")
    streams = world.api.streams
    for s in streams:
        s.done.wait(10)  # the child has exited: its sockets are closed
    v.check(bool(streams), "the endless file was never requested")
    for s in streams:
        v.check(s.disconnected, f"the server never saw the client leave ({s})")
        v.check(s.sent < 8 * MIB, f"the server wrote {s.sent / MIB:.0f} MiB before the cut")
    v.check(run.peak_rss_kib < 400 * 1024, f"peak RSS {run.peak_rss_kib // 1024} MiB")
    world.unchanged(v, before)
    v.finish()


def test_file_over_the_size_limit_is_cut_and_named(world: World):
    world.sync_honest()
    before = world.snapshot()
    big = _noise_png(1300, seed=1)  # a valid 5 MB PNG; the limit is 1,000,000 bytes
    assert len(big) > 4_000_000
    entry = world.gh.entry(MESSI, "messi4.png", big, serve=False)
    world.api.route(world.gh.raw_path(MESSI, "messi4.png"), Reply.streamed(big))
    world.messi_plus(entry)

    run = world.download(env={"IMGCLF_MAX_FILE_BYTES": "1000000"})
    v = Verdict(run)
    v.clean_failure()
    v.error_line(
        name_any=["messi4.png"],
        regex=r"1[,_ .]?000[,_ .]?000\b|\b1(\.0+)? ?(MB|M\b)|\b10\^6|\b1e6|976(\.\d+)? ?KiB"
        r"|0\.95\d* ?MiB",
        what="naming the file and the 1,000,000-byte limit",
    )
    world.unchanged(v, before)
    v.finish()


def test_body_longer_than_the_listed_size_is_rejected(world: World):
    world.sync_honest()
    before = world.snapshot()
    data = _noise_png(40, seed=2)
    world.messi_plus(world.gh.entry(MESSI, "messi4.png", data, size=len(data) // 2))

    run = world.download()
    v = Verdict(run)
    v.clean_failure()
    v.error_line(
        name_any=["messi4.png"],
        regex=r"size|bytes|length|larger|longer|more than",
        what="naming the file and the size mismatch",
    )
    world.unchanged(v, before)
    v.finish()


# === 7. inputs that used to end in a raw traceback ================================================
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """A 1-bit 20000 x 20000 PNG: 400 Mpixels in about 50 KB.

    Written row by row with zlib, because Pillow holds a mode "1" image at one byte per pixel
    (400 MB in the test process); Pillow then confirms it is a decompression bomb."""
    side = 20000
    z = zlib.compressobj(9)
    row = b"\x00" * (1 + side // 8)  # filter byte + 2500 bytes of black pixels
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
    png += _png_chunk(b"IEND", b"")
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(png))
    return png


def _one_bit_png(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("1", size, 1).save(buf, format="PNG")
    return buf.getvalue()


MALFORMED = [
    "bomb",
    "pixels-over-env-limit",
    "nul",
    "strings",
    "no-sha",
    "sha-not-hex",
    "sha-short",
    "size-neg",
    "size-str",
]


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_remote_input_fails_cleanly(world: World, case: str, request):
    world.sync_honest()
    before = world.snapshot()
    gh, poison = world.gh, world.pics.poison[3]
    kw: dict[str, Any] = {}
    env = None
    if case == "bomb":  # 400 Mpixels against the default limit of 64,000,000
        name, text, regex = "bomb.png", [], r"pixel.*(64[,_ .]?000[,_ .]?000|64 ?M)"
        regex += r"|(64[,_ .]?000[,_ .]?000|64 ?M).*pixel"
        world.messi_plus(gh.entry(MESSI, name, request.getfixturevalue("bomb")))
    elif case == "pixels-over-env-limit":  # 1.2 Mpixels, IMGCLF_MAX_IMAGE_PIXELS=1,000,000
        name, text = "messi4.png", []
        regex = r"pixel.*(1[,_ .]?000[,_ .]?000|1 ?M)|(1[,_ .]?000[,_ .]?000|1 ?M).*pixel"
        env = {"IMGCLF_MAX_IMAGE_PIXELS": "1000000"}
        world.messi_plus(gh.entry(MESSI, name, _one_bit_png((1200, 1000))))
    elif case == "nul":
        name, text, regex = "poison\x00.jpg", ["\\x00"], None
        world.messi_plus(gh.entry(MESSI, name, poison))
    elif case == "strings":
        name, text, regex = "poison-a.jpg", [], None
        gh.set_listing(MESSI, ["poison-a.jpg", "poison-b.jpg"])
    else:
        name = f"poison-{case}.jpg"
        text, regex = [], (r"\bsha" if "sha" in case else r"\bsize")
        if case == "no-sha":
            kw["drop"] = ("sha",)
        elif case == "sha-not-hex":
            kw["sha"] = "z" * 40
        elif case == "sha-short":
            kw["sha"] = git_blob_sha(poison)[:12]
        elif case == "size-neg":
            kw["size"] = -1
        else:
            kw["size"] = str(len(poison))  # a string, even one that looks right
        world.messi_plus(gh.entry(MESSI, name, poison, **kw))

    run = world.download(timeout=45, env=env)
    v = Verdict(run)
    v.clean_failure()
    name_any = [name, MESSI] if case == "strings" else [name]
    if case == "nul":
        name_any = [name, "poison\\x00.jpg"]
    v.error_line(name_any=name_any, text_any=text, regex=regex, what=f"explaining '{case}'")
    world.unchanged(v, before)
    v.check(not world.poison_anywhere(), f"the entry landed at {world.poison_anywhere()}")
    v.finish()


# === 8. who owns the clock: rate limits, an unreachable remote ====================================
@pytest.mark.parametrize("status", [503, 429])
def test_rate_limit_with_long_retry_after_fails_fast_and_says_so(world: World, status: int):
    world.api.default = Reply.json(
        {"message": "API rate limit exceeded"}, status, headers={"Retry-After": "3600"}
    )  # no routes: every request gets this

    run = world.download(timeout=60)
    v = Verdict(run)
    v.clean_failure()
    v.check(run.seconds < 60, f"took {run.seconds:.0f} s")
    v.error_line(regex=r"rate.?limit|retry.?after", what="mentioning the rate limit")
    v.check(bool(world.api.requests), "no request reached the API at all")
    v.finish()


def test_unreachable_remote_is_one_clear_line(world: World):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # closed now: connections are refused
    # urllib3's 3 retries sleep 0, 2 x 0.25 and 4 x 0.25 s (plus jitter): at least 1.5 s, so
    # a run under that did not back off; the default (0.5 s) only doubles the wait
    run = world.download(
        api_url=f"http://127.0.0.1:{port}", timeout=45, env={"IMGCLF_GITHUB_BACKOFF": "0.25"}
    )
    v = Verdict(run)
    v.clean_failure()
    v.check(1.5 <= run.seconds < 45, f"took {run.seconds:.1f} s")  # retried with backoff, ended
    lines = run.error_lines()
    v.check(len(lines) == 1, f"{len(lines)} 'imgclf download:' lines, expected one: {lines!r}")
    v.error_line(text_any=["127.0.0.1"], regex=r"refused", what="naming the host and the cause")
    v.finish()


# === 9. the honest path ===========================================================================
def test_honest_sync_then_rerun_fetches_nothing(world: World):
    world.serve_honest()
    run = world.download()
    v = Verdict(run)
    v.no_leak_no_traceback()
    v.check(run.rc == 0, f"exit code {run.rc}")
    want = {f"messi/{n}": b for n, b in world.pics.messi.items()}
    want |= {f"ronaldo/{n}": b for n, b in world.pics.ronaldo.items()}
    tree = dest_tree(world.dest)
    images = {k: b for k, b in tree.items() if k.startswith(("messi/", "ronaldo/"))}
    v.check(images == want, f"class folders differ from the remote: {_diff(want, images)}")
    others = sorted(k for k in tree if k not in want and not k.startswith("."))
    v.check(others == ["manifest.json"], f"other files in D: {others}")
    if "manifest.json" in tree:
        v.check(json.loads(tree["manifest.json"]).get("complete") is True, "manifest incomplete")
    v.check(
        any(LEAK in (r.header("Authorization") or "") for r in world.gh.listing_requests()),
        "the listing requests did not carry the token",
    )
    v.check(len(world.gh.raw_requests()) == 6, f"{len(world.gh.raw_requests())} raw requests")
    v.finish()

    world.api.clear_log()
    again = world.download()
    v = Verdict(again)
    v.no_leak_no_traceback()
    v.check(again.rc == 0, f"rerun: exit code {again.rc}")
    raw = [r.target for r in world.gh.raw_requests()]
    v.check(not raw, f"the rerun fetched files again: {raw}")
    v.check(bool(world.gh.listing_requests()), "the rerun did not list the remote")
    tree2 = dest_tree(world.dest)
    images2 = {k: b for k, b in tree2.items() if k.startswith(("messi/", "ronaldo/"))}
    v.check(images2 == want, f"the rerun changed the files: {_diff(want, images2)}")
    v.finish()
