"""How far each learned method beats tuned FBP, read from the committed leaderboard entries.

For every dataset and split of the board, each learned entry is compared with
the FBP entry tuned under the same protocol (reference-tuned FBP for the
reference-supervised networks, self-tuned FBP for the self-supervised ones)
and with the best classical entry of that protocol (FBP, SIRT or TV, all tuned
on the validation volumes). Differences are paired over the same test volumes
and seeds (:func:`aiax_bench.leaderboard.rank.paired_difference_interval`):
an interval that contains 0 means "not separable from tuned FBP".

    python benchmarks/learned_vs_tuned.py [--board leaderboard] [--out benchmarks/learned-vs-tuned-fbp]

Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from aiax_bench.evaluation.catalog import format_value, rank_values
from aiax_bench.leaderboard.board import load_entries
from aiax_bench.leaderboard.rank import entry_table, paired_difference_interval
from aiax_bench.methods import get_method

METRICS = ("psnr/truth", "ssim/truth", "jaccard/pore", "pore_density_per_mm3/rel_error_truth")
CLASSICAL = ("fbp", "sirt", "tv")


def compare(board: Path) -> list[dict]:
    entries = [e for _, e in load_entries(board) if e["task"] == "enhance"]
    rows = []
    for learned in entries:
        if not get_method(learned["method"]).trainable:
            continue
        same = [e for e in entries if (e["dataset"], e["profile"], e["split"], e["supervision"]) ==
                (learned["dataset"], learned["profile"], learned["split"], learned["supervision"])]
        fbp = next((e for e in same if e["method"] == "fbp"), None)
        classical = [e for e in same if e["method"] in CLASSICAL]
        if fbp is None:
            continue
        ids = sorted(r["sample_id"] for r in learned["runs"][0]["records"])
        best = min(classical, key=lambda e: float(rank_values("psnr/truth", entry_table(e, "psnr/truth", ids)).mean()))
        row = {"dataset": learned["dataset"], "split": learned["split"], "supervision": learned["supervision"],
               "method": learned["method"], "entry": learned["id"], "tuned_fbp": fbp["id"],
               "tuned_fbp_settings": fbp["runs"][0].get("fit_summary", {}).get("selected"),
               "best_classical": best["id"], "n": f"{len(learned['seeds'])} seeds x {len(ids)} volumes",
               "metrics": {}}
        for metric in METRICS:
            if metric not in learned["metrics"] or metric not in fbp["metrics"]:
                continue
            row["metrics"][metric] = _gain(learned, fbp, metric, ids)
        row["psnr_gain_over_best_classical"] = _gain(learned, best, "psnr/truth", ids)
        rows.append(row)
    return rows


def _gain(learned: dict, other: dict, metric: str, ids: list[str]) -> dict:
    """How much better ``learned`` is than ``other`` on ``metric`` (positive: better), paired over volumes and seeds.

    Taken on the ranking scale (lower is better; |error| for signed errors), so the improvement is
    other − learned there; values are reported as the mean metric (mean |error| for signed errors).
    """
    a = rank_values(metric, entry_table(learned, metric, ids))
    b = rank_values(metric, entry_table(other, metric, ids))
    lo, hi = paired_difference_interval(b, a, seeds_a=other["seeds"], seeds_b=learned["seeds"])
    shown = (lambda t: float(np.abs(t).mean())) if "rel_error" in metric else (lambda t: float(t.mean()))
    return {"learned": shown(entry_table(learned, metric, ids)), "other": shown(entry_table(other, metric, ids)),
            "gain": float(b.mean() - a.mean()), "gain_ci95": [lo, hi], "separable": not (lo <= 0.0 <= hi)}


def markdown(rows: list[dict]) -> str:
    out = ["| dataset · split | protocol | learned method | PSNR vs truth (dB): learned / tuned FBP, gain [95 % CI] | "
           "pore Jaccard gain [95 % CI] | pore-count \\|error\\|: learned / tuned FBP | PSNR gain over the best "
           "tuned classical | n |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["metrics"]
        p, j, d = m.get("psnr/truth"), m.get("jaccard/pore"), m.get("pore_density_per_mm3/rel_error_truth")

        def gain(x, key):
            if x is None:
                return "–"
            lo, hi = x["gain_ci95"]
            return (f"{format_value(key, x['gain'])} [{format_value(key, lo)}, {format_value(key, hi)}]"
                    + ("" if x["separable"] else ", not separable"))

        psnr = "–" if p is None else f"{p['learned']:.2f} / {p['other']:.2f}, {gain(p, 'psnr/truth')}"
        dens = "–" if d is None else f"{100 * d['learned']:.1f} % / {100 * d['other']:.1f} %"
        best = r["psnr_gain_over_best_classical"]
        best_text = f"{gain(best, 'psnr/truth')} ({r['best_classical'].rsplit('--', 1)[-1]})"
        out.append(f"| {r['dataset']} · {r['split']} | {r['supervision']} | {r['method']} | {psnr} | "
                   f"{gain(j, 'jaccard/pore')} | {dens} | {best_text} | {r['n']} |")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", type=Path, default=Path("leaderboard"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/learned-vs-tuned-fbp"))
    args = parser.parse_args()
    rows = compare(args.board)
    args.out.with_suffix(".json").write_text(json.dumps({"comparisons": rows}, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
