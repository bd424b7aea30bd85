"""How much of a memory-mapped file this process holds resident (Linux)."""

from __future__ import annotations

from pathlib import Path

import pytest

needs_smaps = pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="reads Linux's /proc/self/smaps")


def resident_kb_of_mapping(path: Path) -> int:
    """This process's resident kB of its memory mappings of ``path`` (Linux ``/proc/self/smaps``)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:  # a mapping's header: address range, perms, offset, ...
            inside = line.endswith(str(path))
        elif inside and head[:1] == ["Rss:"]:
            total += int(head[1])
    return total
