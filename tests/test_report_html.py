"""The visual report: a self-contained HTML page and a static timeline figure, checked as a person sees them."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

import emoreason
from emoreason.viz import timeline
from emoreason.viz.html import render_html, save_html
from emoreason.viz.timeline import save_timeline_png

ARTIFACTS = Path(os.environ.get("EMOREASON_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts"))


@pytest.fixture(scope="module")
def smile_report(smile_video):
    return emoreason.explain(smile_video)


@pytest.fixture(scope="module")
def smile_html(smile_report, tmp_path_factory):
    return save_html(smile_report, tmp_path_factory.mktemp("html") / "report.html")


def test_page_is_self_contained(smile_html):
    page = smile_html.read_text()
    # Nothing is fetched: no external scripts, styles, images or fonts.
    assert not re.search(r"""(src|href)=["'](https?:)?//""", page)
    assert "@import" not in page and "url(http" not in page


def test_page_has_timeline_key_frames_and_linked_reasoning(smile_report, smile_html):
    page = smile_html.read_text()
    assert '<svg id="timeline"' in page
    for au in smile_report.aus:  # one line per AU found, each a link target
        assert f'id="series-{au.code}"' in page
    assert 'href="#series-AU12"' in page.split('id="reasoning"')[1]  # the chain of thought links AU12
    images = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)
    assert images, "no key frames"
    for data in images:
        assert Image.open(io.BytesIO(base64.b64decode(data))).size[0] > 50
    au12 = next(a for a in smile_report.aus if a.code == "AU12")
    assert f"{au12.apex_s:.2f} s: apex of" in page and "AU12" in page


def test_timeline_shows_the_strongest_aus_and_the_appearance_band(smile_report):
    from emoreason.viz.timeline import TOP_AUS, strongest_codes, timeline_svg

    svg = timeline_svg(smile_report)
    shown = strongest_codes(smile_report)
    assert len(shown) == min(TOP_AUS, len(smile_report.aus)) and "AU12" in shown
    for au in smile_report.aus:  # every AU is drawn; the weaker ones start hidden behind the toggle
        minor = f'class="au-series minor" data-au="{au.code}"' in svg
        assert minor == (au.code not in shown)
    assert '<g id="appearance-band">' in svg and "happiness" in svg.split('id="appearance-band"')[1]


def test_no_face_page_says_so_plainly(no_face_video, tmp_path):
    page = render_html(emoreason.explain(no_face_video))
    assert "No face was found in this video" in page
    assert "data:image/jpeg" not in page


def test_photo_report(smiling_photo):
    page = render_html(emoreason.explain(smiling_photo))
    assert "the photograph" in page and "happiness" in page


def test_static_timeline_png(smile_report, tmp_path):
    path = save_timeline_png(smile_report, tmp_path / "aus.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] >= 800


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
@pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_report_in_headless_chromium(smile_html, smile_report, no_face_video, tmp_path, monkeypatch):
    sync_api = pytest.importorskip("playwright.sync_api")
    no_face_html = save_html(emoreason.explain(no_face_video), tmp_path / "no_face.html")
    monkeypatch.setattr(timeline, "TOP_AUS", 2)  # so the smile's 4 AUs need the toggle
    toggle_html = save_html(smile_report, tmp_path / "toggle.html")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    flags = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync"]  # fmt: skip
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), headless=True, args=flags)
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        problems: list[str] = []
        page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda err: problems.append(str(err)))
        page.on("request", lambda req: problems.append(f"network: {req.url}") if req.url.startswith("http") else None)
        page.goto(smile_html.as_uri())
        assert page.locator("#timeline polyline").count() >= 1
        widths = page.eval_on_selector_all("figure.key-frame img", "imgs => imgs.map(i => i.naturalWidth)")
        assert widths and all(w > 0 for w in widths)  # every key frame decoded
        page.locator("#reasoning a.au-link[data-au='AU12']").first.click()
        assert "highlight" in (page.locator("#series-AU12").get_attribute("class") or "")
        assert page.locator("#appearance-band rect").count() > 0
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        page.goto(toggle_html.as_uri())
        minor = page.locator("#timeline .au-series.minor").first  # the weaker AUs appear after the toggle
        assert not minor.is_visible()
        page.locator("#toggle-aus").click()
        assert minor.is_visible()
        page.goto(no_face_html.as_uri())
        assert page.locator("#no-face").inner_text().startswith("No face was found")
        page.screenshot(path=str(ARTIFACTS / "report_no_face.png"), full_page=True)
        browser.close()
    assert problems == []
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000
