"""Render the ranked board: terminal text, Markdown (``README.md``) and a static HTML page.

Everything a submitter wrote (names, authors, URLs) is escaped for the
output it goes to; the HTML page also carries a Content-Security-Policy that
allows only its own inline script and style (by hash), so even markup that
slipped through could not run or load anything.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiax_bench.leaderboard.rank import Group, Row, metric_label

__all__ = ["render_html", "render_markdown", "render_terminal", "stale_outputs", "write_board"]

SUBMIT_HELP = """\
# 1. score the method (a registered name, or path/to/file.py:ClassName); writes aiax-results/.../*.json
aiax-bench evaluate --method METHOD --split 100proj
# 2. turn the result file(s) into an entry: leaderboard/submissions/<dataset>--<profile>--<split>--<name>.json
aiax-bench submit aiax-results/foam/100proj/METHOD-seed0-*.json --name "My method" \\
    --authors "A. Author" "B. Author" --code-url https://github.com/me/my-method [--paper DOI-or-URL]
# 3. re-run it (training again) from its recorded method, config, data and seeds, from a clean checkout;
#    marks it verified if the numbers match and keeps the re-run's records in leaderboard/verifications/
aiax-bench submit --verify <entry> --yes-run-code
# 4. rank, print, and rewrite leaderboard/README.md and leaderboard/index.html
aiax-bench leaderboard --write"""


# ----------------------------------------------------------------------------------------------- formatting
def _fmt_metric(metric: str, value: float | None) -> str:
    from aiax_bench.evaluation.catalog import format_value

    return format_value(metric, value)


def _fmt_seconds(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 600:
        return f"{seconds:.0f} s"
    if seconds < 3 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


_SECONDARY = {"psnr": "ssim", "jaccard": "dice", "dice": "jaccard", "f1": "mean_iou", "mcc": "dice"}
#: The porosity statistic every group shows beside its image metrics: the users' question is how many pores.
POROSITY_COLUMN = "pore_density_per_mm3/rel_error_truth"
#: The count a group of another task shows there instead, and its header: DCT blobs against the true blobs.
COUNT_COLUMNS = {"dct": ("count_error/blobs", "blob-count error")}


def _count_column(group: Group) -> tuple[str, str]:
    """The key and header of a group's count column."""
    return COUNT_COLUMNS.get(group.task, (POROSITY_COLUMN, "pore-count error vs truth"))


def _secondary(metric: str) -> str:
    """The second metric shown next to the ranking one: SSIM beside PSNR, Dice beside Jaccard or the Matthews
    correlation, the mean blob IoU beside the blob F1, else PSNR."""
    family, _, target = metric.partition("/")
    return f"{_SECONDARY.get(family, 'psnr')}/{target}"


def _lesion_strata(metric: str) -> list[str] | None:
    """A lesion Dice's strata keys (``dice_small/tumour`` ...), shown in place of the second metric: what the
    biomedical users report beside the overall Dice. None for other ranking metrics."""
    family, _, target = metric.partition("/")
    if family != "dice" or target in ("pore", "mean"):
        return None
    return [f"dice_{stratum}/{target}" for stratum in ("small", "medium", "large")]


def _inference_text(eff: dict[str, Any]) -> str:
    """Seconds per volume, and per 1,000 frames where the volumes are frame stacks."""
    text = _fmt_seconds(eff["inference_seconds_per_volume"])
    frames = eff.get("frames_per_volume")
    if frames:
        text += f" ({_fmt_seconds(1000 * eff['inference_seconds_per_volume'] / frames)} per 1,000 frames)"
    return text


def _rank_text(row: Row) -> str:
    if row.reference:
        return "ref"
    return f"{row.rank}=" if row.tied else str(row.rank)


