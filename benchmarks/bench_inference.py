"""Inference throughput and training time of the learned baselines (msdnet, unet).

* Inference: slices per second of :func:`aiax_bench.training.predict_volume`
  (whole slices, 2.5D stacks, the method's default batch) on volumes of
  256² and 512² slices. Throughput does not depend on the weights, so
  untrained networks with the default architecture are timed.
* Training: wall-clock time to the default budget (``max_steps`` of the
  ``cpu`` preset). By default it is estimated from a timed run of
  ``--train-steps`` steps of the real training loop on synthetic 128³ data,
  plus the validations the full budget does; ``--full DATA_ROOT`` trains on
  ``foam@1.0`` (small profile, split 100proj) from that cache instead and
  reports the measured time.

Usage::

    python benchmarks/bench_inference.py --output bench_inference.json
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_inference.py --threads 2

On a machine shared with other CPU-heavy work, OpenMP's default busy-waiting
makes 2 threads far slower than 1; ``OMP_WAIT_POLICY=PASSIVE`` (set before
Python starts) or ``--threads 1`` avoids it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from aiax_bench.baselines.msdnet import MSDNet
from aiax_bench.baselines.unet import UNet
from aiax_bench.data.torch_adapter import RandomPatches, SliceStacks
from aiax_bench.recon.device import default_device
from aiax_bench.training import TrainSettings, make_loss, predict_volume, train
from aiax_bench.training.trainer import evaluate_loss

METHODS = {"msdnet": MSDNet, "unet": UNet}


def _synthetic(nz: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A foam-like pair: solid 4.2 1/cm with voids, and a noisy copy (1/cm)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:nz, :n, :n]
    clean = np.full((nz, n, n), 4.2, dtype=np.float32)
    for _ in range(max(4, n // 8)):
        cz, cy, cx = rng.uniform(0, nz), rng.uniform(0, n), rng.uniform(0, n)
        r = rng.uniform(2, n / 10)
        clean[(z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 < r * r] = 0.0
    noisy = clean + rng.normal(0, 0.6, clean.shape).astype(np.float32)
    return noisy, clean


def bench_inference(name: str, size: int, n_slices: int, repeat: int, device: torch.device) -> dict:
    method = METHODS[name]({"progress": False})
    model = method._new_model(seed=0)
    volume, _ = _synthetic(n_slices, size)
    model.set_statistics(input_mean=float(volume.mean()), input_std=float(volume.std()),
                         output_mean=2.0, output_std=2.0)
    c = method.config
    predict_volume(model, volume[:c.slices], slices=c.slices, batch_size=c.inference_batch_size, device=device)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        predict_volume(model, volume, slices=c.slices, batch_size=c.inference_batch_size, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    t = statistics.median(times)
    return {"method": name, "slice": f"{size}x{size}", "slices": n_slices, "batch": c.inference_batch_size,
            "seconds": round(t, 3), "slices_per_s": round(n_slices / t, 2),
            "parameters": method.parameter_count()}


def bench_training_estimate(name: str, steps: int, device: torch.device) -> dict:
    method = METHODS[name]({"progress": False})
    c = method.config
    low, high = _synthetic(128, 128, seed=1)
    samples = [{"low": low, "high": high}]
    model = method._new_model(seed=0)
    model.set_statistics(input_mean=float(low.mean()), input_std=float(low.std()), output_mean=0.0,
                         output_std=1.0)
    loss = make_loss(c.loss, scale=1.0, data_range=4.2)
    patches = RandomPatches(samples, slices=c.slices, patch_size=c.patch_size, target="high", length=4096)
    val = SliceStacks(samples, slices=c.slices, slice_step=c.val_slice_step)
    settings = TrainSettings(max_steps=steps, batch_size=c.batch_size, learning_rate=c.learning_rate,
                             val_every=10**9, progress=False)
    train(model, loss, patches, val, settings=settings, device=device)  # warm-up (imports, allocator)
    model = method._new_model(seed=0)
    t0 = time.perf_counter()
    train(model, loss, patches, val, settings=settings, device=device)
    run = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluate_loss(model, loss, val, device=device, batch_size=max(1, c.batch_size // 2))
    one_val = time.perf_counter() - t0
    per_step = (run - one_val) / steps  # the timed run ends with one validation
    n_val = -(-c.max_steps // c.val_every)
    return {"method": name, "max_steps": c.max_steps, "patch": c.patch_size, "batch": c.batch_size,
            "s_per_step": round(per_step, 4), "validation_s": round(one_val, 3),
            "train_seconds": round(per_step * c.max_steps + n_val * one_val, 1), "measured": False,
            "parameters": method.parameter_count()}


def bench_training_full(name: str, root: Path) -> dict:
    from aiax_bench.data.loader import load

    split = load("foam@1.0", profile="small", root=root, build=False).split("100proj")
    method = METHODS[name]({"progress": False})
    t0 = time.perf_counter()
    method.fit(split.train, split.val, seed=0)
    seconds = time.perf_counter() - t0
    r = method.training_result
    return {"method": name, "max_steps": method.config.max_steps, "patch": method.config.patch_size,
            "batch": method.config.batch_size, "s_per_step": round(r.seconds / max(r.steps, 1), 4),
            "validation_s": None, "train_seconds": round(seconds, 1), "measured": True,
            "parameters": method.parameter_count(), "best_val_psnr": round(r.best_val_psnr, 2)}


def _table(rows: list[dict], columns: list[str]) -> str:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--sizes", type=int, nargs="*", default=[256, 512], help="slice edges (px)")
    parser.add_argument("--slices", type=int, default=16, help="slices per timed volume")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions (median reported)")
    parser.add_argument("--train-steps", type=int, default=30, help="steps timed for the training estimate")
    parser.add_argument("--full", type=Path, default=None, metavar="DATA_ROOT",
                        help="train for the full default budget on foam@1.0 small from this cache")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--output", type=Path, default=Path("bench_inference.json"), help="JSON result file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from aiax_bench.provenance import hardware

    device = default_device()
    header = (f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
              f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    print(header, file=sys.stderr)
    inference = [bench_inference(m, s, args.slices, args.repeat, device) for m in args.methods for s in args.sizes]
    print("\nInference (whole slices, 2.5D stacks)")
    print(_table(inference, ["method", "slice", "slices", "batch", "seconds", "slices_per_s", "parameters"]))
    if args.full is not None:
        training = [bench_training_full(m, args.full) for m in args.methods]
    else:
        training = [bench_training_estimate(m, args.train_steps, device) for m in args.methods]
    print("\nTraining to the default budget" + ("" if args.full else
                                               f" (estimated from {args.train_steps} timed steps)"))
    print(_table(training, ["method", "max_steps", "patch", "batch", "s_per_step", "validation_s",
                            "train_seconds", "measured"]))
    report = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "device": str(device),
              "threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
              "hardware": hardware(), "inference": inference, "training": training}
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwritten to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
