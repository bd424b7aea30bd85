"""The leaderboard: submissions (one validated JSON file each), verification, ranking and rendering.

Typical use goes through the CLI (``aiax-bench submit``, ``aiax-bench leaderboard``); the
functions below are the same steps for scripts and tests.
"""

from aiax_bench.leaderboard.board import load_entries
from aiax_bench.leaderboard.entry import build_entry, load_result
from aiax_bench.leaderboard.rank import (
    DEFAULT_METRIC,
    DEFAULT_METRICS,
    acquisition_saving,
    bootstrap_intervals,
    rank_entries,
)
from aiax_bench.leaderboard.render import render_html, render_markdown, render_terminal, write_board
from aiax_bench.leaderboard.schema import load_schema, validate_entry
from aiax_bench.leaderboard.submit import submit
from aiax_bench.leaderboard.verify import verify_entry

__all__ = [
    "DEFAULT_METRIC",
    "DEFAULT_METRICS",
    "acquisition_saving",
    "bootstrap_intervals",
    "build_entry",
    "load_entries",
    "load_result",
    "load_schema",
    "rank_entries",
    "render_html",
    "render_markdown",
    "render_terminal",
    "submit",
    "validate_entry",
    "verify_entry",
    "write_board",
]
