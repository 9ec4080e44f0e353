"""The report site as a reader sees it: the index and every report opened in real headless Chromium.

Chromium is driven through the DevTools protocol over a pipe (--remote-debugging-pipe: no port, no
extra Python package). For each page the test asks the browser itself whether every image decoded,
checks that every local link points at an existing file or anchor, that each report shows its
figures and keeps its code folded, and that no warning or traceback is on the page. Skipped when
Chromium is absent (`.ci/run` installs Debian's). The site is the session's `report_site` (conftest):
notebooks 01, 02 and 04 run by reproduce on tiny synthetic data.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--window-size=1280,1600", "--remote-debugging-pipe"]

#: What the page reports about itself, evaluated in the browser after the load event.
PAGE_FACTS = """(() => {
  const visible = e => { const r = e.getBoundingClientRect(); return e.checkVisibility() && r.width > 0 && r.height > 0; };
  const imgs = Array.from(document.images);
  return {
    title: document.title,
    images: imgs.map(i => ({src: i.getAttribute('src').slice(0, 40), complete: i.complete, width: i.naturalWidth,
                            shown: visible(i), data_png: i.src.startsWith('data:image/png')})),
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
    ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
    code_blocks: document.querySelectorAll('details.zs-code').length,
    open_code: document.querySelectorAll('details.zs-code[open]').length,
    visible_code: Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputArea')).filter(visible).length,
    text: document.body.innerText,
  };
})()"""


class Chromium:
    """A minimal DevTools-protocol client over --remote-debugging-pipe (fd 3: commands, fd 4: replies)."""

    def __init__(self, timeout: float = 60.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="zs-chromium-")
        cmd_r, self._cmd_w = os.pipe()
        self._out_r, out_w = os.pipe()

        def child_fds():  # the browser reads commands on fd 3 and writes replies on fd 4
            import fcntl

            high_r, high_w = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10), fcntl.fcntl(out_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=child_fds,
                                     close_fds=False)
        os.close(cmd_r)
        os.close(out_w)
        self._buf = b""
        self._id = 0

    def _read_message(self, deadline: float) -> dict:
        import select

        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer")
            ready, _, _ = select.select([self._out_r], [], [], left)
            if ready:
                chunk = os.read(self._out_r, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None, wait_event: str | None = None):
        """Send one command; return its result (and, with wait_event, wait for that event too)."""
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        result, seen_event = None, wait_event is None
        while result is None or not seen_event:
            m = self._read_message(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                result = m.get("result", {})
            elif wait_event and m.get("method") == wait_event:
                seen_event = True
        return result

    def open(self, url: str) -> str:
        """A new tab showing url, loaded; returns its session id."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Page.enable", session=session)
        self.send("Page.navigate", {"url": url}, session=session, wait_event="Page.loadEventFired")
        return session

    def evaluate(self, session: str, expression: str):
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
        return r["result"]["value"]

    def screenshot(self, session: str, path: Path, width: int = 1280) -> Path:
        import base64

        height = self.evaluate(session, "document.documentElement.scrollHeight")
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": min(int(height), 4000),
                                                          "deviceScaleFactor": 1, "mobile": False}, session=session)
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session)
        Path(path).write_bytes(base64.b64decode(data["data"]))
        return Path(path)

    def close(self):
        try:
            self.send("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_w)
        os.close(self._out_r)
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    b = Chromium()
    try:
        yield b
    finally:
        b.close()


def _facts(browser, page: Path) -> dict:
    session = browser.open(page.resolve().as_uri())
    facts = browser.evaluate(session, PAGE_FACTS)
    facts["session"] = session
    return facts


def _check_links(facts: dict, page: Path) -> list[str]:
    """Every link to a local file resolves to an existing file (and its #anchor, on this page, exists)."""
    broken = []
    for href in facts["links"]:
        url = urlparse(href)
        if url.scheme in ("http", "https", "mailto"):
            continue  # the tests have no network; external links are the authors' references
        assert url.scheme == "file", f"{page.name}: unexpected link {href}"
        target = Path(unquote(url.path))
        if not target.exists():
            broken.append(href)
        elif url.fragment and target.resolve() == page.resolve() and url.fragment not in facts["ids"]:
            broken.append(href)
    return broken


def _check_images(facts: dict, page: Path) -> None:
    bad = [i["src"] for i in facts["images"] if not (i["complete"] and i["width"] > 0)]
    assert not bad, f"{page.name}: broken images {bad}"


def test_index_opens_with_findings_thumbnails_and_working_links(browser, report_site):
    out, index, names = report_site
    facts = _facts(browser, index)
    _check_images(facts, index)
    assert not _check_links(facts, index), f"broken links in the index: {_check_links(facts, index)}"
    text = facts["text"]
    for name in names:  # each notebook: its report linked, its findings and its thumbnail shown
        assert (out / f"{name}.html").as_uri() in facts["links"]
        assert any(i["src"] == f"{name}.thumb.png" and i["shown"] for i in facts["images"]), name
    assert "1-crop accuracy is" in text and "Random weights: these numbers check the pipeline" in text
    assert text.index("1-crop accuracy is") < text.index("Provenance")  # findings lead, provenance below
    assert "{" not in text.split("Provenance")[0]  # no raw JSON above the provenance


def test_explorer_click_shows_the_crop(browser, report_site):
    """The view explorer of notebook 01's sweep, linked from the index, opened from file:// with no server:
    a click on a cell loads that image's crop sprite (linked relatively), positions that view in the
    crop box and lists its stored top-5; a filter button shows the images it names."""
    out, index, _ = report_site
    pages = sorted(out.glob("explorer-*.html"))
    assert len(pages) == 1
    assert pages[0].as_uri() in _facts(browser, index)["links"]
    facts = _facts(browser, pages[0])
    _check_images(facts, pages[0])  # the embedded thumbnails
    session = facts["session"]
    data = browser.evaluate(session, "JSON.parse(document.getElementById('data').textContent)")
    n_scales, crop, n_anchors = len(data["scales"]), data["crop"], data["grid"] ** 2
    assert browser.evaluate(session, "document.querySelectorAll('.card').length") == len(data["images"]) == 6
    view = n_anchors + 5  # second scale, anchor row 1, column 2
    got = browser.send("Runtime.evaluate", {"expression": """(async () => {
      document.querySelectorAll('.card')[1].querySelector('.cell[data-view="%d"]').click();
      const sp = document.getElementById('sprite');
      await new Promise(ok => { if (sp.complete && sp.naturalWidth) ok(); else { sp.onload = ok; sp.onerror = ok; } });
      const box = document.getElementById('crop').getBoundingClientRect();
      return {w: sp.naturalWidth, h: sp.naturalHeight, left: sp.style.left, top: sp.style.top, src: sp.getAttribute('src'),
              box: [box.width, box.height], top5: Array.from(document.querySelectorAll('#top5 tr')).map(r => r.innerText),
              name: document.getElementById('viewname').innerText};
    })()""" % view, "awaitPromise": True, "returnByValue": True}, session=session)["result"]["value"]
    assert (got["w"], got["h"]) == (n_anchors * crop, n_scales * crop)  # the sprite loaded from file://
    assert got["src"] == data["images"][1]["sprite"] and (out / got["src"]).is_file()
    assert (got["left"], got["top"]) == (f"-{5 * crop}px", f"-{crop}px") and got["box"] == [crop, crop]
    assert got["name"].startswith(f"LOC:1_2_Size:{data['scales'][1]}")
    assert len(got["top5"]) == 5 and got["top5"][0].startswith("1.")
    never = browser.evaluate(session, "document.querySelector('#filters button[data-filter=never]').click();"
                                      "document.querySelectorAll('.card').length")
    assert never == sum("never" in im["flags"] for im in data["images"])


def test_every_report_shows_its_figures_with_code_folded(browser, report_site):
    out, _, names = report_site
    for name in names:
        page = out / f"{name}.html"
        facts = _facts(browser, page)
        _check_images(facts, page)
        assert not _check_links(facts, page), f"{name}: broken links {_check_links(facts, page)}"
        figures = [i for i in facts["images"] if i["data_png"] and i["shown"] and i["width"] >= 100]
        assert len(figures) >= 3, f"{name}: {len(figures)} figures shown"
        assert facts["code_blocks"] >= 5 and facts["open_code"] == 0 and facts["visible_code"] == 0
        text = facts["text"]
        for unwanted in ("IProgress", "Traceback", "Warning", "pip install", "injected-parameters", "Open In Colab"):
            assert unwanted not in text, f"{name} shows {unwanted!r}"
        assert text.count("This report was produced by profile") >= 2
        assert "Headline findings" in text


def test_screenshots_of_the_index_and_a_report(browser, report_site, tmp_path):
    """Screenshots for a person to look at; $ZOOMSTUDY_SCREENSHOTS keeps them in that folder."""
    out, index, names = report_site
    keep = Path(os.environ.get("ZOOMSTUDY_SCREENSHOTS", tmp_path))
    keep.mkdir(parents=True, exist_ok=True)
    for page in (index, out / f"{names[0]}.html"):
        session = browser.open(page.resolve().as_uri())
        shot = browser.screenshot(session, keep / f"{page.stem}.png")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
