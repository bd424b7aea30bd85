"""From result files to leaderboard entries: ``aiax-bench submit``.

An entry is one JSON file under ``<board>/submissions/``. It is created
exclusively (a complete temporary file hard-linked to its final name), so
concurrent submissions never lose or corrupt one another, and an existing
entry is never overwritten.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aiax_bench.jsonio import write_new_file
from aiax_bench.leaderboard.board import DEFAULT_BOARD, entry_path
from aiax_bench.leaderboard.entry import build_entry, load_result
from aiax_bench.leaderboard.schema import validate_entry

__all__ = ["submit"]


def submit(results: Sequence[Path], *, name: str, authors: Sequence[str], code_url: str,
           paper: str | None = None, board: Path = DEFAULT_BOARD, base: Path | None = None) -> Path:
    """Turn result files into a new, validated entry under ``<board>/submissions``.

    Parameters
    ----------
    results : sequence of Path
        Result files of ``aiax-bench evaluate``: one multi-seed file, or one
        file per seed of the same method, config and data.
    name, authors, code_url, paper
        What the board shows.
    board : Path
        The leaderboard folder (``./leaderboard`` by default).
    base : Path, optional
        Where relative paths in the recorded command start (the current directory).

    Returns
    -------
    Path
        The new entry file.

    Raises
    ------
    InputError
        A result or option is invalid (the field is named).
    StoreError
        The entry exists already or cannot be written.
    """
    entry = build_entry([load_result(Path(p)) for p in results], name=name, authors=authors,
                        code_url=code_url, paper=paper, base=base)
    path = entry_path(board, entry["id"])
    validate_entry(entry, where=path.name, board=board)
    return write_new_file(path, entry)
