"""Round two against ``imgclf download``: a slow remote, answers that used to end in a traceback.

The same black box as ``test_hostile_remote.py`` (its ``world``: the real command line in a
subprocess, scripted servers on loopback, the destination and its surroundings compared before
and after). Here the remote

- is **slow**: it stalls before answering, stalls after its headers, trickles its headers, its
  listing or one file a byte at a time, or sends everything just above the floor rate so that
  only the whole download's deadline can end it. Each must end in seconds (the deadlines are
  set small through the environment, as a user would), in one line that names the host, the
  file and what was slow, and never as "cannot reach" a host that accepted the connection;
- sends what the client used to crash on: the same name twice, two Content-Lengths, redirects
  to URLs that cannot be requested, rate-limit waits of ``inf`` or ``1e300``, a listing nested
  200,000 deep, a gzip body, a Git Trees symlink, names with invisible control characters.
"""

from __future__ import annotations

import gzip
import json
import math
import re

import pytest

from tests.attack.hostile_github import FakeRepo, Reply
from tests.attack.test_hostile_remote import MESSI, Verdict, World, _noise_png

GRACE, FLOOR = 1.0, 1024  # small deadlines, so that these tests take seconds
SLOW = {"IMGCLF_GITHUB_GRACE": str(GRACE), "IMGCLF_GITHUB_MIN_RATE": str(FLOOR)}
CLI_START = 8.0  # seconds the command may take to start and finish around the cut (2 cores)


def _host(world: World) -> str:
    return f"127.0.0.1:{world.api.port}"


def _one_line(v: Verdict) -> None:
    lines = v.run.error_lines()
    v.check(len(lines) == 1, f"{len(lines)} 'imgclf download:' lines, expected one: {lines!r}")


# === 1. time: stalls and trickles end after the grace, in one line ================================
def test_a_trickling_listing_is_cut_after_the_grace(world: World):
    world.sync_honest()
    before = world.snapshot()
    listing = json.dumps(world.honest[MESSI]).encode()
    world.api.route(world.gh.listing_path(MESSI), Reply.trickle(listing, interval=0.2))

    run = world.download(env=SLOW, timeout=40)
    v = Verdict(run)
    v.clean_failure()
    v.check(run.seconds < GRACE + CLI_START, f"took {run.seconds:.1f} s for a {GRACE} s grace")
    _one_line(v)
    v.error_line(text_any=[_host(world)], regex=r"data/messi.*slow", what="host, folder, slow")
    v.check("cannot reach" not in run.err, "a host that answered is called unreachable")
    world.unchanged(v, before)
    streams = world.api.streams
    for s in streams:
        s.done.wait(10)
    v.check(any(s.disconnected for s in streams), "the server never saw the client leave")
    v.finish()


def test_a_trickling_file_is_cut_and_named(world: World):
    world.sync_honest()
    before = world.snapshot()
    data = world.pics.extra
    entry = world.gh.entry(MESSI, "messi4.jpg", data, serve=False)
    world.api.route(world.gh.raw_path(MESSI, "messi4.jpg"), Reply.trickle(data, interval=0.2))
    world.messi_plus(entry)

    run = world.download(env=SLOW, timeout=40)
    v = Verdict(run)
    v.clean_failure()
    v.check(run.seconds < GRACE + CLI_START, f"took {run.seconds:.1f} s")
    _one_line(v)
    v.error_line(
        name_any=["messi4.jpg"], text_any=[_host(world)], regex=r"slow.*bytes/s",
        what="naming the file, the host and the rate",
    )  # fmt: skip
    world.unchanged(v, before)
    v.finish()


STALLS = {
    "before-headers": lambda: Reply.stall(max_seconds=60),
    "after-headers": lambda: Reply.stall(max_seconds=60, headers={"Content-Length": "631"}),
    "trickled-headers": lambda: Reply.raw(
        b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nX-Padding: " + b"p" * 400 + b"\r\n\r\n",
        interval=0.1,
    ),
}


