"""The report in a real browser: headless Chromium at desktop and phone widths.

Every audio player must load (readyState >= 2, no media error), the console must stay free of errors,
the page must request nothing from the network, nothing may stick out sideways or scroll sideways,
and no text may be smaller than 12 px.

The browser is the system's Chromium (Debian's ``chromium`` package; ``.ci/run`` installs it), driven by
Playwright without a browser download: ``$TDA_CHROMIUM``, else ``chromium`` on PATH. Without one these
tests fail and say how to get it; ``TDA_SKIP_BROWSER=1`` skips them knowingly instead.
``TDA_REPORT_PAGE=PATH`` checks another page with the same checks (e.g. ``demo-out/report.html``), and
``TDA_REPORT_SCREENSHOT=PNG`` keeps the phone-width screenshot (docs/report-phone.png was made so).
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tda_plugin.report_files import build_report

#: (width, height, is_mobile): a desktop window, and an iPhone 12-15's CSS viewport
VIEWPORTS = {"desktop": (1280, 900, False), "phone": (390, 844, True)}
MIN_TEXT_PX = 12.0

_LAYOUT_PROBLEMS = """() => {
  const width = document.documentElement.clientWidth;
  const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className ? '.' + el.className : '');
  const problems = [];
  if (document.documentElement.scrollWidth > width)
    problems.push(`page is ${document.documentElement.scrollWidth}px wide in a ${width}px viewport`);
  for (const el of document.body.querySelectorAll('*')) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;  // not rendered (a closed <details>)
    if (box.left < -0.5 || box.right > width + 0.5)
      problems.push(`${name(el)} spans ${box.left.toFixed(1)}..${box.right.toFixed(1)}px`);
    if (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX !== 'visible')
      problems.push(`${name(el)} scrolls sideways (${el.scrollWidth} > ${el.clientWidth})`);
  }
  return problems;
}"""

_SMALL_TEXT = """(minimum) => {
  const small = [];
  for (const el of document.body.querySelectorAll('*')) {
    const text = Array.from(el.childNodes).filter(n => n.nodeType === Node.TEXT_NODE).map(n => n.textContent.trim()).join('');
    const size = parseFloat(getComputedStyle(el).fontSize);
    if (text && size < minimum) small.push(`${el.tagName.toLowerCase()} "${text.slice(0, 30)}" at ${size}px`);
  }
  return small;
}"""

_PLAYERS = """() => Array.from(document.querySelectorAll('audio')).map(a => ({
  label: a.getAttribute('aria-label') || '', ready: a.readyState, error: a.error ? a.error.code : null,
  duration: a.duration}))"""


@pytest.fixture(scope="module")
def chromium() -> str:
    if os.environ.get("TDA_SKIP_BROWSER"):
        pytest.skip("TDA_SKIP_BROWSER is set: the report is not checked in a browser")
    path = os.environ.get("TDA_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("no Chromium to check the report in: install Debian's package (apt-get install chromium; "
                    ".ci/run does), or set TDA_CHROMIUM=/path/to/chromium, or TDA_SKIP_BROWSER=1 to skip knowingly",
                    pytrace=False)
    return path


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def report_page(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The page to check: the demo's shape (several clips, each with its top segments' players) from the tiny index."""
    if os.environ.get("TDA_REPORT_PAGE"):
        return Path(os.environ["TDA_REPORT_PAGE"]).resolve()
    clips, index = request.getfixturevalue("attributed_clips"), request.getfixturevalue("tiny_index")
    out = tmp_path_factory.mktemp("page") / "report.html"
    return build_report(clips, out, index=index, title="tda-plugin demo: who made this music?",
                        summary=[("Prompted style's artist credited first", "2 of 4 clips")])


