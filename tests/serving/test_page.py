"""The page at ``/``, in a real browser: Debian's chromium, headless, driven by Playwright.

Screenshots go to ``$IMGCLF_SCREENSHOTS`` when set (to look at), else the test's folder.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.spark, pytest.mark.shared]

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM} (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield b
        b.close()


def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("IMGCLF_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


DROP = """([b64, name]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], name, { type: "image/jpeg" }));
  const zone = document.getElementById("drop");
  const init = { dataTransfer: dt, bubbles: true, cancelable: true };
  zone.dispatchEvent(new DragEvent("dragover", init));
  zone.dispatchEvent(new DragEvent("drop", init));
}"""


def test_the_page_shows_class_probabilities_version_and_run_for_a_dropped_or_chosen_photo(
    champion, server, browser, tmp_path
):
    from playwright.sync_api import expect

    out = shots(tmp_path)
    page = browser.new_page(viewport={"width": 900, "height": 700})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server["url"] + "/")
    expect(page.locator("#model")).to_contain_text(f"Champion: version {champion.version}")
    link = page.locator("#run-link")
    assert link.get_attribute("href").endswith(f"/runs/{champion.mlflow_run_id}")
    page.screenshot(path=str(out / "serve-empty.png"))

    name = "ronaldo/ronaldo1.jpeg"
    page.set_input_files("#file", str(champion.images[name]))
    want_class, want = champion.spark[name]
    expect(page.locator("#class")).to_have_text(want_class)
    bars = page.locator(".bar")
    expect(bars).to_have_count(len(champion.labels))
    top = f"{100 * max(want):.1f} %"
    expect(bars.first.locator(".p")).to_have_text(top)
    page.screenshot(path=str(out / "serve-chosen.png"))

    dropped = "messi/messi1.jpeg"
    b64 = base64.b64encode(champion.images[dropped].read_bytes()).decode()
    page.evaluate(DROP, [b64, "messi1.jpeg"])
    expect(page.locator("#class")).to_have_text(champion.spark[dropped][0])
    page.screenshot(path=str(out / "serve-dropped.png"))

    page.set_input_files(
        "#file", files=[{"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"not a jpeg"}]
    )
    expect(page.locator("#error")).to_contain_text("image refused: not a decodable image")
    expect(page.locator("#class")).to_have_text("")
    page.screenshot(path=str(out / "serve-refused.png"))
    assert errors == []
    page.close()
