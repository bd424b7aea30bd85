"""MS-D network: training memory and speed against depth, and inference batch against speed.

Training: one process per row runs Adam steps of an MS-D network (one input
slice, batch 4, square patches) and reports its peak resident memory (the
whole process and the part the steps added) and the median seconds per step.

* ``buffer``: today's formulation (one buffer of all maps, a custom backward
  pass; memory linear in the depth);
* ``conv``: the textbook dilated convolution over the concatenated maps
  (what generic autograd stores: memory in depth²), the peer;
* ``before``: the per-layer ``taps`` formulation of the commit given with
  ``--before`` (its ``aiax_bench/baselines/_nets.py`` is loaded from git).

Inference: seconds per 512² slice through the trained-method path
(:func:`aiax_bench.training.predict_volume`) at fixed batches and at the
batch the method chooses by bytes.

Usage::

    python benchmarks/bench_msd.py --before 7b50d56 --output benchmarks/msd.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _load_nets(source: Path | None):
    if source is None:
        from aiax_bench.baselines import _nets
        return _nets
    spec = importlib.util.spec_from_file_location("_nets_before", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_row(depth: int, formulation: str, patch: int, batch: int, steps: int, source: str | None) -> dict:
    """Run in a fresh process: peak memory and seconds per step of ``steps`` Adam steps."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    nets = _load_nets(Path(source) if source else None)
    net = nets.MSDNetwork(1, 1, depth=depth, formulation="conv" if formulation == "conv" else "taps")
    torch.nn.init.normal_(net.final.weight, 0.0, 0.01)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = torch.randn(batch, 1, patch, patch), torch.randn(batch, 1, patch, patch)
    before = _rss_bytes()
    times = []
    for _ in range(steps + 1):  # the first step warms the allocator up and is not timed
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(net(x), y).backward()
        optimizer.step()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"depth": depth, "formulation": formulation, "patch": patch, "batch": batch,
            "s_per_step": round(statistics.median(times[1:]), 3), "peak_rss_mb": round(peak / 2**20),
            "added_by_training_mb": round((peak - before) / 2**20)}


def inference_rows(size: int, n_slices: int, batches: list[int]) -> list[dict]:
    import numpy as np
    import torch

    from aiax_bench.baselines.msdnet import MSDNet
    from aiax_bench.training import predict_volume
    from aiax_bench.training.inference import activation_bytes_per_pixel, inference_plan

    torch.set_num_threads(1)
    method = MSDNet({"progress": False})
    model = method._new_model(seed=0)
    model.set_statistics(input_mean=0.0, input_std=1.0, output_mean=0.0, output_std=1.0)
    volume = np.random.default_rng(0).normal(size=(n_slices, size, size)).astype(np.float32)
    slices = method.config.slices
    chosen, _ = inference_plan(activation_bytes_per_pixel(model, slices), (size, size), device=torch.device("cpu"))
    rows = []
    for batch in [*batches, chosen]:
        predict_volume(model, volume[:batch], slices=slices, batch_size=batch)
        times = []
        for _ in range(3):  # the median of three: the machine may be shared
            t0 = time.perf_counter()
            predict_volume(model, volume, slices=slices, batch_size=batch)
            times.append(time.perf_counter() - t0)
        seconds = statistics.median(times)
        rows.append({"slice": f"{size}x{size}", "batch": batch, "chosen_by_bytes": batch == chosen,
                     "s_per_slice": round(seconds / n_slices, 3)})
    return rows


def _in_subprocess(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, "--row", *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--before", default=None, help="git commit whose MS-D formulation is measured too")
    parser.add_argument("--inference-size", type=int, default=512)
    parser.add_argument("--inference-slices", type=int, default=16)
    parser.add_argument("--output", type=Path, default=Path("msd.json"))
    parser.add_argument("--row", nargs=6, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.row:
        depth, formulation, patch, batch, steps, source = args.row
        print(json.dumps(train_row(int(depth), formulation, int(patch), int(batch), int(steps),
                                   None if source == "-" else source)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        source = "-"
        formulations = ["buffer", "conv"]
        if args.before:
            source = str(Path(tmp) / "nets_before.py")
            text = subprocess.run(["git", "-C", str(ROOT), "show", f"{args.before}:aiax_bench/baselines/_nets.py"],
                                  capture_output=True, text=True, check=True).stdout
            Path(source).write_text(text)
            formulations.append("before")
        # Rows already in the output (same depth, formulation, patch, batch) are kept: the run resumes.
        done = json.loads(args.output.read_text()).get("training", []) if args.output.exists() else []
        training = []
        for depth in args.depths:
            for formulation in formulations:
                row = next((r for r in done if (r["depth"], r["formulation"], r["patch"], r["batch"]) ==
                            (depth, formulation, args.patch, args.batch)), None)
                if row is None:
                    row = _in_subprocess([str(depth), formulation, str(args.patch), str(args.batch),
                                          str(args.steps), source if formulation == "before" else "-"])
                    args.output.write_text(json.dumps({"training": [*training, row]}, indent=2) + "\n")
                training.append(row)
                print(row, file=sys.stderr)
    for row in training:
        peer = next(r for r in training if r["depth"] == row["depth"] and r["formulation"] == "conv")
        row["memory_vs_conv"] = round(row["added_by_training_mb"] / peer["added_by_training_mb"], 3)
        row["time_vs_conv"] = round(row["s_per_step"] / peer["s_per_step"], 3)
    inference = inference_rows(args.inference_size, args.inference_slices, [1, 2, 4, 8])
    from aiax_bench.provenance import hardware

    report = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "threads": 1, "before": args.before,
              "hardware": hardware(), "training": training, "inference": inference}
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(_table(training, ["depth", "formulation", "patch", "batch", "s_per_step", "peak_rss_mb",
                            "added_by_training_mb", "memory_vs_conv", "time_vs_conv"]))
    print()
    print(_table(inference, ["slice", "batch", "chosen_by_bytes", "s_per_slice"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
