"""What every simulated sample of a recipe starts from: its phantom's parameters, its reference scan's noise stream."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

__all__ = ["jsonable", "phantom_params", "reference_rng"]


def phantom_params(recipe: dict[str, Any], part: str, size: int, seed: int) -> tuple[str, dict[str, Any]]:
    """The generator (recipe ``phantom.generator``, else the family) and its parameters."""
    params = dict(recipe["phantom"])
    if part == "ood-test":
        params.update(recipe.get("ood_phantom", {}))
    params.update(size=size, seed=seed, voxel_size_um=recipe["voxel_size_um"])
    return params.pop("generator", recipe["family"]), params


def reference_rng(seed: int, independent: bool) -> np.random.Generator:
    """The noise stream of a sample's reference scan (``independent``: the 2.0 recipes' named stream)."""
    # Version 1.0's stream is kept so that its stores rebuild bit for bit; from 2.0 on the
    # reference scan's stream is named like every split's, so no two scans share one.
    return np.random.default_rng([seed, zlib.crc32(b"reference")] if independent else [seed, 1])


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars made Python numbers and tuples lists, for a store's JSON attributes."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
