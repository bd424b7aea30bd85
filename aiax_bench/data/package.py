"""Turn a built store into the downloadable archive and the registry lines that describe it."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from aiax_bench.data.download import sha256_file
from aiax_bench.jsonio import write_replacing

__all__ = ["compare_fingerprints", "package_store"]

# Fixed metadata makes the archive a function of the store's bytes alone.
_EPOCH = (1980, 1, 1, 0, 0, 0)


def package_store(store: Path, out_dir: Path) -> dict[str, Any]:
    """Zip ``store`` (without re-compression) into ``out_dir`` and describe it.

    Returns
    -------
    dict
        ``archive`` path, ``sha256`` and ``size`` (bytes) of the archive, and the
        store's ``content_sha256`` and per-array ``fingerprint``.
    """
    import zarr

    attrs = dict(zarr.open_group(str(store), mode="r").attrs)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"{attrs['name']}-{attrs['version']}-{attrs['profile']}.zip"
    archive = out_dir / name
    tmp = out_dir / f".{name}.tmp"
    files = sorted(p for p in store.rglob("*") if p.is_file())
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in files:
            info = zipfile.ZipInfo(f"{store.name}/{path.relative_to(store).as_posix()}", date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
    os.replace(tmp, archive)
    return {"archive": str(archive), "sha256": sha256_file(archive), "size": archive.stat().st_size,
            "content_sha256": attrs["content_sha256"], "fingerprint": attrs["fingerprint"]}


def compare_fingerprints(actual: dict[str, dict[str, float]], expected: dict[str, dict[str, float]], *,
                         rtol: float = 1e-3, atol: float = 1e-4) -> list[str]:
    """Arrays whose summary statistics differ beyond tolerance (empty list: they match).

    The tolerance absorbs floating-point differences between machines (thread
    counts, instruction sets) when a version is rebuilt from its recipe.
    """
    problems = []
    for key in sorted(set(actual) | set(expected)):
        if key not in actual or key not in expected:
            problems.append(f"{key}: {'missing' if key not in actual else 'unexpected'}")
            continue
        for stat, want in expected[key].items():
            got = actual[key].get(stat)
            scale = max(abs(expected[key].get("max", 0.0)), abs(expected[key].get("min", 0.0)), 1.0)
            if got is None or not np.isclose(got, want, rtol=rtol, atol=atol * scale):
                problems.append(f"{key}.{stat}: {got} vs {want}")
    return problems


def registry_lines(info: dict[str, Any], *, urls: list[str], fingerprint_file: str) -> str:
    """The YAML to paste under the version's ``archives:`` in registry.yaml."""
    profile = Path(info["archive"]).stem.rsplit("-", 1)[1]
    lines = [f"{profile}:", f"  sha256: {info['sha256']}", f"  size: {info['size']}",
             f"  content_sha256: {info['content_sha256']}", f"  fingerprint: {fingerprint_file}", "  urls:"]
    lines += [f"    - {u}" for u in urls]
    return "\n".join(lines)


def write_fingerprint(info: dict[str, Any], path: Path) -> None:
    """Write the store's fingerprint file (replaced atomically: a reader never sees half of one)."""
    write_replacing(path, json.dumps(info["fingerprint"], indent=1, sort_keys=True) + "\n")
