"""astra-toolbox as the independent reference of the projector tests (our angle theta is astra's -theta)."""

from __future__ import annotations

import numpy as np


def astra_projector(astra, n, angles, n_det, spacing):
    vol_geom = astra.create_vol_geom(n, n)
    # The mapping documented in test_recon.py: our angle theta is astra's -theta.
    proj_geom = astra.create_proj_geom("parallel", spacing, n_det, -np.asarray(angles))
    return astra.create_projector("linear", proj_geom, vol_geom), proj_geom, vol_geom


def astra_forward(astra, image, angles, n_det, spacing=1.0):
    pid, _, _ = astra_projector(astra, image.shape[0], angles, n_det, spacing)
    try:
        sid, sino = astra.create_sino(np.ascontiguousarray(image, dtype=np.float32), pid)
        astra.data2d.delete(sid)
    finally:
        astra.projector.delete(pid)
    return sino


def astra_fbp(astra, sino, angles, n, spacing=1.0):
    pid, proj_geom, vol_geom = astra_projector(astra, n, angles, sino.shape[1], spacing)
    sid = astra.data2d.create("-sino", proj_geom, np.ascontiguousarray(sino, dtype=np.float32))
    rid = astra.data2d.create("-vol", vol_geom)
    cfg = astra.astra_dict("FBP")
    cfg.update(ProjectorId=pid, ProjectionDataId=sid, ReconstructionDataId=rid, FilterType="ram-lak")
    aid = astra.algorithm.create(cfg)
    try:
        astra.algorithm.run(aid)
        return astra.data2d.get(rid)
    finally:
        astra.algorithm.delete(aid)
        astra.data2d.delete([sid, rid])
        astra.projector.delete(pid)
