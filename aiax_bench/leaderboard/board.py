"""The board folder: where entries live, and reading them back (each one checked on read)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aiax_bench.errors import InputError, StoreError
from aiax_bench.jsonio import read_json
from aiax_bench.leaderboard.entry import entry_id
from aiax_bench.leaderboard.schema import protocol_split, validate_entry

__all__ = ["DEFAULT_BOARD", "board_dir", "entry_files", "entry_path", "find_entry", "load_entries", "load_entry",
           "submissions_dir"]

#: The leaderboard folder, relative to the current directory (the repository root).
DEFAULT_BOARD = Path("leaderboard")


def board_dir(board: Path) -> Path:
    """The leaderboard folder, which must exist (so a typo never scatters boards around)."""
    if not Path(board).is_dir():
        raise StoreError(board, "is not a leaderboard folder",
                         "run from the repository root (it has leaderboard/) or pass --board DIR")
    return Path(board)


def submissions_dir(board: Path, *, create: bool = False) -> Path:
    """``<board>/submissions``, refusing one that (through a link) lies outside the board."""
    board = board_dir(board)
    folder = board / "submissions"
    if create:
        try:
            folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise StoreError(folder, f"cannot create ({exc.strerror or exc})", "check the permissions") from None
    if folder.exists() and not folder.resolve().is_relative_to(board.resolve()):
        raise StoreError(folder, "points outside the leaderboard folder", "make submissions/ a plain folder")
    return folder


def entry_path(board: Path, entry_id_: str) -> Path:
    """Where entry ``entry_id_`` lives; refuses any id that would leave ``<board>/submissions``."""
    folder = submissions_dir(board, create=True)
    path = folder / f"{entry_id_}.json"
    if (not re.fullmatch(r"[a-z0-9][a-z0-9.-]*[a-z0-9]", entry_id_)
            or path.resolve().parent != folder.resolve()):
        raise InputError("entry name", f"{entry_id_!r} would leave {folder}",
                         "entry names are letters, digits, '.', '-' only")
    return path










def find_entry(board: Path, ref: str | Path) -> Path:
    """The entry file named by its id or its path, which must lie in ``<board>/submissions``."""
    folder = submissions_dir(board)
    candidate = Path(ref)
    path = candidate if candidate.suffix == ".json" else folder / f"{ref}.json"
    if not path.is_file():
        raise StoreError(path, "no such entry", f"entries are the files in {folder}")
    if path.resolve().parent != folder.resolve():
        raise InputError("ENTRY", f"{ref!s} is not in {folder}", "name an entry of this leaderboard")
    return path


def load_entry(path: Path) -> dict[str, Any]:
    """One entry file, validated (schema, registry, aggregates) and matching its file name.

    Raises
    ------
    InputError
        Naming the file and the field at fault.
    """
    path = Path(path)
    # The board folder is two levels up (<board>/submissions/<id>.json): verification records live there.
    entry = validate_entry(read_json(path), where=path.name, board=path.parent.parent)
    try:
        expected = entry_id(dataset=entry["dataset"], profile=entry["profile"], split=protocol_split(entry),
                            name=entry["name"])
    except InputError as exc:
        raise InputError(f"{path.name}: field name", exc.problem, exc.expected) from None
    if entry["id"] != expected or path.stem != expected:
        raise InputError(f"{path.name}: field id", f"is {entry['id']!r} in a file named {path.name!r}",
                         f"expected {expected!r} for both (dataset--profile--split--name)")
    return entry


def entry_files(board: Path) -> list[Path]:
    """The entry files of the board, skipping hidden ones (temporary files of writes in progress)."""
    folder = submissions_dir(board)
    if not folder.exists():
        return []
    return [p for p in sorted(folder.glob("*.json")) if not p.name.startswith(".")]


def load_entries(board: Path = DEFAULT_BOARD) -> list[tuple[Path, dict[str, Any]]]:
    """Every entry of the board, validated, in file-name order.

    Raises
    ------
    InputError
        On the first invalid entry, naming the file and the field.
    """
    return [(path, load_entry(path)) for path in entry_files(board)]
