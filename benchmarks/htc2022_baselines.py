"""Classical baselines on the HTC2022 real-data track: settings chosen on the training phantoms, scored on test ones.

    python benchmarks/htc2022_baselines.py --data DIR --splits arc-60 sparse-60

``DIR`` holds the phantoms' files (``aiax_bench.data.htc2022.fetch`` puts them in the cache; the default).
Every method's settings are chosen by the mean Matthews correlation (MCC) of its Otsu segmentation on
the 5 training phantoms; the test phantoms found in ``DIR`` are then scored once with those settings:
MCC and Jaccard against the organisers' segmentation, PSNR and SSIM against their full-angle FBP
inside the disc. Writes JSON (every setting's training scores, the choice, the test scores) and a
Markdown table beside it, and one figure per split of the first test phantom.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from aiax_bench.data import htc2022
from aiax_bench.recon import fbp, sirt, tv_reconstruction

#: The published qualitative anchor the board is read against (the issue's wording of the CIL team's result).
ANCHOR = ("CIL team's directional-TV entry (3rd in HTC2022): reported to segment well down to a 50 degree arc, "
          "sometimes at 40 and 30 degrees (challenge score: MCC)")
SIRT_ITERATIONS = (25, 50, 100, 200)
TV_ITERATIONS = 100
TV_WEIGHTS = (0.003, 0.01, 0.03)
FBP_FILTERS = [(f, c) for f in ("ramp", "hann") for c in (1.0, 0.6, 0.35)]


def _fbp_all(sinogram, projector, settings=None) -> dict[tuple, np.ndarray]:
    return {(f, c): fbp(sinogram, projector=projector, filter=f, cutoff=c) for f, c in (settings or FBP_FILTERS)}


def _sirt_all(sinogram, projector, settings=None) -> dict[tuple, np.ndarray]:
    wanted = {s[0] for s in settings} if settings else set(SIRT_ITERATIONS)
    images: dict[tuple, np.ndarray] = {}

    def keep(iteration, x, _residual):
        if iteration + 1 in wanted:
            images[(iteration + 1,)] = x.cpu().numpy().copy()
    sirt(sinogram, projector=projector, n_iter=max(wanted), nonneg=True, callback=keep)
    return images


def _tv_all(sinogram, projector, settings=None) -> dict[tuple, np.ndarray]:
    weights = [s[0] for s in settings] if settings else TV_WEIGHTS
    return {(w,): tv_reconstruction(sinogram, projector=projector, weight=w, n_iter=TV_ITERATIONS, nonneg=True)
            for w in weights}


#: Method name -> ``f(sinogram, projector, settings=None)``: ``{setting: image}`` of one phantom, for the
#: given settings or the whole grid.
METHODS: dict[str, Callable] = {
    "fbp-ramp": lambda s, p, settings=None: _fbp_all(s, p, [("ramp", 1.0)]),
    "fbp-tuned": _fbp_all,
    "sirt": _sirt_all,
    "tv": _tv_all,
}


def score(image: np.ndarray, phantom: htc2022.HTCPhantom) -> dict[str, float]:
    from skimage.metrics import structural_similarity

    record = htc2022.score_segmentation(htc2022.segment(image), phantom.truth)
    mask = phantom.mask()
    reference = phantom.reference
    data_range = float(reference[mask].max() - reference[mask].min())
    mse = float(np.mean((image[mask] - reference[mask]) ** 2))
    record["psnr"] = float(10 * np.log10(data_range**2 / mse))
    _, ssim_map = structural_similarity(image.astype(np.float64), reference.astype(np.float64),
                                        data_range=data_range, full=True)
    record["ssim"] = float(ssim_map[mask].mean())
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="folder of the phantoms' files (default: the cache)")
    parser.add_argument("--splits", nargs="+", default=["arc-60", "sparse-60"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--output", type=Path, default=Path("benchmarks/htc2022-baselines.json"))
    args = parser.parse_args()
    folder = args.data or htc2022.default_directory()
    training = [htc2022.read_phantom(n, folder) for n in htc2022.phantom_names("training")]
    test = [htc2022.read_phantom(n, folder) for n in htc2022.phantom_names("test")
            if (folder / f"htc2022_{n}_full.mat").exists()]
    doc = {"dataset": htc2022.DATASET_REF, "anchor": ANCHOR, "selection": "mean MCC on the 5 training phantoms",
           "training_phantoms": [p.name for p in training], "test_phantoms": [p.name for p in test],
           "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
           "splits": {}}
    started = time.time()
    for split in args.splits:
        entry: dict = {"methods": {}}
        kept_images: dict[str, np.ndarray] = {}
        for method in args.methods:
            t0 = time.time()
            train_scores: dict[tuple, list[dict]] = {}
            for phantom in training:
                views, sinogram = phantom.split(split)
                for setting, image in METHODS[method](sinogram, phantom.projector(views)).items():
                    train_scores.setdefault(setting, []).append(score(image, phantom))
            chosen = max(train_scores, key=lambda s: np.mean([r["mcc"] for r in train_scores[s]]))
            test_scores = {}
            for phantom in test:
                views, sinogram = phantom.split(split)
                image = METHODS[method](sinogram, phantom.projector(views), [chosen])[chosen]
                test_scores[phantom.name] = score(image, phantom)
                if phantom is test[0]:
                    kept_images[method] = image
            entry["methods"][method] = {
                "chosen": list(chosen),
                "training": {"|".join(map(str, s)): {k: float(np.mean([r[k] for r in rs])) for k in rs[0]}
                             for s, rs in train_scores.items()},
                "test": test_scores,
                "test_mean": {k: float(np.mean([r[k] for r in test_scores.values()])) for k in ("mcc", "psnr", "ssim")},
                "seconds": round(time.time() - t0, 1),
            }
            print(f"{split} {method}: chosen {chosen}, test MCC "
                  f"{entry['methods'][method]['test_mean']['mcc']:.3f} ({time.time() - t0:.0f} s)", flush=True)
        doc["splits"][split] = entry
        if test:
            _figure(test[0], split, kept_images, entry, args.output.with_name(f"htc2022-{split}-{test[0].name}.png"))
    doc["seconds"] = round(time.time() - started, 1)
    args.output.write_text(json.dumps(doc, indent=1) + "\n")
    args.output.with_suffix(".md").write_text(_table(doc))
    print(_table(doc))


def _table(doc: dict) -> str:
    lines = [f"Test phantoms: {', '.join(doc['test_phantoms'])}; settings chosen on {doc['selection']}.", "",
             "| split | method | chosen setting | " + " | ".join(f"MCC {p}" for p in doc["test_phantoms"])
             + " | mean MCC | mean PSNR dB | mean SSIM |",
             "|---|---|---|" + "---|" * (len(doc["test_phantoms"]) + 3)]
    for split, entry in doc["splits"].items():
        for method, m in entry["methods"].items():
            per = " | ".join(f"{m['test'][p]['mcc']:.3f}" for p in doc["test_phantoms"])
            mean = m["test_mean"]
            lines.append(f"| {split} | {method} | {', '.join(map(str, m['chosen']))} | {per} | {mean['mcc']:.3f} "
                         f"| {mean['psnr']:.2f} | {mean['ssim']:.3f} |")
    return "\n".join(lines) + "\n"


def _figure(phantom, split: str, images: dict[str, np.ndarray], entry: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = max(images, key=lambda m: entry["methods"][m]["test"][phantom.name]["mcc"])
    panels = [("full-angle FBP (organisers)", phantom.reference), (f"FBP, {split}", images.get("fbp-ramp")),
              (f"best: {best}, MCC {entry['methods'][best]['test'][phantom.name]['mcc']:.3f}", images[best]),
              ("truth (organisers' segmentation)", phantom.truth.astype(np.float32))]
    panels = [(t, im) for t, im in panels if im is not None]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.3))
    vmax = float(np.percentile(phantom.reference, 99.5))
    for ax, (title, image) in zip(axes, panels, strict=True):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1.0 if title.startswith("truth") else vmax)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"HTC2022 phantom {phantom.name}, split {split}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