def _cells(group: Group, row: Row) -> dict[str, tuple[str, str | float | None]]:
    """Column key -> (display text, sort key) of one row; the one place every format takes values from."""
    entry, eff = row.entry, row.entry["efficiency"]
    metric, second = group.metric, _secondary(group.metric)
    std = entry["metrics"][metric]["std_over_seeds"]
    sec = entry["metrics"].get(second, {}).get("mean")
    secondary = (_fmt_metric(second, sec), sec)
    strata = _lesion_strata(metric)
    if strata is not None:
        values = [entry["metrics"].get(k, {}).get("mean") for k in strata]
        secondary = (" / ".join(_fmt_metric(k, v) for k, v in zip(strata, values, strict=True)), values[0])
    count_key = _count_column(group)[0]
    pores = entry["metrics"].get(count_key, {}).get("mean")
    peak = eff["peak_memory_mb"]
    return {
        "rank": (_rank_text(row), row.rank if row.rank is not None else 10**6),
        "entry": (entry["name"], entry["name"].lower()),
        "method": (entry["method"], entry["method"]),
        "authors": (", ".join(entry["authors"]), ", ".join(entry["authors"]).lower()),
        "value": (_fmt_metric(metric, row.value), row.value),
        "ci": (f"{_fmt_metric(metric, row.ci_low)} – {_fmt_metric(metric, row.ci_high)}", row.ci_low),
        "std": ("—" if std is None else f"± {_fmt_metric(metric, std)}", std),
        "secondary": secondary,
        "pores": (_fmt_metric(count_key, pores), None if pores is None else abs(pores)),
        "n": (f"{row.n_seeds * row.n_volumes} ({row.n_seeds} × {row.n_volumes})", row.n_seeds * row.n_volumes),
        "train": (_fmt_seconds(eff["train_seconds"]), eff["train_seconds"]),
        "inference": (_inference_text(eff), eff["inference_seconds_per_volume"]),
        "parameters": (f"{eff['parameters']:,}", eff["parameters"]),
        "memory": ("—" if peak is None else f"{peak:,.0f} MB", peak),
        "status": (row.status, row.status),
    }


def _columns(group: Group) -> list[tuple[str, str, bool]]:
    """(key, header, numeric) of the board's columns."""
    pct = f"{group.level * 100:g} %"
    return [
        ("rank", "Rank", True), ("entry", "Entry", False), ("method", "Method", False),
        ("authors", "Authors", False), ("value", metric_label(group.metric), True),
        ("ci", f"{pct} CI", True), ("std", "± std over seeds", True),
        ("secondary", "Dice small / medium / large" if _lesion_strata(group.metric) else
         metric_label(_secondary(group.metric)), True),
        ("pores", _count_column(group)[1], True), ("n", "n (seeds × volumes)", True),
        ("train", "Training time", True), ("inference", "Inference / volume", True),
        ("parameters", "Parameters", True), ("memory", "Peak memory", True), ("status", "Status", False),
    ]


_DIRECTION_TEXT = {"higher": "higher is better", "lower": "lower is better",
                   "zero": "a signed error: ranked on the mean absolute error over volumes, closer to 0 is better"}


def _caption(group: Group) -> str:
    from aiax_bench.results import supervision_label

    vol = f"{group.n_volumes} test volume{'s' if group.n_volumes != 1 else ''}"
    protocol = supervision_label(group.supervision)
    return (f"Protocol {protocol}: entries rank only against entries of this protocol; rows marked ref "
            "(no training data, e.g. ramp FBP) are shown for reference, unranked. "
            f"Ranked on {metric_label(group.metric)} ({_DIRECTION_TEXT[group.direction]}): mean over {vol} and "
            f"over seeds, with a {group.level * 100:g} % hierarchical bootstrap interval over seeds and test "
            f"volumes ({group.n_boot} resamples). An entry is tied with the leader (1=) when a paired bootstrap "
            "of their difference over the same volumes and seeds cannot separate them.")


