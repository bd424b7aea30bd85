"""Result documents and entries in the harness's format, made up for the leaderboard tests (no dataset built)."""

from __future__ import annotations

import json
from pathlib import Path

from aiax_bench.evaluation.evaluator import EVALUATOR_VERSION
from aiax_bench.leaderboard.entry import build_entry
from aiax_bench.leaderboard.schema import scored_sample_ids
from aiax_bench.results import Result, RunResult

DATASET = "foam@2.0"


def dataset_hash(profile: str = "tiny") -> str:
    """The hash a result must carry: the registry's."""
    from aiax_bench.data.registry import resolve

    return resolve(DATASET).content_sha256[profile]


def recipe_hash() -> str:
    from aiax_bench.data.registry import resolve

    return resolve(DATASET).recipe_sha256


def records(psnr: list[float], profile: str = "tiny", *, density_error: float = 0.01) -> list[dict]:
    """Per-volume records like the Evaluator's: metrics, a text protocol tag, an undefined (None) metric."""
    from aiax_bench.data.registry import resolve

    ids = scored_sample_ids(resolve(DATASET), profile)
    assert len(psnr) == len(ids)
    return [{"sample_id": sid, "evaluator_version": EVALUATOR_VERSION, "mse/truth": 4.2 ** 2 / 10 ** (p / 10),
             "psnr/truth": p, "ssim/truth": min(0.99, p / 40), "psnr/reference": p + 2.0,
             "ssim/reference": min(0.99, p / 38), "segmentation_protocol": "2.0",
             "porosity/rel_error_truth": 0.01, "pore_density_per_mm3/rel_error_truth": density_error,
             "dice_small/pore": None if i == 0 else 0.9}
            for i, (sid, p) in enumerate(zip(ids, psnr, strict=True))]


def fake_result(*, psnr: list[float] | list[list[float]] | None = None, seeds: tuple[int, ...] = (0,),
                profile: str = "tiny", method: str = "fbp", command: str | None = None, supervision: str = "reference",
                density_error: float = 0.01, config: dict | None = None, efficiency: dict | None = None,
                **prov) -> dict:
    """A result document exactly as ``aiax-bench evaluate`` writes it (one run per seed)."""
    n = 2 if profile == "tiny" else 8
    per_seed = psnr if psnr and isinstance(psnr[0], list) else [psnr or [21.0] * n] * len(seeds)
    runs = [RunResult(seed=s, created="2026-01-02T03:04:05+00:00", mlflow_run_id=f"run{s}",
                      records=records(p, profile, density_error=density_error),
                      efficiency=efficiency or {"train_seconds": 1.5, "inference_seconds_per_volume": 0.25,
                                                "parameters": 1234, "peak_memory_mb": 600.0},
                      command=command or f"aiax-bench evaluate --method {method} --split 100proj --profile {profile}")
            for s, p in zip(seeds, per_seed, strict=True)]
    provenance = {"dataset": DATASET, "profile": profile, "dataset_sha256": dataset_hash(profile),
                  "recipe_sha256": recipe_hash(), "dataset_source": "rebuilt", "split": "100proj",
                  "supervision": supervision, "evaluator_version": EVALUATOR_VERSION, "package_version": "0.1.0",
                  "git_commit": "7b7ac77a014c64f1a04080808243a9eab379dcdc", "git_dirty": False,
                  "command": command or f"aiax-bench evaluate --method {method} --split 100proj --profile {profile}",
                  "hardware": {"cpu": "test", "cpu_count": 2}, **prov}
    return Result(method=method, task="enhance", config=config or {"filter": "hann"}, dataset=DATASET,
                  profile=profile, split="100proj", annotated_slices=None, supervision=supervision,
                  created="2026-01-02T03:04:05+00:00", runs=runs, provenance=provenance).to_dict()


def write(path: Path, document) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1))
    return path


def entry_of(result: dict, name: str = "FBP", *, authors: tuple[str, ...] = ("A. Author",), **options) -> dict:
    return build_entry([Result.from_dict(result)], name=name, authors=list(authors),
                       code_url="https://example.org/code", **options)


