"""Codecs for the stores' arrays: write and read time, and compression, on one built sample.

    python benchmarks/bench_codec.py --dataset foam@3.1 --size 128 --output benchmarks/codec-every-chunk.json

One sample of the dataset is built at ``--size`` (its phantom, reference scan and every split, as
``datasets build`` makes them) into a temporary store; then all of that sample's arrays are written
again with each codec, chunked as the stores chunk them, and read back, ``--repeat`` times, keeping
each codec's fastest. The codec the stores use is :func:`aiax_bench.data.store.compressor`; they write
every chunk, those equal to the fill value too (:func:`aiax_bench.data.store.write_array`).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path


def _codecs() -> dict:
    """Each row's codec and whether it writes the chunks equal to the fill value (zarr skips them by default,
    after comparing every chunk with it)."""
    from zarr.codecs import BloscCodec

    lz4 = BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")
    return {
        "zstd-5 bitshuffle": (BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle"), False),
        "zstd-1 shuffle": (BloscCodec(cname="zstd", clevel=1, shuffle="shuffle"), False),
        "lz4-5 bitshuffle, empty chunks skipped": (lz4, False),
        "lz4-5 bitshuffle, every chunk written (the stores')": (lz4, True),
        "lz4-5 shuffle": (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"), False),
        "none": (None, False),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="foam@3.0")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()

    import numpy as np
    import zarr

    from aiax_bench.data.build import build_store
    from aiax_bench.data.registry import resolve
    from aiax_bench.data.store import CHUNK, stored_bytes
    from aiax_bench.provenance import code_provenance

    code = code_provenance()["git_commit"][:7]
    spec = resolve(args.dataset)
    recipe = copy.deepcopy(spec.recipe)
    recipe["profiles"]["one"] = {"size": args.size,
                                 "samples": {"train": [args.seed], "val": [], "test": [], "ood-test": []}}
    spec = dataclasses.replace(spec, recipe=recipe)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        build_store(spec, "one", Path(folder) / "one.zarr", quiet=True)
        sample = zarr.open_group(str(Path(folder) / "one.zarr"), mode="r")["samples/train-000"]
        arrays = {name: np.asarray(a[...]) for name, a in sample.arrays()}
        arrays.update({f"{split}/{name}": np.asarray(a[...]) for split, group in sample["splits"].groups()
                       for name, a in group.arrays()})
        raw = sum(a.nbytes for a in arrays.values())
        for label, (codec, every_chunk) in _codecs().items():
            best_write = best_read = float("inf")
            for _ in range(args.repeat):
                target = Path(folder) / "codec"
                shutil.rmtree(target, ignore_errors=True)
                group = zarr.open_group(str(target), mode="w")
                start = time.perf_counter()
                for name, data in arrays.items():
                    group.create_array(name, data=data, chunks=tuple(min(CHUNK, s) for s in data.shape),
                                       compressors=codec, config={"write_empty_chunks": every_chunk})
                best_write = min(best_write, time.perf_counter() - start)
                start = time.perf_counter()
                for name in arrays:
                    group[name][...]
                best_read = min(best_read, time.perf_counter() - start)
            rows.append({"codec": label, "write_s": round(best_write, 3), "read_s": round(best_read, 3),
                         "ratio": round(raw / stored_bytes(target), 3)})
            print(json.dumps(rows[-1]), flush=True)
    args.output.write_text(json.dumps({
        "benchmark": "codec", "dataset": args.dataset, "size": args.size, "seed": args.seed,
        "arrays": len(arrays), "raw_mb": round(raw / 2**20, 1), "runs": rows, "code": code,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": list(os.getloadavg())},
        "date": time.strftime("%Y-%m-%d")}, indent=1) + "\n")


if __name__ == "__main__":
    main()