# ------------------------------------------------------------------------------------------------- terminal
def render_terminal(groups: Sequence[Group]) -> str:
    """Plain-text tables, one per dataset, profile and split."""
    from aiax_bench.tables import format_table

    if not groups:
        return "no leaderboard entries (yet): submit one with `aiax-bench submit RESULT --name ...`"
    keys = ["rank", "entry", "method", "value", "ci", "std", "secondary", "pores", "n", "train", "inference",
            "parameters", "memory", "status"]
    blocks = []
    for group in groups:
        headers = {k: h for k, h, _ in _columns(group)}
        lines = [f"{group.title}", f"  acquisition: {group.saving}", f"  {_caption(group)}"]
        if group.rows:
            rows = [[_terminal_safe(_cells(group, row)[k][0]) for k in keys] for row in group.rows]
            lines.append(format_table([headers[k] for k in keys], rows))
        for entry in group.missing:
            lines.append(f"  not ranked (no {group.metric}): {_terminal_safe(entry['name'])}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _terminal_safe(text: str) -> str:
    # The schema already refuses control characters; this keeps a terminal safe from escape sequences regardless.
    return "".join(ch if ch.isprintable() else "?" for ch in text)


# ------------------------------------------------------------------------------------------------- markdown
def _md(text: str) -> str:
    """Text that Markdown shows literally: no HTML, no emphasis, links, code or table cell breaks."""
    text = html.escape(text.replace("\\", "\\\\"), quote=False)
    for ch in "`*_[]|~":
        text = text.replace(ch, "\\" + ch)
    return text


def _md_link(text: str, url: str) -> str:
    # The schema allows no whitespace, quotes or angle brackets in URLs: <url> needs no further escaping.
    return f"[{_md(text)}](<{url}>)"


def render_markdown(groups: Sequence[Group]) -> str:
    """``leaderboard/README.md``: the board as GitHub-flavoured Markdown tables."""
    out = [
        "# aiax-bench leaderboard",
        "",
        "<!-- Generated by `aiax-bench leaderboard --write` from submissions/*.json: edit those, not this file. -->",
        "",
        "Methods for X-ray tomography scored by one harness on versioned datasets. The same table, with sortable",
        "columns, is in [index.html](index.html). Every entry is a JSON file in [submissions/](submissions/),",
        "validated against the schema shipped in `aiax_bench/leaderboard/submission.schema.json`.",
        "",
        "Status: **verified** — re-run (training again) by `aiax-bench submit --verify` from a clean commit with",
        "the current evaluator and reproduced within tolerance (the re-run's records are in",
        "[verifications/](verifications/), and `aiax-bench leaderboard --check` recomputes the comparison);",
        "**unverified** — not re-run yet; **not reproduced** — a re-run gave other numbers;",
        "**re-score** — scored by an older evaluator version, to be evaluated again.",
        "",
    ]
    if not groups:
        out += ["No entries yet.", ""]
    for group in groups:
        cols = _columns(group)
        out += [f"## {group.title}", "", f"**Acquisition:** {group.saving}.", "", _caption(group), ""]
        if group.rows:
            out.append("| " + " | ".join(h for _, h, _ in cols) + " |")
            out.append("|" + "|".join("---:" if numeric else "---" for _, _, numeric in cols) + "|")
            for row in group.rows:
                cells = _cells(group, row)
                shown = {k: _md(v[0]) for k, v in cells.items()}
                shown["entry"] = _md_link(row.entry["name"], row.entry["code_url"])
                if row.entry["paper"]:
                    shown["entry"] += " · " + _md_link("paper", row.entry["paper"])
                shown["status"] = f"**{shown['status']}**" if row.status == "verified" else shown["status"]
                out.append("| " + " | ".join(shown[k] for k, _, _ in cols) + " |")
            out.append("")
        for entry in group.missing:
            out += [f"Not ranked (no {_md(group.metric)}): {_md(entry['name'])}", ""]
    out += ["## How to submit", "",
            "Run from the repository root (the commands read and write `./leaderboard`; pass `--board DIR` for",
            "another folder):", "", "```", SUBMIT_HELP, "```", "",
            "A method of your own goes through exactly the same path: an installed package registering it under",
            "the `aiax_bench.methods` entry points, or `--method path/to/file.py:ClassName`. One multi-seed result",
            "file, or several result files of one method and config (one per seed), make one entry with mean ± std",
            "over seeds. An existing entry is never overwritten: choose another `--name`. CI runs",
            "`aiax-bench leaderboard --check`: every entry must validate and this page must be current.", ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------------- html
_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 84rem; padding: 0 1rem; color: #1b1b1b; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2.2rem; }
table { border-collapse: collapse; width: 100%; font-size: 0.92rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.35rem 0.5rem; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num { white-space: nowrap; }
th button { font: inherit; font-weight: 600; background: none; border: 0; padding: 0; cursor: pointer; color: inherit; }
th[aria-sort="ascending"] button::after { content: " ▲"; }
th[aria-sort="descending"] button::after { content: " ▼"; }
tr.tied td:first-child { font-weight: 700; }
.status-verified { color: #116329; font-weight: 600; } .status-re-score { color: #9a6700; }
.status-not-reproduced { color: #b42318; } .note, .saving { color: #444; } pre { background: #f4f4f4; padding: 0.8rem;
  overflow-x: auto; }
"""

# Sorting moves existing row nodes; it never builds markup from text, so cell contents stay inert.
_SCRIPT = """
(function () {
  "use strict";
  function sortKey(cell, numeric) {
    var raw = cell.getAttribute("data-sort");
    if (!numeric) { return raw === null ? cell.textContent.trim().toLowerCase() : raw; }
    var value = raw === null || raw === "" ? NaN : Number(raw);
    return value;
  }
  function sortTable(table, index, th) {
    var numeric = th.getAttribute("data-type") === "number";
    var direction = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    var heads = table.tHead.rows[0].cells;
    for (var h = 0; h < heads.length; h++) { heads[h].removeAttribute("aria-sort"); }
    th.setAttribute("aria-sort", direction);
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = sortKey(a.cells[index], numeric), y = sortKey(b.cells[index], numeric);
      var r;
      if (numeric) {
        if (isNaN(x) || isNaN(y)) { return isNaN(x) === isNaN(y) ? 0 : (isNaN(x) ? 1 : -1); }
        r = x - y;
      } else {
        r = x < y ? -1 : (x > y ? 1 : 0);
      }
      return direction === "ascending" ? r : -r;
    });
    for (var i = 0; i < rows.length; i++) { body.appendChild(rows[i]); }
  }
  var tables = document.querySelectorAll("table.board");
  Array.prototype.forEach.call(tables, function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, index) {
      var button = th.querySelector("button");
      if (button) { button.addEventListener("click", function () { sortTable(table, index, th); }); }
    });
  });
  document.documentElement.setAttribute("data-sortable", "ready");
}());
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _h(text: object) -> str:
    return html.escape(str(text), quote=True)