def _open(browser: Any, page_path: Path, viewport: str) -> tuple[Any, Any, dict[str, list[str]]]:
    """Load ``page_path`` at ``viewport`` and wait for its players; returns (context, page, what went wrong)."""
    width, height, mobile = VIEWPORTS[viewport]
    context = browser.new_context(viewport={"width": width, "height": height}, is_mobile=mobile, has_touch=mobile,
                                  device_scale_factor=1)
    url = page_path.as_uri()
    requests: list[str] = []
    console: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    page = context.new_page()
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    page.goto(url, wait_until="load")
    page.wait_for_function("() => Array.from(document.querySelectorAll('audio')).every(a => a.readyState >= 2 || a.error)",
                           timeout=60_000)
    players = page.evaluate(_PLAYERS)
    problems = {
        "players": [f"{p['label'] or '(unnamed)'}: readyState {p['ready']}, error {p['error']}" for p in players
                    if p["ready"] < 2 or p["error"] is not None or not p["label"]],
        "console": [m for m in console if m.startswith(("error", "pageerror"))],
        "requests": [r for r in requests if r != url],  # the page itself; audio is inline
        "layout": page.evaluate(_LAYOUT_PROBLEMS),
        "small text": page.evaluate(_SMALL_TEXT, MIN_TEXT_PX),
    }
    return context, page, problems


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_report_in_chromium(browser: Any, report_page: Path, viewport: str, tmp_path: Path) -> None:
    context, page, problems = _open(browser, report_page, viewport)
    assert problems == {"players": [], "console": [], "requests": [], "layout": [], "small text": []}
    assert page.locator("audio").count() >= 2
    # the settings chips fold away; the artist shares are tables with captions, per clip and across clips
    assert page.locator("details.method[open]").count() == 0
    assert page.locator("table.shares caption").count() == page.locator("table.shares").count() >= 2

    if viewport == "phone":
        shot = Path(os.environ.get("TDA_REPORT_SCREENSHOT") or tmp_path / "report-phone.png")
        clip, shares = page.locator("#clip-1").bounding_box(), page.locator("#clip-1 table.shares").bounding_box()
        top = clip["y"] - 8  # the first clip's card, from its title to its artist shares
        page.screenshot(path=str(shot), full_page=True,
                        clip={"x": 0, "y": top, "width": VIEWPORTS[viewport][0], "height": shares["y"] + shares["height"] + 16 - top})
        assert shot.stat().st_size > 0
    context.close()


def test_the_checks_catch_a_broken_page(browser: Any, tmp_path: Path) -> None:
    """Each check above fails on the fault it is there for, so a clean result means something."""
    broken = tmp_path / "broken.html"
    broken.write_text(
        '<!DOCTYPE html><html><head><meta name="viewport" content="width=device-width, initial-scale=1"></head><body>'
        '<audio controls preload="auto" aria-label="not audio" src="data:audio/mpeg;base64,AAAAAAAA"></audio>'
        '<p style="font-size: 9px">tiny chart label</p>'
        '<table><tr><td style="white-space: nowrap">' + "wide " * 200 + '</td></tr></table>'
        '<div style="overflow-x: auto; width: 100px"><span style="display: inline-block; width: 300px">x</span></div>'
        '<img alt="" src="http://127.0.0.1:9/remote.png">'
        '<script>console.error("broken on purpose")</script></body></html>', encoding="utf-8")
    context, _, problems = _open(browser, broken, "phone")
    context.close()
    assert problems["players"] == ["not audio: readyState 0, error 4"]
    assert any("broken on purpose" in m for m in problems["console"])
    assert problems["requests"] == ["http://127.0.0.1:9/remote.png"]
    assert any(p.startswith("page is ") for p in problems["layout"])
    assert any("scrolls sideways" in p for p in problems["layout"])
    assert problems["small text"] == ['p "tiny chart label" at 9px']


def test_long_unbroken_names_stay_inside_a_phone_screen(browser: Any, tmp_path: Path) -> None:
    import numpy as np

    from tda_plugin.report import ClipReport, SegmentAudio, write_html_report

    long = "Supercalifragilistic" * 6
    credit = {"rank": 1, "track_id": 1, "path": f"audio/{long}.wav", "title": long, "artist": long, "license": long,
              "score": -1.2345e-7, "share": 1.0}
    result = {"query": {"path": f"clips/{long}/{long}.wav", "prompt": long, "duration_s": 0.5},
              "model": {"adapter": "stable-audio", "fingerprint": "f" * 64}, "method": {long: long},
              "segments": [{"rank": 1, "segment_id": 7, "track_id": 1, "path": credit["path"], "title": long,
                            "artist": long, "start_s": 0.0, "end_s": 0.5, "score": 1e-7}],
              "credits": [credit], "artists": [{"artist": long, "share": 1.0}]}
    tone = (0.3 * np.sin(np.arange(8000) / 3)).astype(np.float32)
    page = write_html_report(tmp_path / "long.html", [ClipReport(result, tone, 16000, [SegmentAudio(7, tone)])],
                             title=long, summary=[(long, long)])
    context, page_, problems = _open(browser, page, "phone")
    page_.locator("details.method summary").click()  # the settings too, once opened
    problems["layout"] += page_.evaluate(_LAYOUT_PROBLEMS)
    context.close()
    assert problems == {"players": [], "console": [], "requests": [], "layout": [], "small text": []}
