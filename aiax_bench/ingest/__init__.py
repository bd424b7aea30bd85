"""A user's own scans: read (``readers``, ``volumes``), pre-process (``preprocess``), reconstruct
(``reconstruct``) and import them as a dataset store (``importer``).

The path of ``aiax-bench import``: a reader from :data:`readers.READERS` gives
:class:`scan.Projections` (or a :class:`scan.VolumeScan`), :func:`preprocess.preprocess`
turns them into centred sinograms, and :func:`importer.import_scan` writes the
store that every command then opens by name.
"""

from __future__ import annotations

from aiax_bench.ingest.preprocess import Preprocessing, correct, find_center, remove_rings, shift_to_center
from aiax_bench.ingest.readers import (
           READERS,
           ReadOptions,
           read_angles,
           read_data_exchange,
           read_scan,
           read_source,
           read_tiff_scan,
)
from aiax_bench.ingest.reconstruct import reconstruct
from aiax_bench.ingest.scan import Projections, VolumeScan

__all__ = ["READERS", "Preprocessing", "Projections", "ReadOptions", "VolumeScan", "correct", "find_center",
           "read_angles", "read_data_exchange", "read_scan", "read_source", "read_tiff_scan", "reconstruct",
           "remove_rings", "shift_to_center"]
