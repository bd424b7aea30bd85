"""The rendered leaderboard page in a real headless Chromium: it loads, sorts, and user text stays inert.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``),
so no driver or extra Python package is needed: only Debian's ``chromium``
package (``apt-get install -y chromium``). Without a browser the tests are
skipped, saying so.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from _board import entry_of, fake_result
from _browser import FLAGS, Browser

from aiax_bench.leaderboard import rank_entries, write_board
from aiax_bench.leaderboard.board import load_entries

REPO = Path(__file__).resolve().parents[1]
EVIL_NAMES = [
    '<img src=x onerror="window.__pwned=1">',
    "</td></tr></table><script>window.__pwned=2</script>",
    "<iframe srcdoc='<script>parent.__pwned=3</script>'></iframe> | **x** [y](javascript:alert(4))",
]
EVIL_AUTHOR = '"><svg onload="window.__pwned=5"><a href="javascript:alert(6)">x</a>'


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
