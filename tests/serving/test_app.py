"""``make serve`` for real: ``python -m imgclf.serving`` in its own process on loopback, serving
the session's champion over HTTP; what a client sends, an attacker's bytes included."""

from __future__ import annotations

import base64
import io
import os
import random
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from imgclf import registry
from tests.serving.conftest import vm_hwm_kb

pytestmark = [pytest.mark.spark, pytest.mark.shared]

NAME = "messi/messi1.jpeg"


def photo(champion, name: str = NAME) -> bytes:
    return champion.images[name].read_bytes()


def assert_same_as_spark(champion, out: dict, name: str = NAME) -> None:
    want_class, want = champion.spark[name]
    assert out["class"] == want_class
    got = [out["probabilities"][label] for label in champion.labels]
    assert max(abs(a - b) for a, b in zip(got, want, strict=True)) <= 1e-5


def test_curl_form_answers_the_class_the_probabilities_and_the_version(champion, server):
    # what `curl -F image=@photo.jpg http://127.0.0.1:8000/predict` sends
    r = requests.post(f"{server['url']}/predict", files={"image": ("m.jpg", photo(champion))})
    assert r.status_code == 200, r.text
    out = r.json()
    assert_same_as_spark(champion, out)
    assert out["model_version"] == champion.version
    assert out["model_run_id"] == champion.mlflow_run_id
    assert out["model_run_url"].endswith(f"/runs/{champion.mlflow_run_id}")
    assert out["runtime"] == "openvino"
    raw = requests.post(
        f"{server['url']}/predict", data=photo(champion), headers={"Content-Type": "image/jpeg"}
    )
    assert raw.status_code == 200 and raw.json()["probabilities"] == out["probabilities"]
    assert server["cold_start"] < 60  # the benchmark measures it; this only bounds it


def test_mlflow_invocations_form_scores_base64_images(champion, server):
    names = [NAME, "ronaldo/ronaldo1.jpeg"]
    body = {
        "dataframe_split": {
            "columns": ["content"],
            "data": [[base64.b64encode(photo(champion, n)).decode()] for n in names],
        }
    }
    r = requests.post(f"{server['url']}/invocations", json=body)
    assert r.status_code == 200, r.text
    for name, row in zip(names, r.json()["predictions"], strict=True):
        assert row["error"] == ""
        assert_same_as_spark(champion, row, name)


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid 1x1 PNG whose header claims ``width`` x ``height`` pixels (CRC fixed)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def bad_requests(champion) -> list[tuple[str, dict, int, str]]:
    jpeg = photo(champion)
    big = 2 * 1024 * 1024 + 70 * 1024  # past the cap and the form's framing allowance
    return [
        ("not an image", {"files": {"image": ("x.jpg", b"hello, not a jpeg" * 10)}}, 422,
         "not a decodable image"),
        ("truncated", {"files": {"image": ("t.jpg", jpeg[: len(jpeg) // 2])}}, 422,
         "not a decodable image"),
        ("decompression bomb", {"files": {"image": ("b.png", bomb_png())}}, 422,
         "over the limit"),
        ("over the size cap", {"files": {"image": ("big.jpg", os.urandom(big))}}, 413,
         "bytes"),
        ("over the size cap, raw", {"data": os.urandom(big),
                                    "headers": {"Content-Type": "image/jpeg"}}, 413, "bytes"),
        ("wrong content type", {"data": jpeg, "headers": {"Content-Type": "text/plain"}}, 415,
         "content type 'text/plain'"),
        ("empty body", {"data": b"", "headers": {"Content-Type": "image/jpeg"}}, 400,
         "empty request body"),
        ("empty file", {"files": {"image": ("e.jpg", b"")}}, 422, "empty file (0 bytes)"),
        ("no image field", {"files": {"photo": ("m.jpg", jpeg)}}, 400, "form field 'image'"),
        ("broken multipart", {"data": b"--x\r\nnonsense",
                              "headers": {"Content-Type": "multipart/form-data; boundary=x"}},
         400, "form field 'image'"),
    ]  # fmt: skip


def test_bad_input_gets_a_4xx_with_the_reason_and_the_server_keeps_answering(champion, server):
    url = server["url"]
    for what, kwargs, status, reason in bad_requests(champion):
        r = requests.post(f"{url}/predict", timeout=30, **kwargs)
        assert r.status_code == status, (what, r.status_code, r.text[:300])
        assert reason in r.json()["error"], (what, r.json())
        good = requests.post(f"{url}/predict", files={"image": ("m.jpg", photo(champion))})
        assert good.status_code == 200, (what, good.text)
    bad_json = {"dataframe_split": {"columns": ["content"], "data": [["%%%"]]}}
    r = requests.post(f"{url}/invocations", json=bad_json)
    assert r.status_code == 400 and "not valid base64" in r.json()["error"]
    r = requests.post(f"{url}/invocations", data=b"{", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "not JSON" in r.json()["error"]


def test_a_thousand_garbage_requests_leave_it_answering_with_bounded_memory(champion, server):
    url, pid = server["url"], server["proc"].pid
    rng = random.Random(28)
    jpeg = photo(champion)
    kinds = ["image/jpeg", "image/png", "application/octet-stream", "text/html", ""]

    def garbage(i: int) -> int:
        size = rng.choice([0, 1, 17, 1000, 50_000, 400_000])
        body = bytes(rng.getrandbits(8) for _ in range(min(size, 2000))) * (size // 2000 + 1)
        body = body[:size]
        if i % 3 == 0:  # a real JPEG, mangled past its header
            body = jpeg[:200] + body
        if i % 2:
            r = requests.post(f"{url}/predict", files={"image": ("g", body)}, timeout=60)
        else:
            headers = {"Content-Type": kinds[i % len(kinds)]}
            r = requests.post(f"{url}/predict", data=body, headers=headers, timeout=60)
        assert 400 <= r.status_code < 500 and r.json()["error"], (i, r.status_code, r.text[:200])
        return r.status_code

    requests.post(f"{url}/predict", files={"image": ("m.jpg", jpeg)})  # warm
    before = vm_hwm_kb(pid)
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(garbage, range(1000)))
        good = requests.post(f"{url}/predict", files={"image": ("m.jpg", jpeg)}, timeout=60)
        assert good.status_code == 200  # answered during the run
    assert len(statuses) == 1000 and set(statuses) <= {400, 413, 415, 422}
    after = vm_hwm_kb(pid)
    assert server["proc"].poll() is None
    good = requests.post(f"{url}/predict", files={"image": ("m.jpg", jpeg)})
    assert good.status_code == 200 and good.json()["class"] == champion.spark[NAME][0]
    assert after - before < 200 * 1024, (before, after)  # kB


def test_a_promotion_and_a_rollback_are_served_without_a_restart(champion, server):
    settings, url = champion.settings, server["url"]
    source = registry.champion(settings)["source"]
    second, _ = registry.register(settings, source, champion.mlflow_run_id, "second", {})
    assert second is not None

    def served_after(version: str) -> float:
        started = time.monotonic()
        while time.monotonic() - started < 30:
            r = requests.post(f"{url}/predict", files={"image": ("m.jpg", photo(champion))})
            assert r.status_code == 200  # never a gap while it switches
            if r.json()["model_version"] == version:
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"version {version} not served within 30 s")

    registry.promote(settings, second, "test: promote")
    assert served_after(second) < 30
    registry.rollback(settings)
    assert served_after(champion.version) < 30
    assert server["proc"].poll() is None
