"""A learned segmentation on the HTC2022 real-data track: U-Net on limited-data FBP, trained on training phantoms only.

    python benchmarks/htc2022_learned.py --data DIR --splits arc-60 sparse-60 --seeds 0 1 2
    python benchmarks/htc2022_learned.py --data DIR --splits arc-60 --seeds 0 1 2 --train-on synthetic \\
        --output benchmarks/htc2022-learned-synthetic.json

The network (the project's U-Net, 16 base channels, depth 4) maps a ramp FBP of the split's views to
the acrylic/air segmentation (binary cross-entropy), trained with the project's Trainer on 128² crops.
Training inputs are FBPs of the split's acquisition at many starts (arcs every 10 degrees, or each of
the sparse subsets' offsets), so the network sees every orientation of the missing wedge. Phantoms
``solid_disc``, ``ta``, ``tb``, ``tc`` train, ``td`` validates (the kept weights); the test phantoms are
scored once, with the challenge's MCC. Writes JSON beside ``--output`` and a Markdown table.

``--train-on synthetic`` trains on simulated discs only (:mod:`aiax_bench.sim.holed_disc`: ellipses,
polygons, Voronoi cells and crosses, projected analytically in the scanner's fan-beam geometry with
Poisson noise) and keeps the weights of the lowest loss on simulated validation discs: no measured
scan is seen except for four calibration constants taken from the training phantoms (the acrylic's
attenuation, the incident photons from the variance of the air columns, the mean air offset, the
geometry), as a user calibrates a simulation to a scanner. The gap to the network trained on measured
phantoms is the sim-to-real gap.
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
#: Simulated discs (training, validation) and the arc starts each is reconstructed at.
SYNTHETIC_DISCS = (48, 8)
SYNTHETIC_STARTS = 8
SYNTHETIC_SEED = 2022
AIR_COLUMNS = 15  # detector columns at each edge that see only air in every HTC2022 scan


def acquisitions(phantom, split: str, *, starts: int = STARTS) -> list[np.ndarray]:
    """View sets of the split's kind at every start: arcs at ``starts`` even starts, sparse subsets at every offset."""
    rule = htc2022.SPLITS[split]
    if rule.every is not None:
        return [np.arange(offset, htc2022.FULL_VIEWS, rule.every) for offset in range(rule.every)]
    n_views = htc2022.SPLITS[split].views(0).size
    return [(start + np.arange(n_views)) % htc2022.FULL_VIEWS
            for start in range(0, htc2022.FULL_VIEWS, htc2022.FULL_VIEWS // starts)]


class SyntheticScan:
    """A simulated disc scanned like an HTC2022 phantom: what ``fbp_of`` and the training pairs need."""

    def __init__(self, disc, like: htc2022.HTCPhantom, *, photons: float, offset: float, seed: int) -> None:
        from aiax_bench.sim.holed_disc import project_holed_disc, rasterize_holed_disc

        self.like = like
        self.sinogram = project_holed_disc(disc, like.projector(), photons=photons, offset=offset,
                                           rng=np.random.default_rng(seed))
        self.truth = rasterize_holed_disc(disc, htc2022.GRID) >= 0.5

    def projector(self, views: np.ndarray):
        return self.like.projector(views)


def calibration(phantoms: dict[str, htc2022.HTCPhantom]) -> dict[str, float]:
    """The simulation's constants from the training scans: attenuation, incident photons, air offset."""
    air = [np.concatenate([p.sinogram[:, :AIR_COLUMNS], p.sinogram[:, -AIR_COLUMNS:]], axis=1)
           for p in phantoms.values()]
    return {"mu_per_voxel": float(np.median([np.percentile(p.reference[p.truth], 50) for p in phantoms.values()])),
            "photons": float(1.0 / np.mean([a.var() for a in air])),
            "air_offset": float(np.mean([a.mean() for a in air]))}


def synthetic_scans(phantoms: dict[str, htc2022.HTCPhantom]) -> tuple[list[SyntheticScan], list[SyntheticScan]]:
    from aiax_bench.sim.holed_disc import holed_discs

    constants = calibration(phantoms)
    like = phantoms[VALIDATION]
    discs = holed_discs(SYNTHETIC_SEED, sum(SYNTHETIC_DISCS), mu=constants["mu_per_voxel"])
    scans = [SyntheticScan(d, like, photons=constants["photons"], offset=constants["air_offset"],
                           seed=SYNTHETIC_SEED + i) for i, d in enumerate(discs)]
    return scans[:SYNTHETIC_DISCS[0]], scans[SYNTHETIC_DISCS[0]:]


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
    parser.add_argument("--train-on", choices=("measured", "synthetic"), default="measured",
                        help="the training phantoms' scans, or simulated discs only")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/htc2022-learned.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # the bytes of a training do not depend on the machine's core count
    folder = args.data or htc2022.default_directory()
    names = htc2022.phantom_names("training")
    phantoms = {n: htc2022.read_phantom(n, folder) for n in names}
    test = [htc2022.read_phantom(n, folder) for n in htc2022.phantom_names("test")
            if (folder / f"htc2022_{n}_full.mat").exists()]
    # One fixed input scale: the acrylic's attenuation per voxel in the training references.
    scale = calibration(phantoms)["mu_per_voxel"]
    doc = {"dataset": htc2022.DATASET_REF, "method": "unet-seg on ramp FBP (16 base channels, depth 4)",
           "training": [n for n in names if n != VALIDATION], "validation": VALIDATION,
           "test_phantoms": [p.name for p in test], "steps": args.steps, "crop": CROP, "input_scale": scale,
           "torch_threads": 1, "train_on": args.train_on, "splits": {}}
    if args.train_on == "synthetic":
        train_scans, val_scans = synthetic_scans(phantoms)
        doc.update(method="unet-seg on ramp FBP (16 base channels, depth 4), trained on simulated discs only",
                   training=f"{len(train_scans)} simulated discs (aiax_bench.sim.holed_disc, seed {SYNTHETIC_SEED})",
                   validation=f"{len(val_scans)} simulated discs", calibration=calibration(phantoms),
                   arc_starts_per_disc=SYNTHETIC_STARTS)
    else:
        train_scans = [p for n, p in phantoms.items() if n != VALIDATION]
        val_scans = [phantoms[VALIDATION]]
    starts = SYNTHETIC_STARTS if args.train_on == "synthetic" else STARTS
    for split in args.splits:
        t0 = time.time()

        def pairs(scans, every=1, split=split):
            xs, ys = [], []
            for scan in scans:
                for views in acquisitions(scan, split, starts=starts)[::every]:
                    xs.append(fbp_of(scan, views) / scale)
                    ys.append(scan.truth)
            return np.stack(xs).astype(np.float32), np.stack(ys).astype(np.float32)

        train_x, train_y = pairs(train_scans)
        val_x, val_y = pairs(val_scans, every=6 if args.train_on == "measured" else 4)
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
