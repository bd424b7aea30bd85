"""The rendered leaderboard page in a real headless Chromium: it loads, sorts, and user text stays inert.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``),
so no driver or extra Python package is needed: only Debian's ``chromium``
package (``apt-get install -y chromium``). Without a browser the tests are
skipped, saying so.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from _board import entry_of, fake_result

from aiax_bench.leaderboard import rank_entries, write_board
from aiax_bench.leaderboard.board import load_entries

REPO = Path(__file__).resolve().parents[1]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--mute-audio"]
EVIL_NAMES = [
    '<img src=x onerror="window.__pwned=1">',
    "</td></tr></table><script>window.__pwned=2</script>",
    "<iframe srcdoc='<script>parent.__pwned=3</script>'></iframe> | **x** [y](javascript:alert(4))",
]
EVIL_AUTHOR = '"><svg onload="window.__pwned=5"><a href="javascript:alert(6)">x</a>'


def find_chromium() -> str | None:
    """A Chromium binary: ``$AIAX_BENCH_CHROMIUM``, or one of the usual names on PATH."""
    names = [os.environ.get("AIAX_BENCH_CHROMIUM"), "chromium", "chromium-browser", "google-chrome",
             "google-chrome-stable"]
    return next((shutil.which(n) for n in names if n and shutil.which(n)), None)


class Browser:
    """Headless Chromium over the DevTools protocol on file descriptors 3 (commands) and 4 (replies)."""

    def __init__(self, binary: str, profile: Path) -> None:
        cmd_read, self._cmd = os.pipe()
        self._reply, reply_write = os.pipe()

        def wire() -> None:  # in the child: the protocol wants exactly fds 3 and 4
            high_read = fcntl.fcntl(cmd_read, fcntl.F_DUPFD, 10)
            high_write = fcntl.fcntl(reply_write, fcntl.F_DUPFD, 10)
            os.dup2(high_read, 3)
            os.dup2(high_write, 4)

        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
                                      "about:blank"], preexec_fn=wire, close_fds=False,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(cmd_read)
        os.close(reply_write)
        self._buffer, self._id, self.events = b"", 0, []
        self.session = None

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._reply], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._reply, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium exited (code {self.proc.poll()})")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, *, timeout: float = 30.0) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if self.session:
            message["sessionId"] = self.session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._cmd, data):]
        deadline = time.monotonic() + timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def open(self, url: str) -> None:
        self.session = None
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Page.enable")
        self.send("Page.navigate", {"url": url})
        deadline = time.monotonic() + 30
        while self.js("document.readyState") != "complete":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not finish loading")
            time.sleep(0.05)

    def js(self, expression: str):
        reply = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (pressed and released) in the middle of the element."""
        x, y = self.js(f"""(() => {{ const el = document.querySelector({json.dumps(selector)});
            el.scrollIntoView({{block: "center"}}); const r = el.getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2]; }})()""")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def dialogs(self) -> list[dict]:
        return [e for e in self.events if e.get("method") == "Page.javascriptDialogOpening"]

    def close(self) -> None:
        try:
            self.session = None
            self.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd)
        os.close(self._reply)


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        pytest.skip("no Chromium found: install Debian's chromium package (`apt-get install -y chromium`) "
                    "or set AIAX_BENCH_CHROMIUM to run the browser checks of the leaderboard page")
    return binary


