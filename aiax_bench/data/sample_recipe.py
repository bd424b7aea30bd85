"""What every simulated store shares: a sample's phantom parameters, its reference scan's noise stream, the
writing of its splits and attributes, and the store's root attributes."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["jsonable", "noise_key", "phantom_attrs", "phantom_params", "reference_rng", "split_rng", "store_attrs",
           "write_splits"]


def phantom_params(recipe: dict[str, Any], part: str, size: int, seed: int, *,
                   voxel_size_um: float | None = None) -> tuple[str, dict[str, Any]]:
    """The generator (recipe ``phantom.generator``, else the family) and its parameters.

    ``voxel_size_um`` is the profile's voxel edge where it states its own (µm), else the recipe's.
    """
    params = dict(recipe["phantom"])
    if part == "ood-test":
        params.update(recipe.get("ood_phantom", {}))
    params.update(size=size, seed=seed,
                  voxel_size_um=recipe["voxel_size_um"] if voxel_size_um is None else voxel_size_um)
    return params.pop("generator", recipe["family"]), params


def reference_rng(seed: int, independent: bool) -> np.random.Generator:
    """The noise stream of a sample's reference scan (``independent``: the 2.0 recipes' named stream)."""
    # Version 1.0's stream is kept so that its stores rebuild bit for bit; from 2.0 on the
    # reference scan's stream is named like every split's, so no two scans share one.
    return np.random.default_rng(list(noise_key(seed, "reference")) if independent else [seed, 1])


def noise_key(seed: int, scan: str) -> tuple[int, int]:
    """The key of one scan's noise streams in a sample (``"reference"`` or a split's name)."""
    return seed, zlib.crc32(scan.encode())


def split_rng(seed: int, split: str) -> np.random.Generator:
    """The noise stream of one split's scan of a sample: independent of every other (sample, split)."""
    return np.random.default_rng(list(noise_key(seed, split)))


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars made Python numbers and tuples lists, for a store's JSON attributes."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_splits(writer, splits: Mapping[str, dict[str, Any]], make: Callable[[str, dict[str, Any]], tuple],
                 *, bar, sample_id: str) -> None:
    """Write every split's ``low``, ``sinogram`` and ``angles`` of one sample, one split in memory at a time.

    ``make(name, params)`` returns the split's ``(low, sinogram, angles)``.
    """
    for split, params in splits.items():
        bar.set_postfix_str(f"{sample_id}: {split}")
        low, sino, angles = make(split, params)
        writer.add(f"splits/{split}/low", low)
        writer.add(f"splits/{split}/sinogram", sino)
        writer.add(f"splits/{split}/angles", angles)
        del low, sino
        bar.update()


def phantom_attrs(phantom, *, part: str, seed: int, photons: float) -> dict[str, Any]:
    """A simulated sample's attributes: its part, seed, voxel size, phases and their attenuation, phantom and dose."""
    return {"part": part, "seed": seed, "voxel_size_um": phantom.voxel_size_um, "phases": list(phantom.phases),
            "attenuation_per_cm": list(phantom.attenuation), "phantom": jsonable(phantom.params),
            "photons": photons}


def store_attrs(spec, profile: str, ids: list[tuple[str, str, int]], *, fingerprint: dict, hashes: dict[str, str],
                started: float) -> dict[str, Any]:
    """A simulated store's root attributes (written last: a store without them is incomplete by construction)."""
    from aiax_bench.data.store import STORE_FORMAT, digest_of_hashes
    from aiax_bench.version import __version__

    return {
        "name": spec.name, "version": spec.version, "profile": profile,
        "recipe_sha256": spec.recipe_sha256, "store_format": STORE_FORMAT,
        "generator_version": __version__, "samples": [s[0] for s in ids],
        "splits": sorted(spec.splits), "fingerprint": fingerprint,
        "content_sha256": digest_of_hashes(hashes),
        "build_seconds": round(time.time() - started, 1),
    }


#: Significant digits a lab tube's spectrum and attenuation table are rounded to before use.
TABLE_DIGITS = 9


def rounded(values, *, digits: int) -> np.ndarray:
    """``values`` (any iterable of numbers) rounded to ``digits`` significant digits, float64.

    Tables computed with special functions, quadrature or ``exp`` (spectra, attenuation over energy) are
    rounded before they reach a store: a last-ulp difference between machines' maths libraries must not
    change its bytes.
    """
    return np.array([float(f"{float(v):.{digits}g}") for v in values], dtype=np.float64)


def recorded_tube_spectrum(spec: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, str]:
    """A recipe's lab tube ``spectrum`` (``kvp``, ``anode_angle_deg``, ``filters``, ``detector``) as the scan
    records it: bin centres (keV) and the detector's weight of each bin, rounded (:data:`TABLE_DIGITS`),
    the weights summing to 1; and the detector."""
    from aiax_bench.sim.spectrum import tube_spectrum

    options = {"filters": dict(spec["filters"])} if "filters" in spec else {}  # else tube_spectrum's default
    spectrum = tube_spectrum(float(spec["kvp"]), anode_angle_deg=float(spec.get("anode_angle_deg", 12.0)), **options)
    detector = spec.get("detector", "energy-integrating")
    weights = rounded(spectrum.weights(detector), digits=TABLE_DIGITS)
    return rounded(spectrum.energies_kev, digits=TABLE_DIGITS), weights / weights.sum(), detector
