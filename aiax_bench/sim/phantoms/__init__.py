"""Phantoms with exact labels, parameterised and seeded.

A phantom is a label volume (one integer per phase) plus the attenuation of
each phase in physical units (1/cm) and the voxel size (µm). The rotation axis
of every phantom is the volume's first axis ``z``; the sample is a cylinder
along ``z`` (phase 1, the matrix) holding inclusions of the other phases.

Inclusions are kept as continuous shapes (:class:`Spheres`, :class:`Cylinders`,
:class:`Ellipsoids`, :class:`Flakes`), so a phantom can be rendered at any
resolution (:func:`render_fractions`): the voxel fractions are one rendering,
and projections are computed from a finer one (:mod:`aiax_bench.sim.project`).
"""

from __future__ import annotations

from collections.abc import Callable

from aiax_bench.sim.phantoms.am_metal import am_metal_phantom
from aiax_bench.sim.phantoms.composite import composite_phantom
from aiax_bench.sim.phantoms.foam import cylinder_phantom, foam_phantom
from aiax_bench.sim.phantoms.mouse import (
    TumourInstances,
    growth_series,
    mouse_layout,
    mouse_phantom,
    tumour_instances,
)
from aiax_bench.sim.phantoms.physical import am_metal_um_phantom, composite_um_phantom, foam_um_phantom
from aiax_bench.sim.phantoms.shapes import Cylinders, Ellipsoids, Flakes, Phantom, Spheres, render_fractions

__all__ = [
    "LESION_INSTANCES",
    "PHANTOMS",
    "Cylinders",
    "Ellipsoids",
    "Flakes",
    "Phantom",
    "Spheres",
    "am_metal_phantom",
    "am_metal_um_phantom",
    "composite_phantom",
    "composite_um_phantom",
    "cylinder_phantom",
    "foam_phantom",
    "foam_um_phantom",
    "growth_series",
    "make_phantom",
    "mouse_layout",
    "mouse_phantom",
    "render_fractions",
    "tumour_instances",
]


#: Phantom generators by name: the families of version 1.0, the generators in µm
#: that later recipes name in their ``phantom.generator``, and the in-vivo mouse.
PHANTOMS: dict[str, Callable[..., Phantom]] = {
    "foam": foam_phantom,
    "composite": composite_phantom,
    "am-metal": am_metal_phantom,
    "cylinder": cylinder_phantom,
    "foam-um": foam_um_phantom,
    "composite-um": composite_um_phantom,
    "am-metal-um": am_metal_um_phantom,
    "mouse": mouse_phantom,
}


def make_phantom(family: str, **params) -> Phantom:
    """Build the phantom of a family with its parameters (see :data:`PHANTOMS`)."""
    from aiax_bench.errors import UnknownNameError

    if family not in PHANTOMS:
        raise UnknownNameError("phantom family", family, list(PHANTOMS), "pick one of the listed families")
    return PHANTOMS[family](**params)


#: Lesion instances by phantom generator: the truth of lesion-wise scores (Dice by lesion size), for the
#: datasets whose registry entry scores lesions (``evaluation.lesions``).
LESION_INSTANCES: dict[str, Callable[[Phantom], TumourInstances]] = {"mouse": tumour_instances}
