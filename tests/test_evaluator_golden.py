"""Frozen scores per evaluator version: changed numbers must come with a new ``EVALUATOR_VERSION``.

The golden file ``tests/golden/evaluator-<version>.json`` holds the records of
one fixed input (the ``low`` reconstruction of the first foam@2.0 tiny test
volume, scored as a method's prediction), in memory and chunked. If a change
moves any score, this test fails. Either the change is a bug, or the evaluator
version must be bumped and the new golden file written, on purpose:

    python tests/test_evaluator_golden.py

(it refuses to overwrite the file of an existing version).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from aiax_bench.evaluation.evaluator import DISTRIBUTIONS_KEY, EVALUATOR_VERSION, Evaluator

GOLDEN = Path(__file__).parent / "golden" / f"evaluator-{EVALUATOR_VERSION}.json"
#: Relative tolerance: the records come from float sums whose order may differ between BLAS builds and CPUs.
RTOL = 1e-6


def scores(dataset) -> dict[str, dict[str, float]]:
    """The numeric fields of the in-memory and the chunked record of the fixed input."""
    evaluator = Evaluator(dataset, "100proj")
    sample_id = evaluator.sample_ids[0]
    sample = evaluator.samples[sample_id]
    memory = evaluator.evaluate_volume(sample_id, np.asarray(sample.read("low")))
    memory.pop(DISTRIBUTIONS_KEY, None)
    chunked = evaluator.evaluate_volume_chunked(sample_id, sample.low, chunks=32)

    def numeric(record):
        return {k: float(v) for k, v in record.items()
                if isinstance(v, int | float) and not isinstance(v, bool)}

    return {"sample_id": sample_id, "in_memory": numeric(memory), "chunked": numeric(chunked)}


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-12)


def test_scores_match_the_golden_record_of_this_evaluator_version(tiny_v2):
    assert GOLDEN.is_file(), f"no golden record for evaluator {EVALUATOR_VERSION}: run python {__file__}"
    golden = json.loads(GOLDEN.read_text())
    got = scores(tiny_v2)
    assert got["sample_id"] == golden["sample_id"]
    for path in ("in_memory", "chunked"):
        assert set(got[path]) == set(golden[path]), f"{path}: the metric keys changed: bump EVALUATOR_VERSION"
        moved = {k: (golden[path][k], got[path][k]) for k in golden[path] if not _same(golden[path][k], got[path][k])}
        assert not moved, f"{path}: scores moved (golden, now) {moved}: a bug, or bump EVALUATOR_VERSION"
    # The chunked path shares the in-memory record's definitions.
    shared = set(got["chunked"]) & set(got["in_memory"])
    assert {"psnr/truth", "ssim/truth", "porosity/method", "pore_count/method"} <= shared
    differ = {k for k in shared if not _same(got["chunked"][k], got["in_memory"][k])}
    assert not differ, f"the chunked path disagrees with the in-memory one on {sorted(differ)}"


def test_complete_chunked_record_is_the_in_memory_one(tiny_v2):
    """Every key of the in-memory record, local thickness and Dice by pore size included, block by block."""
    evaluator = Evaluator(tiny_v2, "100proj")
    sample_id = evaluator.sample_ids[1]
    sample = evaluator.samples[sample_id]
    memory = evaluator.evaluate_volume(sample_id, np.asarray(sample.read("low")))
    memory.pop(DISTRIBUTIONS_KEY)
    chunked = evaluator.evaluate_volume_chunked(sample_id, sample.low, chunks=24, complete=True)
    assert set(chunked) == set(memory)
    assert memory["dice_small/pore"] > 0 and memory["mean_local_thickness_mm/method"] > 0
    differ = {k: (memory[k], chunked[k]) for k in memory
              if not (memory[k] == chunked[k] if isinstance(memory[k], str) else _same(memory[k], chunked[k]))}
    assert not differ, f"(in memory, chunked) {differ}"


def write_golden() -> Path:
    """Write the golden file of the current evaluator version (never over an existing one)."""
    from aiax_bench.data.loader import load

    if GOLDEN.exists():
        raise SystemExit(f"{GOLDEN} exists: a version's golden record is never rewritten; bump EVALUATOR_VERSION")
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(scores(load("foam@2.0", profile="tiny")), indent=1, sort_keys=True) + "\n")
    return GOLDEN


if __name__ == "__main__":
    print(write_golden())
    sys.exit(0)
