"""Re-read a cached store and check it against what was recorded when it was written."""

from __future__ import annotations

import numpy as np

from aiax_bench.data.package import compare_fingerprints
from aiax_bench.data.store import (
    array_fingerprint,
    content_digest,
    digest_of_hashes,
    stream_sha256_and_fingerprint,
)

__all__ = ["verify_store"]


def verify_store(ref: str, *, profile: str | None = None) -> list[str]:
    """Problems found in the cached store of ``ref`` (empty: all is well).

    Every array is read back, slab by slab (store format 2); its statistics are compared with the stored
    fingerprint and the whole content with the stored sha256, and, where the
    registry publishes a fingerprint, with that one too.
    """
    from aiax_bench.data.loader import load

    ds = load(ref, profile=profile, build=False)
    attrs = ds.attrs
    per_array = attrs.get("store_format", 1) >= 2
    arrays, hashes, fingerprint, problems = {}, {}, {}, []
    for key in attrs["fingerprint"]:
        sample_id, name = key.split("/", 1)
        group = ds.group[f"samples/{sample_id}"]
        try:
            if per_array:  # slab by slab: memory holds 64 MiB of one array, whatever the profile
                hashes[key], fingerprint[key] = stream_sha256_and_fingerprint(group[name])
            else:
                arrays[key] = np.asarray(group[name][...])
                fingerprint[key] = array_fingerprint(arrays[key])
        except Exception as exc:
            problems.append(f"{ds.path}/samples/{key}: unreadable ({type(exc).__name__})")
            continue
        if per_array:
            recorded = dict(group.attrs).get("sha256", {}).get(name)
            if hashes[key] != recorded:
                problems.append(f"{ds.path}/samples/{key}: sha256 {hashes[key][:12]}… differs from the "
                                f"recorded {str(recorded)[:12]}… (missing, swapped or damaged chunk)")
    # Same bytes, but statistics of a strided view may differ in the last bit from the contiguous copy.
    problems += [f"{ds.path}: fingerprint {p}" for p in compare_fingerprints(fingerprint, attrs["fingerprint"],
                                                                             rtol=1e-9, atol=0)]
    content = digest_of_hashes(hashes) if per_array else content_digest(arrays)
    if not problems and content != attrs["content_sha256"]:
        problems.append(f"{ds.path}: content sha256 differs from the recorded {attrs['content_sha256']}")
    published = ds.spec.fingerprint(ds.profile)
    if published is not None:
        problems += [f"{ds.path}: published fingerprint {p}" for p in compare_fingerprints(fingerprint, published)]
    return problems