@pytest.mark.parametrize("kind", STALLS)
def test_a_stalled_file_ends_after_the_grace_tried_once_and_not_called_unreachable(
    world: World, kind: str
):
    world.sync_honest()
    before = world.snapshot()
    data = world.pics.extra
    entry = world.gh.entry(MESSI, "messi4.jpg", data, serve=False)
    world.api.route(world.gh.raw_path(MESSI, "messi4.jpg"), STALLS[kind]())
    world.messi_plus(entry)

    run = world.download(env=SLOW, timeout=40)
    v = Verdict(run)
    v.clean_failure()
    v.check(run.seconds < GRACE + CLI_START, f"took {run.seconds:.1f} s")
    _one_line(v)
    v.error_line(name_any=["messi4.jpg"], text_any=[_host(world)], what="naming file and host")
    v.check("cannot reach" not in run.err, "a host that accepted the connection is 'unreachable'")
    v.error_line(regex=r"accepted the connection|slow", what="saying it was slow, not absent")
    tries = [r for r in world.gh.raw_requests() if r.path.endswith("/messi4.jpg")]
    v.check(len(tries) == 1, f"the stalled file was requested {len(tries)} times, not once")
    world.unchanged(v, before)
    v.finish()


def test_a_remote_just_above_the_floor_is_ended_by_the_whole_downloads_deadline(world: World):
    """Every body arrives a little faster than the floor, so no single answer is cut: only the
    deadline of the whole download ends it (old code: no deadline, the sync just went on)."""
    world.sync_honest()
    before = world.snapshot()
    entries = []
    for i in range(4, 8):
        data = _noise_png(48, seed=i)  # ~7 KB each, ~5 s each at 1,280 bytes/s
        name = f"messi{i}.png"
        entries.append(world.gh.entry(MESSI, name, data, serve=False))
        world.api.route(
            world.gh.raw_path(MESSI, name), Reply.trickle(data, interval=0.05, piece=64)
        )
    world.messi_plus(*entries)

    run = world.download(env={**SLOW, "IMGCLF_GITHUB_DEADLINE": "3"}, timeout=40)
    v = Verdict(run)
    v.clean_failure()
    v.check(run.seconds < 3 + CLI_START, f"took {run.seconds:.1f} s for a 3 s deadline")
    _one_line(v)
    v.error_line(regex=r"deadline of 3 s.*IMGCLF_GITHUB_DEADLINE", what="naming the deadline")
    v.error_line(text_any=[_host(world)], regex=r"messi\d\.png", what="naming host and file")
    world.unchanged(v, before)
    v.finish()


def test_the_default_deadlines_end_a_trickle_or_a_stall_within_two_minutes():
    """By the watchdog's own arithmetic (``Limits.cut_after``, which the runs above check
    with small settings): a body at one byte a second, or none at all, is cut after about the
    grace; a connection that cannot even be made gives up after the connect timeout and
    urllib3's three retries. And the honest case keeps well clear: a 5 MB file over a
    1 Mbit/s line is never cut, nor the default dataset over a slow line."""
    from imgclf.github import Limits
    from imgclf.settings import Settings

    s = Settings.from_env()
    limits = Limits(grace=s.github_grace, min_rate=s.github_min_rate, deadline=s.github_deadline)
    stall, trickle = limits.cut_after(0), limits.cut_after(1)
    assert stall == limits.grace and trickle < limits.grace + 0.01
    assert limits.connect + trickle <= 120, f"a trickle lasts {limits.connect + trickle:.0f} s"
    assert 4 * limits.connect + 3 * 8.0 <= 120  # no connection: 4 tries, backoff capped at 8 s
    assert math.isinf(limits.cut_after(125_000))  # 1 Mbit/s is above the floor: never cut
    assert limits.deadline >= 300  # the 60-image dataset over a 1 Mbit/s line: ~30 s
    for var in ("IMGCLF_GITHUB_GRACE", "IMGCLF_GITHUB_MIN_RATE", "IMGCLF_GITHUB_DEADLINE"):
        assert var not in __import__("os").environ, f"{var} is set: the defaults are not tested"


