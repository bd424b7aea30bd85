"""A learned segmentation on the HTC2022 real-data track: U-Net on limited-data FBP, trained on training phantoms only.

    python benchmarks/htc2022_learned.py --data DIR --splits arc-60 sparse-60 --seeds 0 1 2

The network (the project's U-Net, 16 base channels, depth 4) maps a ramp FBP of the split's views to
the acrylic/air segmentation (binary cross-entropy), trained with the project's Trainer on 128² crops.
Training inputs are FBPs of the split's acquisition at many starts (arcs every 10 degrees, or each of
the sparse subsets' offsets), so the network sees every orientation of the missing wedge. Phantoms
``solid_disc``, ``ta``, ``tb``, ``tc`` train, ``td`` validates (the kept weights); the test phantoms are
scored once, with the challenge's MCC. Writes JSON beside ``--output`` and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from aiax_bench.baselines._nets import UNetwork
from aiax_bench.data import htc2022
from aiax_bench.recon import fbp
from aiax_bench.training.trainer import TrainSettings, train

VALIDATION = "td"
CROP = 128
STARTS = 36


def acquisitions(phantom: htc2022.HTCPhantom, split: str) -> list[np.ndarray]:
    """View sets of the split's kind at every start: arcs every 10 degrees, sparse subsets at every offset."""
    rule = htc2022.SPLITS[split]
    if rule.every is not None:
        return [np.arange(offset, htc2022.FULL_VIEWS, rule.every) for offset in range(rule.every)]
    n_views = htc2022.SPLITS[split].views(0).size
    return [(start + np.arange(n_views)) % htc2022.FULL_VIEWS
            for start in range(0, htc2022.FULL_VIEWS, htc2022.FULL_VIEWS // STARTS)]


def fbp_of(phantom: htc2022.HTCPhantom, views: np.ndarray) -> np.ndarray:
    return fbp(phantom.sinogram[views], projector=phantom.projector(views))


class Crops(torch.utils.data.Dataset):
    """Random 128² crops of (FBP, segmentation) pairs, flipped at random; seeded by (seed, epoch, index)."""

    def __init__(self, inputs: np.ndarray, targets: np.ndarray, *, seed: int, length: int) -> None:
        self.inputs, self.targets, self.seed, self.length, self.epoch = inputs, targets, seed, length, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        k = int(rng.integers(len(self.inputs)))
        r, c = rng.integers(0, self.inputs.shape[-1] - CROP + 1, size=2)
        x = self.inputs[k, r:r + CROP, c:c + CROP]
        y = self.targets[k, r:r + CROP, c:c + CROP]
        if rng.random() < 0.5:
            x, y = x[::-1], y[::-1]
        if rng.random() < 0.5:
            x, y = x[:, ::-1], y[:, ::-1]
        return (torch.from_numpy(np.ascontiguousarray(x))[None], torch.from_numpy(np.ascontiguousarray(y))[None])


class Whole(torch.utils.data.Dataset):
    def __init__(self, inputs: np.ndarray, targets: np.ndarray) -> None:
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int):
        return torch.from_numpy(self.inputs[index])[None], torch.from_numpy(self.targets[index])[None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--splits", nargs="+", default=["arc-60", "sparse-60"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/htc2022-learned.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # the bytes of a training do not depend on the machine's core count
    folder = args.data or htc2022.default_directory()
    names = htc2022.phantom_names("training")
    phantoms = {n: htc2022.read_phantom(n, folder) for n in names}
    test = [htc2022.read_phantom(n, folder) for n in htc2022.phantom_names("test")
            if (folder / f"htc2022_{n}_full.mat").exists()]
    # One fixed input scale: the acrylic's attenuation per voxel in the training references.
    scale = float(np.median([np.percentile(p.reference[p.truth], 50) for p in phantoms.values()]))
    doc = {"dataset": htc2022.DATASET_REF, "method": "unet-seg on ramp FBP (16 base channels, depth 4)",
           "training": [n for n in names if n != VALIDATION], "validation": VALIDATION,
           "test_phantoms": [p.name for p in test], "steps": args.steps, "crop": CROP, "input_scale": scale,
           "torch_threads": 1, "splits": {}}
    for split in args.splits:
        t0 = time.time()
        pairs = {n: [(fbp_of(p, v) / scale, p.truth) for v in acquisitions(p, split)] for n, p in phantoms.items()}
        train_x = np.stack([x for n in names if n != VALIDATION for x, _ in pairs[n]]).astype(np.float32)
        train_y = np.stack([y for n in names if n != VALIDATION for _, y in pairs[n]]).astype(np.float32)
        val_x = np.stack([x for x, _ in pairs[VALIDATION][::6]]).astype(np.float32)
        val_y = np.stack([y for _, y in pairs[VALIDATION][::6]]).astype(np.float32)
        test_inputs = {}
        for p in test:
            views, sinogram = p.split(split)
            test_inputs[p.name] = (fbp(sinogram, projector=p.projector(views)) / scale).astype(np.float32)
        data_seconds = time.time() - t0
        runs = {}
        for seed in args.seeds:
            t1 = time.time()
            torch.manual_seed(seed)
            model = UNetwork(1, 1, depth=4, base_channels=16, batch_norm=True)
            settings = TrainSettings(max_steps=args.steps, batch_size=4, learning_rate=1e-3, lr_schedule="cosine",
                                     val_every=100, progress=False)
            result = train(model, torch.nn.BCEWithLogitsLoss(), Crops(train_x, train_y, seed=seed, length=4096),
                           Whole(val_x, val_y), settings=settings, device="cpu")
            scores = {}
            with torch.no_grad():
                for name, x in test_inputs.items():
                    logits = model(torch.from_numpy(x)[None, None])[0, 0].numpy()
                    truth = next(p for p in test if p.name == name).truth
                    scores[name] = htc2022.score_segmentation(logits > 0, truth)
            runs[str(seed)] = {"test": scores, "best_val_loss": result.best_val_loss,
                               "seconds": round(time.time() - t1, 1)}
            print(f"{split} seed {seed}: test MCC " + ", ".join(f"{n} {s['mcc']:.3f}" for n, s in scores.items())
                  + f" ({time.time() - t1:.0f} s)", flush=True)
        per_phantom = {p.name: [runs[str(s)]["test"][p.name]["mcc"] for s in args.seeds] for p in test}
        doc["splits"][split] = {"runs": runs, "data_seconds": round(data_seconds, 1),
                                "mcc_mean_over_seeds": {n: float(np.mean(v)) for n, v in per_phantom.items()},
                                "mcc_std_over_seeds": {n: float(np.std(v)) for n, v in per_phantom.items()},
                                "mcc_mean": float(np.mean([np.mean(v) for v in per_phantom.values()]))}
        args.output.write_text(json.dumps(doc, indent=1) + "\n")  # committed split by split: resumable by hand
    print(json.dumps({s: e["mcc_mean"] for s, e in doc["splits"].items()}))


if __name__ == "__main__":
    main()