@pytest.fixture(scope="module")
def browser(chromium, tmp_path_factory):
    instance = Browser(chromium, tmp_path_factory.mktemp("chromium-profile"))
    yield instance
    instance.close()


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A board of five entries (three with hostile names, one with three seeds), rendered to index.html."""
    board = tmp_path_factory.mktemp("board")
    specs = [  # name, per-seed PSNR on the eight test volumes, parameters, training seconds
        (EVIL_NAMES[0], [[30.0, 31.0] * 4], 45_652, 600.0),
        (EVIL_NAMES[1], [[25.0, 26.0] * 4], 0, 0.0),
        (EVIL_NAMES[2], [[29.5, 31.5] * 4], 1_000_000, 3600.0),
        ("Zeta U-Net", [[20.0, 22.0] * 4, [21.0, 23.0] * 4, [19.0, 21.0] * 4], 500, 120.0),
        ("alpha MS-D", [[27.0, 27.5] * 4], 12, 30.0),
    ]
    entries = []
    for name, seeds, params, train in specs:
        efficiency = {"train_seconds": train, "inference_seconds_per_volume": 0.5, "parameters": params,
                      "peak_memory_mb": 700.0}
        result = fake_result(psnr=seeds, seeds=tuple(range(len(seeds))), profile="small", efficiency=efficiency)
        entries.append((None, entry_of(result, name=name, authors=(EVIL_AUTHOR, "B. Author"))))
    write_board(board, rank_entries(entries))
    return board / "index.html", [e for _, e in entries]


ROWS = "[...document.querySelectorAll('#board-0 tbody tr')]"


def _column(browser: Browser, key: str) -> list:
    index = browser.js(f"[...document.querySelectorAll('#board-0 thead th')].findIndex(th => th.dataset.col === "
                       f"{json.dumps(key)})")
    return browser.js(f"{ROWS}.map(tr => tr.cells[{index}].getAttribute('data-sort'))")


def test_page_loads_and_hostile_text_stays_inert(browser, page):
    index, entries = page
    browser.open(index.as_uri())
    assert browser.js("document.documentElement.dataset.sortable") == "ready"  # our script ran under the CSP
    assert browser.js("document.title") == "aiax-bench leaderboard"
    assert browser.js("document.scripts.length") == 1
    assert browser.js("document.querySelectorAll('img, svg, iframe, object, embed, form, input, link, base, "
                      "style:not(head > style)').length") == 0
    assert browser.js("[...document.querySelectorAll('*')].filter(el => [...el.attributes]"
                      ".some(a => a.name.startsWith('on'))).length") == 0
    assert browser.js("typeof window.__pwned") == "undefined"
    assert browser.dialogs() == []
    # The hostile strings are shown as text, exactly as submitted.
    names = browser.js(f"{ROWS}.map(tr => tr.cells[1].querySelector('a').textContent)")
    assert sorted(names) == sorted(e["name"] for e in entries)
    authors = browser.js(f"{ROWS}.map(tr => tr.cells[3].textContent)")
    assert set(authors) == {f"{EVIL_AUTHOR}, B. Author"}
    hrefs = browser.js("[...document.querySelectorAll('a')].map(a => a.protocol)")
    assert set(hrefs) == {"https:"}
    # Ranked order: best PSNR first; the one a paired comparison cannot separate from the leader tied at 1=.
    ranks = browser.js(f"{ROWS}.map(tr => tr.cells[0].textContent)")
    assert ranks[:2] == ["1=", "1="] and ranks[2:] == ["3", "4", "5"]


def test_columns_sort_on_click(browser, page):
    index, _ = page
    browser.open(index.as_uri())
    head = "#board-0 thead th[data-col='{}'] button"

    browser.click(head.format("value"))
    values = [float(v) for v in _column(browser, "value")]
    assert values == sorted(values)
    assert browser.js("document.querySelector(\"#board-0 th[data-col='value']\").getAttribute('aria-sort')") == \
        "ascending"
    browser.click(head.format("value"))
    values = [float(v) for v in _column(browser, "value")]
    assert values == sorted(values, reverse=True)

    browser.click(head.format("parameters"))
    params = [int(v) for v in _column(browser, "parameters")]
    assert params == [0, 12, 500, 45_652, 1_000_000]  # numeric, not text, order

    browser.click(head.format("entry"))
    names = _column(browser, "entry")
    assert names == sorted(names) and names[-1] == "zeta u-net"

    browser.click(head.format("std"))  # only the three-seed entry has a std over seeds: the others go last
    stds = _column(browser, "std")
    assert stds[0] is not None and stds[1:] == [None] * 4

    browser.click(head.format("train"))
    trains = [float(v) for v in _column(browser, "train")]
    assert trains == sorted(trains)
    assert browser.js("typeof window.__pwned") == "undefined" and browser.dialogs() == []


def test_dump_dom_runs_the_script(chromium, page, tmp_path):
    """The simplest mode (``--dump-dom``), as a CI job without the protocol would use it."""
    index, _ = page
    out = subprocess.run([chromium, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                          index.as_uri()], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'data-sortable="ready"' in out.stdout
    assert "<img" not in out.stdout and "<svg" not in out.stdout and "<iframe" not in out.stdout


def test_committed_board_page_loads(browser):
    index = REPO / "leaderboard" / "index.html"
    browser.open(index.as_uri())
    assert browser.js("document.documentElement.dataset.sortable") == "ready"
    rows = browser.js("document.querySelectorAll('table.board tbody tr').length")
    shown = sum(len(group.rows) for group in rank_entries(load_entries(REPO / "leaderboard")))
    assert rows == shown > 0