def test_the_cut_comes_when_the_arithmetic_says(world: World):
    """A body at ~640 bytes/s under a 1,024 bytes/s floor and a 1 s grace is cut when the bytes
    it sent no longer cover the floor: at ``grace + bytes / floor`` seconds (about 2.7 s), later
    than the grace by exactly the credit its bytes earned. Checked from the line's own figures,
    so a slowed-down server (a loaded machine) does not make it flaky."""
    world.sync_honest()
    data = _noise_png(48, seed=9)
    entry = world.gh.entry(MESSI, "messi4.png", data, serve=False)
    world.api.route(
        world.gh.raw_path(MESSI, "messi4.png"), Reply.trickle(data, interval=0.05, piece=32)
    )
    world.messi_plus(entry)
    run = world.download(env=SLOW, timeout=40)
    v = Verdict(run)
    v.clean_failure()
    m = re.search(r"(\d+) bytes in (\d+) s", "\n".join(run.error_lines()))
    v.check(m is not None, f"no 'N bytes in T s' in {run.error_lines()!r}")
    if m:
        got, took = int(m.group(1)), int(m.group(2))
        rule = GRACE + got / FLOOR
        v.check(got > 0 and abs(took - rule) <= 1.0, f"{got} bytes cut after {took} s: the "
                f"rule says {rule:.1f} s")  # fmt: skip
    v.finish()


# === 2. answers that used to end in a traceback ===================================================
def test_the_same_name_twice_in_one_listing_is_a_listing_error(world: World):
    world.sync_honest()
    before = world.snapshot()
    data = world.pics.extra
    twice = world.gh.entry(MESSI, "messi4.jpg", data)
    world.messi_plus(twice, dict(twice))

    run = world.download()
    v = Verdict(run)
    v.clean_failure()
    v.error_line(name_any=["messi4.jpg"], regex=r"twice", what="naming the repeated entry")
    world.unchanged(v, before)
    v.finish()


DUPLICATE_LENGTH = (
    b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 5\r\n"
    b"Content-Length: 6\r\nConnection: close\r\n\r\nabcdef"
)


@pytest.mark.parametrize("where", ["listing", "file"])
def test_two_different_content_lengths_are_one_line(world: World, where: str):
    world.sync_honest()
    before = world.snapshot()
    if where == "listing":
        world.api.route(world.gh.listing_path(MESSI), Reply.raw(DUPLICATE_LENGTH))
    else:
        entry = world.gh.entry(MESSI, "messi4.jpg", world.pics.extra, serve=False)
        world.api.route(world.gh.raw_path(MESSI, "messi4.jpg"), Reply.raw(DUPLICATE_LENGTH))
        world.messi_plus(entry)

    run = world.download()
    v = Verdict(run)
    v.clean_failure()
    _one_line(v)
    v.error_line(regex=r"Content-Length", what="naming the bad header")
    world.unchanged(v, before)
    v.finish()


@pytest.mark.parametrize("location", ["http://127.0.0.1:99999/x.jpg", "http://[::1/x.jpg"])
def test_a_redirect_to_a_url_that_cannot_be_requested_is_one_line(world: World, location: str):
    world.sync_honest()
    before = world.snapshot()
    entry = world.gh.entry(MESSI, "messi4.jpg", world.pics.extra, serve=False)
    world.api.route(world.gh.raw_path(MESSI, "messi4.jpg"), Reply.redirect(location))
    world.messi_plus(entry)

    run = world.download()
    v = Verdict(run)
    v.clean_failure()
    _one_line(v)
    v.error_line(name_any=["messi4.jpg"], regex=r"redirect|99999|IPv6", what="naming it")
    world.unchanged(v, before)
    v.finish()


