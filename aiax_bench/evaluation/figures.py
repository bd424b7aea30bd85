"""Figures written with every evaluation: slices, pore-size distributions, a 3D view of the pores; for the blobs
of a DCT frame stack, their outlines on the frames' maximum over psi.

Everything draws on :class:`matplotlib.figure.Figure` with the Agg canvas
directly (no ``pyplot``, no global backend switch), so it works without a
display, in threads, and inside a user's Jupyter session alike. The 3D view
is a marching-cubes mesh (:func:`skimage.measure.marching_cubes`) drawn with
``Poly3DCollection``: no VTK, no OpenGL.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from aiax_bench.errors import StoreError
from aiax_bench.evaluation import porosity as pz

__all__ = ["FIGURES", "blob_projection", "pore_rendering", "pore_size_overlay", "slice_comparison", "write_figures"]

#: File names of the figures :func:`write_figures` writes, by key.
FIGURES = {"slices": "slice_comparison.png", "pore_sizes": "pore_size_distribution.png",
           "pores_3d": "pores_3d.png", "blobs": "blob_projection.png"}
COLOURS = {"method": "tab:red", "reference": "tab:blue", "truth": "black"}
DPI = 110


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    except OSError as exc:
        raise StoreError(path, f"cannot write figure ({exc.strerror or exc})", "pass a writable directory") from None
    return path


def slice_comparison(low: np.ndarray | None, prediction: np.ndarray, reference: np.ndarray, path: str | Path, *,
                     data_range: float, mask: np.ndarray | None = None, z: int | None = None,
                     labels: bool = False) -> Path:
    """Low-quality input, method, reference and their difference on one z-slice (and one y-slice).

    Parameters
    ----------
    low, prediction, reference : numpy.ndarray
        Volumes (z, y, x) in 1/cm; ``low`` may be None. With ``labels``,
        ``prediction`` and ``reference`` are phase labels.
    path : str or Path
        PNG file to write.
    data_range : float
        Grey-value range shown (0 to ``data_range``); the difference is shown at ±``data_range / 4``.
    mask : numpy.ndarray, optional
        Voxels outside are greyed out in the difference.
    z : int, optional
        Slice index; the middle slice by default.
    """
    z = prediction.shape[0] // 2 if z is None else int(z)
    y = prediction.shape[1] // 2
    views = [(f"z = {z}", lambda v: v[z]), (f"y = {y}", lambda v: v[:, y])]
    panels = [("low", low), ("method", prediction), ("reference", reference)]
    fig = _new_figure(12, 6.2)
    axes = fig.subplots(2, 4)
    for row, (where, cut) in enumerate(views):
        for col, (name, vol) in enumerate(panels):
            ax = axes[row, col]
            ax.set_axis_off()
            if vol is None:
                continue
            if labels and name != "low":
                ax.imshow(cut(vol), cmap="viridis", interpolation="nearest")
            else:
                im = ax.imshow(cut(vol), cmap="gray", vmin=0, vmax=data_range, interpolation="nearest")
            ax.set_title(f"{name} ({where})", fontsize=9)
        diff = cut(prediction).astype(np.float32) - cut(reference).astype(np.float32)
        if mask is not None:
            diff = np.ma.masked_where(~cut(mask), diff)
        scale = 1.0 if labels else data_range / 4
        ax = axes[row, 3]
        dm = ax.imshow(diff, cmap="RdBu_r", vmin=-scale, vmax=scale, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(f"method − reference ({where})", fontsize=9)
    fig.colorbar(dm, ax=axes[:, 3], shrink=0.6, label="labels" if labels else "1/cm")
    if not labels:
        fig.colorbar(im, ax=axes[:, 2], shrink=0.6, label="1/cm")
    return _save(fig, Path(path))


def split_panels(low: np.ndarray, reference: np.ndarray, truth: np.ndarray, path: str | Path, *, data_range: float,
                 title: str, z: int | None = None) -> Path:
    """A split's low-quality input beside the reference scan and the exact phantom, on one z-slice.

    All three share the grey scale 0 to ``data_range`` (1/cm); values beyond it saturate, so an input
    whose fringes or streaks exceed the material's range shows them as they are.
    """
    z = truth.shape[0] // 2 if z is None else int(z)
    fig = _new_figure(10, 4.0)
    axes = fig.subplots(1, 3)
    for ax, (name, vol) in zip(axes, (("low (the split)", low), ("reference scan", reference),
                                      ("truth (exact phantom)", truth)), strict=True):
        im = ax.imshow(np.asarray(vol[z]), cmap="gray", vmin=0, vmax=data_range, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(f"{name}, z = {z}", fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.8, label="1/cm")
    fig.suptitle(title, fontsize=8)
    return _save(fig, Path(path))


def pore_size_overlay(distributions: Mapping[str, Any], path: str | Path) -> Path:
    """Equivalent-diameter histograms and local-thickness distributions of method, reference and truth.

    ``distributions`` is a record's ``"distributions"`` entry (or ``evaluate``'s per sample).
    """
    fig = _new_figure(11, 4.2)
    ax_d, ax_t = fig.subplots(1, 2)
    diameters = {k: np.asarray(distributions[k]["pore_diameters_mm"]) for k in COLOURS if k in distributions}
    every = np.concatenate([d for d in diameters.values() if d.size] or [np.array([1e-3, 1.0])])
    bins = np.geomspace(every.min() * 0.95, every.max() * 1.05, 31)
    for who, d in diameters.items():
        if d.size:
            ax_d.hist(d, bins=bins, histtype="step", lw=1.6, color=COLOURS[who], label=f"{who} (n = {d.size})")
    for bound in distributions.get("size_strata_bounds_diameter_mm", []):
        if np.isfinite(bound):
            ax_d.axvline(bound, color="gray", ls=":", lw=1)
    ax_d.set_xscale("log")
    ax_d.set_xlabel("equivalent diameter of complete pores (mm)")
    ax_d.set_ylabel("pores")
    if any(d.size for d in diameters.values()):  # a volume with no complete pore has nothing to label
        ax_d.legend(fontsize=8)
    ax_d.set_title("pore sizes (dotted: small / medium / large bounds)", fontsize=9)
    for who in COLOURS:
        entry = distributions.get(who) or {}
        if "local_thickness_diameter_mm" in entry:
            ax_t.plot(entry["local_thickness_diameter_mm"], entry["local_thickness_volume_fraction"],
                      drawstyle="steps-mid", color=COLOURS[who], label=who)
    ax_t.set_xlabel("local thickness, diameter (mm)")
    ax_t.set_ylabel("fraction of pore volume")
    ax_t.set_title("pore-size distribution by local thickness", fontsize=9)
    ax_t.legend(fontsize=8)
    return _save(fig, Path(path))


def _crop(volume: np.ndarray, size: int) -> np.ndarray:
    starts = [max(0, (n - size) // 2) for n in volume.shape]
    return volume[tuple(slice(s, s + size) for s in starts)]


def pore_rendering(pores: Mapping[str, np.ndarray], path: str | Path, *, size: int = 40,
                   voxel_size_mm: float | None = None) -> Path:
    """3D views of pore phases (one panel each), as marching-cubes meshes of a central crop.

    Parameters
    ----------
    pores : mapping of str to numpy.ndarray
        Boolean pore phases by name, e.g. ``{"method": ..., "reference": ...}``.
    path : str or Path
        PNG file to write.
    size : int
        Edge of the central crop drawn (voxels); larger crops draw slowly.
    voxel_size_mm : float, optional
        Voxel edge, to label the axes in mm.
    """
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection
    from skimage.measure import marching_cubes

    fig = _new_figure(5.2 * len(pores), 5.2)
    scale = voxel_size_mm or 1.0
    for i, (name, phase) in enumerate(pores.items()):
        ax = fig.add_subplot(1, len(pores), i + 1, projection="3d")
        crop = np.pad(_crop(np.asarray(phase, dtype=bool), size), 1).astype(np.float32)
        ax.set_title(f"{name}: pores in the central {crop.shape[0] - 2}³ voxels", fontsize=9)
        if crop.max() > 0:
            verts, faces, _, _ = marching_cubes(crop, level=0.5, spacing=(scale,) * 3)
            mesh = Poly3DCollection(verts[faces], facecolors=COLOURS.get(name, "tab:gray"), linewidths=0,
                                    alpha=0.85, shade=True)
            ax.add_collection3d(mesh)
        extent = [0, crop.shape[0] * scale]
        ax.set_xlim(extent)
        ax.set_ylim(extent)
        ax.set_zlim(extent)
        unit = "mm" if voxel_size_mm else "voxels"
        ax.set_xlabel(f"z ({unit})", fontsize=8)
        ax.set_ylabel(f"y ({unit})", fontsize=8)
        ax.set_zlabel(f"x ({unit})", fontsize=8)
        ax.tick_params(labelsize=7)
    return _save(fig, Path(path))


def blob_projection(frames: np.ndarray, prediction: np.ndarray, labels: np.ndarray, path: str | Path, *,
                    dark: np.ndarray | None = None) -> Path:
    """The frames' maximum over psi with the outlines of the predicted and the true blobs (their union over psi).

    Parameters
    ----------
    frames : numpy.ndarray
        ``(psi, y, x)`` detector frames (counts).
    prediction, labels : numpy.ndarray
        ``(psi, y, x)`` predicted and true blob labels (0 for the background).
    path : str or Path
        PNG file to write.
    dark : numpy.ndarray, optional
        ``(y, x)`` dark frame (counts), subtracted first.
    """
    image = np.asarray(frames, dtype=np.float32).max(axis=0)
    if dark is not None:
        image = image - np.asarray(dark, dtype=np.float32)
    # Percentiles, not the extremes: hot pixels and zingers would leave the blobs black.
    low, high = np.percentile(image, [1, 99.5])
    fig = _new_figure(6.4, 6.0)
    ax = fig.subplots()
    ax.imshow(image, cmap="gray", vmin=low, vmax=high if high > low else low + 1, interpolation="nearest")
    for name, volume in (("truth", labels), ("method", prediction)):
        footprint = (np.asarray(volume) != 0).any(axis=0).astype(np.float32)
        if footprint.any():
            ax.contour(footprint, levels=[0.5], colors=COLOURS[name], linewidths=0.9)
    ax.set_axis_off()
    ax.set_title(f"maximum over {frames.shape[0]} frames; blobs: method ({COLOURS['method'].removeprefix('tab:')}), "
                 f"truth ({COLOURS['truth']})", fontsize=9)
    return _save(fig, Path(path))


def write_figures(sample, prediction: np.ndarray, outdir: str | Path, *, data_range: float | None,
                  mask: np.ndarray | None = None, threshold: float | None = None,
                  distributions: Mapping[str, Any] | None = None, task: str = "enhance",
                  pore_index: int = 2) -> dict[str, Path]:
    """Write the evaluation figures of one volume and return their paths by key (see :data:`FIGURES`).

    Parameters
    ----------
    sample : aiax_bench.data.loader.Sample
        The scored sample (its ``low``, ``high``, ``labels`` and metadata are read).
    prediction : numpy.ndarray
        The method's volume (``enhance``) or labels (``segment``).
    outdir : str or Path
        Directory (created if needed).
    data_range : float or None
        The dataset's fixed intensity range (1/cm); None for a frame stack.
    mask : numpy.ndarray, optional
        The evaluation mask.
    threshold : float, optional
        The protocol's threshold (1/cm) for ``enhance``; the 3D view is skipped without it.
    distributions : mapping, optional
        The record's ``"distributions"``; the pore-size figure is skipped without it.
    task : str
        ``"enhance"``, ``"segment"`` or ``"dct"`` (a frame stack's blobs: :func:`blob_projection` only).
    pore_index : int
        Label of the pore phase.
    """
    outdir = Path(outdir)
    if task == "dct":
        return {"blobs": blob_projection(sample.read("low"), prediction, sample.read("labels"),
                                         outdir / FIGURES["blobs"], dark=sample.read("dark"))}
    written: dict[str, Path] = {}
    labels = task == "segment"
    reference = sample.read("labels" if labels else "high")
    try:
        low = sample.read("low")
    except StoreError:  # a split without a low-quality volume: draw the rest
        low = None
    written["slices"] = slice_comparison(low, prediction, reference, outdir / FIGURES["slices"],
                                         data_range=data_range, mask=mask, labels=labels)
    if distributions:
        written["pore_sizes"] = pore_size_overlay(distributions, outdir / FIGURES["pore_sizes"])
    voxel_mm = float(sample.meta.get("voxel_size_um", 0)) / 1000 or None
    if labels:
        phases = {"method": prediction == pore_index, "truth": reference == pore_index}
    elif threshold is not None:
        phases = {"method": pz.segment_pores(prediction, threshold=threshold, mask=mask),
                  "reference": pz.segment_pores(reference, threshold=threshold, mask=mask)}
    else:
        phases = {}
    if phases:
        written["pores_3d"] = pore_rendering(phases, outdir / FIGURES["pores_3d"], voxel_size_mm=voxel_mm)
    return written
