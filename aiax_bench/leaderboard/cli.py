"""The ``submit`` and ``leaderboard`` commands, registered on the main parser by :func:`add_subcommands`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aiax_bench.errors import AiaxError, InputError

__all__ = ["add_subcommands", "cmd_leaderboard", "cmd_submit"]

_BOARD_HELP = ("leaderboard folder (default: ./leaderboard of the current directory, i.e. run from the "
               "repository root); nothing is written outside it")


def cmd_submit(args: argparse.Namespace) -> int:
    """``aiax-bench submit``: new entry from result files, and/or ``--verify`` of entries."""
    from aiax_bench.leaderboard.submit import submit
    from aiax_bench.leaderboard.verify import verify_entry

    board = Path(args.board)
    if args.name is None:
        if not args.verify:
            raise InputError("--name", "is missing", "give the entry a title, e.g. --name 'U-Net base 16'")
        if not args.inputs:
            raise InputError("ENTRY", "is missing", "name the entries to verify, e.g. `aiax-bench submit --verify "
                             "foam-2.0--small--100proj--fbp-reference-tuned --yes-run-code`")
        entries = args.inputs
    else:
        for option, value in (("--authors", args.authors), ("--code-url", args.code_url)):
            if not value:
                raise InputError(option, "is missing", "every entry names its authors and its code")
        if not args.inputs:
            raise InputError("RESULT", "is missing", "pass the result file(s) written by `aiax-bench evaluate`")
        path = submit([Path(p) for p in args.inputs], name=args.name, authors=args.authors,
                      code_url=args.code_url, paper=args.paper, board=board)
        print(f"entry written to {path}")
        if not args.verify:
            print(f"next: `aiax-bench submit --verify {path.stem} --yes-run-code` to re-run it, "
                  "`aiax-bench leaderboard --write` to re-render the board")
            return 0
        entries = [path.stem]
    failed = 0
    confirm = _ask if sys.stdin.isatty() and not args.yes_run_code else None
    for ref in entries:
        result = verify_entry(ref, board=board, yes_run_code=args.yes_run_code, confirm=confirm, rtol=args.rtol,
                              atol=args.atol, tracking_uri=args.tracking_uri,
                              log=lambda line: print(line, file=sys.stderr))
        failed += result["status"] != "verified"
        print(f"{Path(ref).name.removesuffix('.json')}: {result['status']}")
    return 1 if failed else 0


def _ask(question: str) -> bool:
    """An interactive yes/no question (only asked when stdin is a terminal)."""
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def cmd_leaderboard(args: argparse.Namespace) -> int:
    """``aiax-bench leaderboard``: rank, print, and with ``--write`` re-render README.md and index.html."""
    from aiax_bench.leaderboard.board import load_entries, submissions_dir
    from aiax_bench.leaderboard.rank import rank_entries
    from aiax_bench.leaderboard.render import render_terminal, stale_outputs, write_board

    board = Path(args.board)
    if args.check:
        problems = check_board(board)
        if not problems:
            stale = stale_outputs(board, rank_entries(load_entries(board), metric=args.metric,
                                                      n_boot=args.bootstrap))
            problems = [f"{p}: out of date with submissions/; run `aiax-bench leaderboard --write`" for p in stale]
        for line in problems:
            print(line)
        if not problems:
            print(f"ok: every entry in {submissions_dir(board)} is valid and the rendered board is up to date")
        return 1 if problems else 0
    entries = load_entries(board)
    groups = rank_entries(entries, metric=args.metric, dataset=args.dataset, split=args.split,
                          profile=args.profile, n_boot=args.bootstrap)
    print(render_terminal(groups))
    if args.write:
        # The files always show the whole board: filters only narrow what is printed.
        full = rank_entries(entries, metric=args.metric, n_boot=args.bootstrap)
        for path in write_board(board, full):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def check_board(board: Path) -> list[str]:
    """Every problem of every entry file (not only the first), one line each.

    The dataset hash is checked against the registry only, so that the
    verdict does not depend on what a machine has in its dataset cache.
    """
    from aiax_bench.leaderboard.board import entry_files, load_entry, submissions_dir

    problems = []
    for path in entry_files(board):
        try:
            load_entry(path)
        except AiaxError as exc:
            problems.append(f"{path}: {exc}")
    folder = submissions_dir(board)
    stray = [p for p in folder.iterdir() if p.suffix != ".json" and not p.name.startswith(".")] \
        if folder.exists() else []
    problems += [f"{p}: not a .json entry; only entries belong in {folder}" for p in stray]
    return problems


def add_subcommands(subparsers) -> None:
    """Register ``submit`` and ``leaderboard`` on the ``aiax-bench`` subparsers (each with ``func=``)."""
    from aiax_bench.leaderboard.rank import DEFAULT_METRIC, DEFAULT_METRICS
    from aiax_bench.leaderboard.verify import DEFAULT_ATOL, DEFAULT_RTOL

    p = subparsers.add_parser(
        "submit", help="turn result files into a leaderboard entry, or --verify entries",
        description="Write one validated JSON entry under BOARD/submissions/ from the result file(s) of "
                    "`aiax-bench evaluate` (one file per seed, or one multi-seed file: mean ± std over seeds). "
                    "An existing entry is never overwritten. With --verify, re-run the evaluation of the entry "
                    "(or of the ENTRY ids/paths given instead of result files when --name is absent), training "
                    "again, from a clean commit and only with --yes-run-code (or a yes at the prompt), and mark it "
                    "verified when every per-volume metric matches within tolerance; the re-run's records are kept "
                    "in BOARD/verifications/.",
        epilog="example: aiax-bench submit aiax-results/foam/100proj/fbp-seed0-*.json --name FBP "
               "--authors 'aiax-bench contributors' --code-url https://github.com/aiax/aiax-bench --verify "
               "--yes-run-code")
    p.add_argument("inputs", nargs="*", metavar="RESULT",
                   help="result JSON file(s) of `aiax-bench evaluate`; with --verify and no --name: entry ids "
                        "or paths to verify")
    p.add_argument("--name", help="entry title shown on the board, slugged into its file name (refused if it "
                                  "reads as a path: leading '/' or '~', '..', backslash)")
    p.add_argument("--authors", nargs="+", metavar="AUTHOR", help="one argument per author")
    p.add_argument("--code-url", help="http(s) URL of the method's code")
    p.add_argument("--paper", help="paper URL, DOI (10.xxxx/...) or arXiv id")
    p.add_argument("--board", default="leaderboard", help=_BOARD_HELP)
    p.add_argument("--verify", action="store_true",
                   help="re-run the evaluation (from the entry's method, config, data and seeds) and record "
                        "whether it reproduces")
    p.add_argument("--yes-run-code", action="store_true",
                   help="consent to --verify running the entry's method (a registered one, or a file inside this "
                        "checkout); without it the command asks on a terminal and refuses otherwise")
    p.add_argument("--rtol", type=float, default=DEFAULT_RTOL,
                   help=f"relative tolerance of --verify per metric and volume (default {DEFAULT_RTOL:g})")
    p.add_argument("--atol", type=float, default=DEFAULT_ATOL,
                   help=f"absolute tolerance of --verify (default {DEFAULT_ATOL:g})")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow store for the --verify re-runs (default: a temporary one, discarded)")
    p.set_defaults(func=cmd_submit)

    lb = subparsers.add_parser(
        "leaderboard", help="rank the entries and render the board (terminal, Markdown, HTML)",
        description="Rank the entries in BOARD/submissions per dataset, profile, split and supervision protocol "
                    "on one metric of the catalog, with hierarchical bootstrap intervals over seeds and test volumes "
                    "(an entry a paired bootstrap cannot separate from the leader is tied), n = seeds × volumes, "
                    "efficiency columns and the acquisition saving of the split. Prints the board; --write also "
                    "rewrites BOARD/README.md and BOARD/index.html (always the whole board).")
    lb.add_argument("--dataset", default=None, help="only this dataset (NAME or NAME@VERSION)")
    lb.add_argument("--split", default=None, help="only this split, e.g. 100proj")
    lb.add_argument("--profile", default=None, help="only this dataset profile, e.g. small")
    lb.add_argument("--metric", default=None,
                    help=f"ranking metric, FAMILY/TARGET of the metric catalog (default: the dataset's rank_metric, "
                         "psnr/truth from "
                         f"2.0 on, {DEFAULT_METRIC} on 1.0, {DEFAULT_METRICS['segment']} for segmentation; "
                         "e.g. ssim/truth)")
    lb.add_argument("--bootstrap", type=int, default=2000, metavar="N", help="bootstrap resamples (default 2000)")
    lb.add_argument("--board", default="leaderboard", help=_BOARD_HELP)
    lb.add_argument("--write", action="store_true", help="rewrite BOARD/README.md and BOARD/index.html")
    lb.add_argument("--check", action="store_true",
                    help="validate every entry file and check README.md and index.html are up to date (for CI); "
                         "exit 1 on any problem")
    lb.set_defaults(func=cmd_leaderboard)
