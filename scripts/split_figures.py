"""One figure per split of a dataset: the split's input, the reference scan and the exact phantom, side by side.

    python scripts/split_figures.py --dataset foam-pc@1.0 --profile small --out docs/figures

Each figure shows the middle z-slice of the first test volume,
``<out>/<name>-<version>-<profile>-<split>.png`` (``/`` in split names becomes ``-``).
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from aiax_bench.data.loader import load
    from aiax_bench.evaluation.figures import split_panels

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--profile", default="small")
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    parser.add_argument("--splits", nargs="*", help="only these splits (default: every split)")
    args = parser.parse_args(argv)
    dataset = load(args.dataset, profile=args.profile, build=False)
    spec = dataset.spec
    data_range = float(spec.evaluation["data_range"])
    for split in args.splits or list(spec.splits):
        sample = dataset.split(split).test[0]
        path = args.out / f"{spec.name}-{spec.version}-{args.profile}-{split.replace('/', '-')}.png"
        split_panels(np.asarray(sample.low), np.asarray(sample.high), np.asarray(sample.truth), path,
                     data_range=data_range,
                     title=f"{spec.ref} {args.profile}, {split}\n"
                     + textwrap.fill(spec.splits[split]["description"], 130))
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