@pytest.mark.parametrize(
    "headers",
    [{"Retry-After": "inf"}, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1e300"}],
    ids=["retry-after-inf", "reset-1e300"],
)  # fmt: skip
def test_absurd_rate_limit_waits_are_one_line(world: World, headers: dict):
    world.api.default = Reply.json({"message": "API rate limit exceeded"}, 403, headers=headers)

    run = world.download(timeout=60)
    v = Verdict(run)
    v.clean_failure()
    v.check(run.seconds < 40, f"took {run.seconds:.0f} s")
    _one_line(v)
    v.error_line(regex=r"rate.?limit|403", what="saying what the remote answered")
    v.finish()


def test_a_listing_nested_200000_deep_is_one_line(world: World):
    world.sync_honest()
    before = world.snapshot()
    world.api.route(world.gh.listing_path(MESSI), Reply.fixed(200, "[" * 200_000 + "]" * 200_000))

    run = world.download()
    v = Verdict(run)
    v.clean_failure()
    _one_line(v)
    v.error_line(regex=r"data/messi.*nest", what="naming the listing and the nesting")
    world.unchanged(v, before)
    v.finish()


def test_a_gzip_body_is_reported_as_compressed_and_not_retried(world: World):
    world.sync_honest()
    before = world.snapshot()
    data = world.pics.extra
    entry = world.gh.entry(MESSI, "messi4.jpg", data, serve=False)
    world.api.route(
        world.gh.raw_path(MESSI, "messi4.jpg"),
        Reply.fixed(200, gzip.compress(data), {"Content-Encoding": "gzip"}),
    )
    world.messi_plus(entry)

    run = world.download()
    v = Verdict(run)
    v.clean_failure()
    v.error_line(name_any=["messi4.jpg"], regex=r"compress|gzip", what="saying it is compressed")
    v.check("longer than" not in run.err, "a compressed body is reported as a long one")
    tries = [r for r in world.gh.raw_requests() if r.path.endswith("/messi4.jpg")]
    v.check(len(tries) == 1, f"the compressed file was requested {len(tries)} times")
    world.unchanged(v, before)
    v.finish()


def test_git_trees_symlinks_are_skipped_like_the_contents_apis(world: World):
    """A folder past the contents API's 1,000 entries is listed through the Git Trees API,
    where a symlink is a blob of mode 120000. Its target bytes are served as a valid image:
    it must still not be fetched or land in the dataset."""
    world.serve_honest()
    gh: FakeRepo = world.gh
    items = [gh.tree_item(n, b) for n, b in sorted(world.pics.messi.items())]
    link = world.pics.poison[0]  # a valid PNG: only the mode says it is not a file
    items.append(gh.tree_item("link.png", link, mode="120000"))
    gh.server.route(gh.raw_path(MESSI, "link.png"), Reply.fixed(200, link))
    gh.set_tree(MESSI, items)

    run = world.download()
    v = Verdict(run)
    v.no_leak_no_traceback()
    v.check(run.rc == 0, f"exit code {run.rc}")
    v.check(not (world.dest / "messi" / "link.png").exists(), "the symlink landed as a file")
    v.check(not world.poison_anywhere(), f"the link's bytes landed at {world.poison_anywhere()}")
    fetched = [r.path for r in gh.raw_requests() if r.path.endswith("/link.png")]
    v.check(not fetched, f"the symlink was fetched: {fetched}")
    v.check(
        sorted(p.name for p in (world.dest / "messi").iterdir()) == sorted(world.pics.messi),
        "the tree's regular files are not exactly the class folder",
    )
    v.finish()


INVISIBLE = {"c1-nel": "\x85", "rtl-override": "\u202e", "c1-csi": "\x9b"}


@pytest.mark.parametrize("kind", INVISIBLE)
def test_invisible_characters_in_a_rejected_name_are_shown_escaped(world: World, kind: str):
    world.sync_honest()
    before = world.snapshot()
    char = INVISIBLE[kind]
    name = f"poison{char}gnp.jpg"
    world.messi_plus(world.gh.entry(MESSI, name, b"not an image at all"))

    run = world.download()
    v = Verdict(run)
    v.clean_failure()
    v.check(char not in run.err and char not in run.out, f"a raw {kind} reached the output")
    escaped = repr(char)[1:-1]
    v.error_line(text_any=[f"poison{escaped}gnp"], what="naming the entry, escaped")
    world.unchanged(v, before)
    v.finish()
