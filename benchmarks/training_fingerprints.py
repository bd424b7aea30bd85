"""Fingerprints of tiny trainings: do two versions of the training code make the same weights?

Trains every learned method for a few steps on foam@2.0 tiny (one thread,
fixed seed) and records the sha256 of its weights. Run it with one checkout's
code, then another's, into the same file; the table says whether a refactor
left the numbers alone::

    python benchmarks/training_fingerprints.py --label before --output benchmarks/training-fingerprints.json
    python benchmarks/training_fingerprints.py --label after --output benchmarks/training-fingerprints.json

Bit equality is expected on one machine; across CPUs the last bits may differ.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
from pathlib import Path

import torch

COMMON = {"max_steps": 12, "val_every": 5, "patch_size": 32, "batch_size": 4, "progress": False, "max_seconds": None}
ENHANCE = [("msdnet", {"depth": 3}), ("unet", {}), ("noise2inverse", {}), ("tomogan", {}),
           ("tomogan", {"adversarial": "wgan-gp"})]
SEGMENT = [("unet-seg", {"preset": "2d"}), ("unet-seg", {"preset": "3d"})]
SEGMENT_COMMON = {"depth": 2, "base_channels": 4, "patch_size": 32, "patch_depth": 16, "batch_size": 2,
                  "max_steps": 7, "val_every": 3}


def fingerprint(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def run() -> dict[str, dict]:
    from aiax_bench.data.annotation import AnnotatedSample
    from aiax_bench.data.loader import load
    from aiax_bench.methods.registry import get_method

    torch.set_num_threads(1)
    split = load("foam@2.0", profile="tiny").split("100proj")
    out = {}
    for name, config in ENHANCE:
        method = get_method(name)({**COMMON, **config})
        method.fit(split.train, split.val, seed=3)
        out[f"{name} {json.dumps(config)}"] = {"weights": fingerprint(method.model),
                                               "steps": method.training_result.steps}
    train, val = ([AnnotatedSample(s, 5) for s in part] for part in (split.train, split.val))
    for name, config in SEGMENT:
        method = get_method(name)({**SEGMENT_COMMON, **config})
        method.fit(train, val, seed=1)
        out[f"{name} {json.dumps(config)}"] = {"weights": fingerprint(method.model),
                                               "steps": method.metadata["training"]["steps"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="name of this run in the file, e.g. the commit")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/training-fingerprints.json"))
    args = parser.parse_args()
    import aiax_bench

    package = Path(aiax_bench.__file__).parent
    commit = subprocess.run(["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    document = json.loads(args.output.read_text()) if args.output.exists() else {"runs": {}}
    document["runs"][args.label] = {"git_commit": commit, "torch": torch.__version__, "weights": run()}
    labels = list(document["runs"])
    first = document["runs"][labels[0]]["weights"]
    document["identical_to_" + labels[0]] = {
        label: all(document["runs"][label]["weights"].get(k) == v for k, v in first.items()) for label in labels[1:]}
    args.output.write_text(json.dumps(document, indent=1) + "\n")
    for key, value in document["runs"][args.label]["weights"].items():
        print(f"{key:45} {value['weights']}  {value['steps']} steps")


if __name__ == "__main__":
    main()