def _html_table(group: Group, index: int) -> str:
    cols = _columns(group)
    number_th, number_td = ' data-type="number" class="num"', ' class="num"'
    head = "".join(
        f'<th scope="col" data-col="{key}"{number_th if numeric else ""}>'
        f'<button type="button">{_h(label)}</button></th>' for key, label, numeric in cols)
    body = []
    for row in group.rows:
        cells = _cells(group, row)
        tds = []
        for key, _, numeric in cols:
            text, sort = cells[key]
            sort_attr = "" if sort is None else f' data-sort="{_h(repr(sort) if isinstance(sort, float) else sort)}"'
            if key == "entry":
                inner = (f'<a href="{_h(row.entry["code_url"])}" rel="noopener noreferrer nofollow">{_h(text)}</a>'
                         + (f' · <a href="{_h(row.entry["paper"])}" rel="noopener noreferrer nofollow">paper</a>'
                            if row.entry["paper"] else ""))
            elif key == "status":
                inner = f'<span class="status-{_h(row.status.replace(" ", "-"))}">{_h(text)}</span>'
            else:
                inner = _h(text)
            tds.append(f'<td{number_td if numeric else ""}{sort_attr}>{inner}</td>')
        cls = ' class="tied"' if row.tied else ""
        body.append(f'<tr data-entry="{_h(row.entry["id"])}"{cls}>{"".join(tds)}</tr>')
    return (f'<table class="board" id="board-{index}"><thead><tr>{head}</tr></thead>\n'
            f'<tbody>\n{chr(10).join(body)}\n</tbody></table>')


def render_html(groups: Sequence[Group]) -> str:
    """``leaderboard/index.html``: a static page, sortable columns by inline vanilla JS, no external resource."""
    csp = (f"default-src 'none'; script-src {_csp_hash(_SCRIPT)}; style-src {_csp_hash(_STYLE)}; "
           "img-src 'none'; base-uri 'none'; form-action 'none'")
    sections = []
    for index, group in enumerate(groups):
        parts = [f'<section aria-labelledby="group-{index}">', f'<h2 id="group-{index}">{_h(group.title)}</h2>',
                 f'<p class="saving"><strong>Acquisition:</strong> {_h(group.saving)}.</p>',
                 f'<p class="note">{_h(_caption(group))} Click a column header to sort.</p>']
        if group.rows:
            parts.append(_html_table(group, index))
        for entry in group.missing:
            parts.append(f"<p>Not ranked (no {_h(group.metric)}): {_h(entry['name'])}</p>")
        parts.append("</section>")
        sections.append("\n".join(parts))
    content = "\n".join(sections) if sections else "<p>No entries yet.</p>"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{html.escape(csp, quote=False)}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>aiax-bench leaderboard</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>aiax-bench leaderboard</h1>
<p class="note">Methods for X-ray tomography scored by one harness on versioned datasets. Status:
<strong>verified</strong> (re-run with the current evaluator and reproduced within tolerance), unverified,
not reproduced, or re-score (scored by an older evaluator version).</p>
<main>
{content}
</main>
<h2>How to submit</h2>
<pre>{_h(SUBMIT_HELP)}</pre>
<script>{_SCRIPT}</script>
</body>
</html>
"""


def _outputs(board: Path, groups: Sequence[Group]) -> dict[Path, str]:
    return {Path(board) / "README.md": render_markdown(groups), Path(board) / "index.html": render_html(groups)}


def write_board(board: Path, groups: Sequence[Group]) -> list[Path]:
    """Rewrite ``<board>/README.md`` and ``<board>/index.html`` (each replaced atomically)."""
    from aiax_bench.jsonio import write_replacing
    from aiax_bench.leaderboard.board import board_dir

    board_dir(board)
    return [write_replacing(path, text) for path, text in _outputs(board, groups).items()]


def stale_outputs(board: Path, groups: Sequence[Group]) -> list[Path]:
    """The rendered files that differ from what the submissions give (for CI)."""
    stale = []
    for path, text in _outputs(board, groups).items():
        try:
            current = path.read_text(encoding="utf-8")
        except OSError:
            current = None
        if current != text:
            stale.append(path)
    return stale
