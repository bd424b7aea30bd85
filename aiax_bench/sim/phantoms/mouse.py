"""In-vivo mouse phantoms for biomedical micro-CT: a torso with its organs and tumours, exact labels.

The volume's first axis ``z`` is the rotation axis and the mouse's long axis,
from head (``z = 0``) to tail; slices are axial cross-sections, ``y`` runs
from the back (dorsal, low ``y``) to the belly and ``x`` from the animal's
left (low ``x``) to its right. The scan covers a section of the torso: the
neck, the thorax and the upper abdomen when the field of view is about
44 mm long (512 voxels of 85 µm), less of it in a shorter one.

Anatomy, in painting order (a structure painted earlier keeps the volume it
shares with a later one, see :func:`aiax_bench.sim.phantoms.render_fractions`):

* tumours, in the liver or in a lung (:class:`Tumour`), and a rim of liver
  around each liver tumour;
* airways: a trachea, two main bronchi and a dichotomous tree of thinner
  tubes in each lung (air);
* bone: vertebrae (a body, two laminae and a spinous process each) with gaps
  for the discs, ribs as chains of straight segments, the sternum;
* heart (blood), liver, two lungs (inflated, low density);
* soft tissue filling the body, a subcutaneous fat layer and the skin, three
  nested elliptic tubes whose cross-section changes along ``z``
  (:class:`EllipticTube`): narrow neck, thorax, wider abdomen.

Every length is in mm (or µm) of the animal and converted with
``voxel_size_um``, so one seed is the same mouse at every voxel size with the
same field of view (``size × voxel_size_um``).

Attenuation
-----------
Linear attenuation ``μ = ρ · (μ/ρ)`` at one effective energy (``energy_kev``,
42 keV by default). The mass attenuation coefficients (coherent scattering
included) are in :data:`TISSUES` at 30, 40, 50 and 60 keV and interpolated
log-log in between. For the ICRU-44 tissues (adipose, skeletal muscle, lung,
whole blood, cortical bone) they are the values of NIST's X-ray mass
attenuation tables (Hubbell & Seltzer, NISTIR 5632; the same as XCOM at these
energies). Liver and skin, absent from those tables, follow ICRU-46 (Woodard &
White, Br. J. Radiol. 59:1209, 1986) by the mixture rule on the elemental
tables of Elam et al. (Radiat. Phys. Chem. 63:121, 2002, as in XrayDB), which
reproduce the NIST values of the other tissues to the last digit. Inflated
lung is lung tissue at 0.30 g/cm³ (air-filled alveoli). Air is 0.

The default energy, 42 keV, stands for the users' 150 kVp tungsten tube with
aluminium filtration seen through a mouse's few centimetres of tissue (an
effective energy, well below the tube voltage); thicker scintillators and copper
filtration raise it, so it is a parameter within the table's 30-60 keV.

Tumour size strata
------------------
Tumours are grouped by the area of their largest axial cross-section, with the
users' bounds as defaults: small below 50 mm², medium 50-100 mm², large above
100 mm². At mouse scale these are large: 50 mm² is a disc 8 mm across and
100 mm² one 11.3 mm across, in a torso about 26 mm wide whose lungs are each
about 8 mm wide. Only the liver (about 20 mm wide, 17 mm long: already enlarged,
as a tumour-bearing liver is) can hold a medium or a large tumour, and a large
one fills about half of its cross-section, an end-stage burden. So:

* medium and large tumours grow in the liver, small ones in the liver or a
  lung; each medium or large one is centred in a slab of its own along the
  liver's height, and lies flattened along ``z`` (shortest axis within 20°
  of it), without which two of them rarely fit one above the other;
* a liver tumour is centred in the liver and at least half inside it; the
  rest may bulge into the abdomen, wrapped in a rim of liver as thick as
  ``tumour_gap_um`` (the liver grows around it), so every tumour voxel is
  enclosed by its host;
* the defaults, 4 small, 1 medium and 1 large, fill all three strata
  (``tests/test_mouse.py``); more medium or large ones may find no room, and
  the generator then raises.

The bounds are parameters (``strata_mm2``) for users who stratify otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from aiax_bench.errors import InputError
from aiax_bench.sim.phantoms.shapes import Cylinders, Ellipsoids, Phantom, Spheres, _ellipsoid_bounds, _render
from aiax_bench.validation import check_finite_number, check_positive, check_positive_int

__all__ = [
    "PHASES",
    "STRATA",
    "TISSUES",
    "TISSUE_ENERGIES_KEV",
    "EllipticTube",
    "MouseLayout",
    "Tumour",
    "TumourInstances",
    "growth_series",
    "mouse_layout",
    "mouse_phantom",
    "tissue_attenuation",
    "tumour_instances",
]

#: Energies (keV) of the mass attenuation columns of :data:`TISSUES`.
TISSUE_ENERGIES_KEV = (30.0, 40.0, 50.0, 60.0)

#: Tissue: (density in g/cm³, mass attenuation coefficient μ/ρ in cm²/g at each of
#: :data:`TISSUE_ENERGIES_KEV`). Sources in the module docstring.
TISSUES: dict[str, tuple[float, tuple[float, float, float, float]]] = {
    "skin": (1.09, (0.3627, 0.2618, 0.2226, 0.2025)),            # ICRU-46 adult skin
    "adipose": (0.95, (0.3064, 0.2396, 0.2123, 0.1974)),         # ICRU-44 adipose tissue
    "muscle": (1.05, (0.3783, 0.2685, 0.2263, 0.2048)),          # ICRU-44 skeletal muscle
    "lung_inflated": (0.30, (0.3815, 0.2699, 0.2270, 0.2053)),   # ICRU-44 lung tissue, inflated
    "blood": (1.06, (0.3852, 0.2715, 0.2278, 0.2057)),           # ICRU-44 whole blood
    "liver": (1.06, (0.3798, 0.2691, 0.2265, 0.2049)),           # ICRU-46 adult liver
    "cortical_bone": (1.92, (1.3311, 0.6655, 0.4242, 0.3148)),   # ICRU-44 cortical bone
}

#: Phases by label. ``air`` lies outside the field-of-view cylinder that the renderer and the
#: projector share (radius ``size / 2``), ``air_fov`` inside it around the animal: both are air.
PHASES = ("air", "air_fov", "skin", "fat", "soft_tissue", "lung", "airway", "bone", "heart", "liver",
          "liver_tumour", "lung_tumour")
_LABEL = {name: k for k, name in enumerate(PHASES)}
_TISSUE_OF = {"skin": "skin", "fat": "adipose", "soft_tissue": "muscle", "lung": "lung_inflated",
              "heart": "blood", "liver": "liver", "bone": "cortical_bone"}

#: Tumour size strata, by the largest axial cross-section area.
STRATA = ("small", "medium", "large")

# Animal size varies by this factor between seeds; the field-of-view check uses its top.
_SCALE_RANGE = (0.95, 1.05)
_WOBBLE_MAX = 0.02
# Candidate centres tried per drawn tumour shape before a new shape is drawn.
_CENTRES_PER_SHAPE = 100
# Times the whole placement restarts when a tumour finds no room.
_RESTARTS = 3
# Targets stay this far (relative) inside a stratum, so the grid error of a lobulated
# tumour's area can never move it to another stratum.
_STRATUM_MARGIN = 0.05


# --- Attenuation ---------------------------------------------------------------------------------


def tissue_attenuation(tissue: str, energy_kev: float) -> float:
    """Linear attenuation coefficient of a tissue of :data:`TISSUES` (1/cm).

    Parameters
    ----------
    tissue : str
        A key of :data:`TISSUES`.
    energy_kev : float
        Photon energy (keV), within the table (30-60 keV); log-log interpolation.

    Returns
    -------
    float
        ``ρ · μ/ρ`` (1/cm).
    """
    if tissue not in TISSUES:
        raise InputError("tissue", f"is {tissue!r}", f"expected one of {', '.join(TISSUES)}")
    e = check_finite_number("energy_kev", energy_kev, "keV")
    lo, hi = TISSUE_ENERGIES_KEV[0], TISSUE_ENERGIES_KEV[-1]
    if not lo <= e <= hi:
        raise InputError("energy_kev", f"is {e}", f"expected an effective energy in [{lo}, {hi}] keV")
    density, mu_rho = TISSUES[tissue]
    return float(density * np.exp(np.interp(np.log(e), np.log(TISSUE_ENERGIES_KEV), np.log(mu_rho))))


# --- Shapes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EllipticTube:
    """An elliptic cylinder along ``z`` whose cross-section changes with ``z`` (a torso), of phase ``label``.

    The cross-section at height ``z`` is the ellipse centred on ``centre``
    ``(y, x)`` with semi-axes ``semi[:, 0]`` along ``y`` and ``semi[:, 1]``
    along ``x``, linear between the ``knots`` (heights, increasing) and constant
    beyond them. All lengths in voxels. A group of one shape, used by the
    renderer as :class:`~aiax_bench.sim.phantoms.Ellipsoids` are.

    The level is ``(q - 1) / K`` with ``q`` the normalised elliptic radius and
    ``K`` a bound on ``|∇q|`` over the bounding box grown by two voxels, where
    renderers evaluate it: ``|∂q/∂(y, x)| <= 1 / min semi-axis`` and
    ``|∂q/∂z| <= q · max |semi'| / semi``, so the level is 1-Lipschitz there.
    """

    knots: np.ndarray
    semi: np.ndarray
    centre: np.ndarray
    label: int
    lipschitz: float = field(init=False, repr=False, default=0.0)

    def __post_init__(self) -> None:
        z = np.asarray(self.knots, dtype=np.float64).ravel()
        semi = np.asarray(self.semi, dtype=np.float64).reshape(-1, 2)
        if z.size < 2 or z.size != semi.shape[0] or np.any(np.diff(z) <= 0) or np.any(semi <= 0):
            raise InputError("EllipticTube", f"has {z.size} knots and {semi.shape[0]} semi-axis pairs",
                             "expected at least 2 increasing knots, one positive pair each")
        object.__setattr__(self, "knots", z)
        object.__setattr__(self, "semi", semi)
        object.__setattr__(self, "centre", np.asarray(self.centre, dtype=np.float64).ravel())
        slope = np.abs(np.diff(semi, axis=0)) / np.diff(z)[:, None] / np.minimum(semi[:-1], semi[1:])
        reach = semi.max(axis=0) + 2.0
        q_max = float(np.hypot(*(reach / semi.min(axis=0))))
        bound = np.hypot(1.0 / semi.min(), q_max * slope.max())
        object.__setattr__(self, "lipschitz", float(bound))

    def __len__(self) -> int:
        return 1

    def semi_at(self, z) -> np.ndarray:
        """Semi-axes ``(..., 2)`` ``(y, x)`` at heights ``z`` (voxels)."""
        z = np.asarray(z, dtype=np.float64)
        return np.stack([np.interp(z, self.knots, self.semi[:, k]) for k in range(2)], axis=-1)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        reach = self.semi.max(axis=0)
        lo = np.array([[self.knots[0], *(self.centre - reach)]])
        hi = np.array([[self.knots[-1], *(self.centre + reach)]])
        return lo, hi

    def level(self, i: int, points: np.ndarray) -> np.ndarray:
        semi = self.semi_at(points[..., 0])
        q = np.hypot((points[..., 1] - self.centre[0]) / semi[..., 0], (points[..., 2] - self.centre[1]) / semi[..., 1])
        return (q - 1.0) / self.lipschitz


@dataclass(frozen=True)
class Tumour:
    """One tumour: a main ellipsoid (row 0) and up to two lobes, a union of ellipsoids.

    Attributes
    ----------
    phase : str
        ``"liver_tumour"`` or ``"lung_tumour"``.
    host : str
        ``"liver"``, ``"lung_left"`` or ``"lung_right"``.
    centres, rotations, semi_axes : numpy.ndarray
        The ellipsoids as in :class:`~aiax_bench.sim.phantoms.Ellipsoids` (voxels).
    area_mm2 : float
        Largest axial cross-section of the union (mm²): exact for one ellipsoid,
        on a 200 × 200 grid per plane for a lobulated tumour.
    stratum : str
        Its size stratum, one of :data:`STRATA`.
    """

    phase: str
    host: str
    centres: np.ndarray
    rotations: np.ndarray
    semi_axes: np.ndarray
    area_mm2: float
    stratum: str

    def scaled(self, factor: float, strata_mm2: tuple[float, float]) -> Tumour:
        """The tumour grown (``factor > 1``) or shrunk about its main centre; areas scale by ``factor²``."""
        c0 = self.centres[0]
        area = self.area_mm2 * factor**2
        return replace(self, centres=c0 + factor * (self.centres - c0), semi_axes=factor * self.semi_axes,
                       area_mm2=area, stratum=_stratum(area, strata_mm2))

    def ellipsoids(self, label: int) -> Ellipsoids:
        return Ellipsoids(self.centres, self.rotations, self.semi_axes, label=label)


@dataclass(frozen=True)
class MouseLayout:
    """A mouse before rendering: its continuous shapes, phases and parameters.

    Attributes
    ----------
    size : int
        Edge of the cubic volume (voxels).
    voxel_size_um : float
        Voxel edge (µm).
    phases : tuple of str
        :data:`PHASES`.
    attenuation : tuple of float
        Attenuation of each phase (1/cm).
    anatomy : tuple
        Shape groups of everything but the tumours, in painting order (voxels).
    tumours : tuple of Tumour
        The tumours, in placement order (largest stratum first); tumour ``k``
        has instance id ``k + 1``.
    params : dict
        Arguments and drawn figures (JSON-compatible).
    """

    size: int
    voxel_size_um: float
    phases: tuple[str, ...]
    attenuation: tuple[float, ...]
    anatomy: tuple
    tumours: tuple[Tumour, ...]
    params: dict

    def groups(self, tumours: tuple[Tumour, ...] | None = None) -> tuple:
        """All shape groups in painting order (``self.tumours`` by default).

        The tumours come first, then a rim of liver around each liver tumour
        (its ellipsoids grown by ``tumour_gap_um``), which keeps the part of a
        tumour that bulges out of the liver wrapped in liver, then the anatomy.
        """
        tumours = self.tumours if tumours is None else tumours
        rim = self.params["tumour_gap_um"] / self.voxel_size_um
        out = []
        for phase, label, grow in (("liver_tumour", "liver_tumour", 0.0), ("lung_tumour", "lung_tumour", 0.0),
                                   ("liver_tumour", "liver", rim)):
            mine = [t for t in tumours if t.phase == phase]
            out.append(Ellipsoids(np.concatenate([t.centres for t in mine]) if mine else np.zeros((0, 3)),
                                  np.concatenate([t.rotations for t in mine]) if mine else np.zeros((0, 3, 3)),
                                  np.concatenate([t.semi_axes for t in mine]) + grow if mine else np.zeros((0, 3)),
                                  label=_LABEL[label]))
        return (*out, *self.anatomy)


# --- Geometry helpers (mm, origin at the volume centre, axes z, y, x) -------------------------------


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniformly random rotation (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _rotation(axis: int, degrees: float) -> np.ndarray:
    """Rotation about coordinate ``axis`` (0 z, 1 y, 2 x) by ``degrees``."""
    c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def _segments(points: np.ndarray, radius: float) -> tuple[list, list, list, list]:
    """Cylinder rows (centres, directions, half-lengths, radii) joining consecutive ``points``."""
    p = np.asarray(points, dtype=np.float64)
    d = p[1:] - p[:-1]
    length = np.linalg.norm(d, axis=1)
    return list((p[1:] + p[:-1]) / 2), list(d / length[:, None]), list(length / 2), [radius] * len(d)


def _fibonacci_sphere(n: int) -> np.ndarray:
    k = np.arange(n) + 0.5
    z = 1 - 2 * k / n
    phi = np.pi * (1 + 5**0.5) * k
    r = np.sqrt(1 - z * z)
    return np.stack([z, r * np.sin(phi), r * np.cos(phi)], axis=1)


_SPHERE = _fibonacci_sphere(256)


def _ellipsoid_points(centres, rotations, semi, fraction: float) -> np.ndarray:
    """Points at ``fraction`` of the way to the surface of each ellipsoid, ``(n * 256, 3)``."""
    u = fraction * _SPHERE
    return np.concatenate([c + (u * s) @ r.T for c, r, s in zip(centres, rotations, semi, strict=True)])


def _union_level(group: Ellipsoids, points: np.ndarray) -> np.ndarray:
    return np.min([group.level(i, points) for i in range(len(group))], axis=0)


def _axial_area(centres, rotations, semi) -> float:
    """Largest ``z``-section area of a union of ellipsoids (square input units).

    One ellipsoid: its central section, ``π / sqrt(det Q_yx)`` with ``Q = R S⁻² Rᵀ``
    (parallel sections are smaller copies). A union: the largest of 16 planes,
    refined by golden-section search, each plane's union of ellipses counted
    on a 200 × 200 grid.
    """
    centres, rotations, semi = (np.asarray(a, dtype=np.float64) for a in (centres, rotations, semi))
    q = np.einsum("nij,nj,nkj->nik", rotations, semi**-2.0, rotations)
    if len(semi) == 1:
        return float(np.pi / np.sqrt(np.linalg.det(q[0, 1:, 1:])))
    # The section of ellipsoid k at height c_z + t: centre shifted by -t Q_yx⁻¹ q_z,
    # squared radius 1 - t² (Q_zz - q_zᵀ Q_yx⁻¹ q_z).
    q_yx, q_z = q[:, 1:, 1:], q[:, 1:, 0]
    shift = np.linalg.solve(q_yx, q_z[..., None])[..., 0]
    shrink = q[:, 0, 0] - np.einsum("nk,nk->n", q_z, shift)
    lo, hi = _ellipsoid_bounds(centres, rotations, semi)
    lo, hi = lo.min(axis=0), hi.max(axis=0)
    h = max(hi[1] - lo[1], hi[2] - lo[2]) / 200
    yy, xx = np.meshgrid(np.arange(lo[1] + h / 2, hi[1], h), np.arange(lo[2] + h / 2, hi[2], h), indexing="ij")

    def area(z: float) -> float:
        inside = np.zeros(yy.shape, dtype=bool)
        for c, m, d, k in zip(centres, q_yx, shift, shrink, strict=True):
            t = z - c[0]
            r2 = 1.0 - t * t * k
            if r2 <= 0:
                continue
            dy, dx = yy - (c[1] - t * d[0]), xx - (c[2] - t * d[1])
            inside |= m[0, 0] * dy * dy + 2 * m[0, 1] * dy * dx + m[1, 1] * dx * dx <= r2
        return float(inside.sum()) * h * h

    zs = np.linspace(lo[0], hi[0], 18)[1:-1]
    values = [area(z) for z in zs]
    k = int(np.argmax(values))
    a, b = zs[max(k - 1, 0)], zs[min(k + 1, zs.size - 1)]
    best = values[k]
    golden = (5**0.5 - 1) / 2
    for _ in range(10):
        m1, m2 = b - golden * (b - a), a + golden * (b - a)
        f1, f2 = area(m1), area(m2)
        best = max(best, f1, f2)
        a, b = (a, m2) if f1 >= f2 else (m1, b)
    return best


def _stratum(area_mm2: float, strata_mm2: tuple[float, float]) -> str:
    return STRATA[int(area_mm2 >= strata_mm2[0]) + int(area_mm2 > strata_mm2[1])]


# --- Anatomy (mm) ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Body:
    """The body outline: semi-axes ``(a along y, b along x)`` in mm as functions of ``z`` (mm)."""

    half_width: float
    half_height: float
    z_shoulder: float
    z_belly: float
    wobble: tuple[float, float, float]
    centre_y: float

    def semi(self, z) -> tuple[np.ndarray, np.ndarray]:
        z = np.asarray(z, dtype=np.float64)
        shoulder = 0.5 * (1 + np.tanh((z - self.z_shoulder) / 2.5))
        belly = 0.5 * (1 + np.tanh((z - self.z_belly) / 4.0))
        amp, wavelength, phase = self.wobble
        f = 1 + amp * np.sin(2 * np.pi * z / wavelength + phase)
        b = self.half_width * (0.55 + 0.33 * shoulder + 0.12 * belly) * f
        a = self.half_height * (0.65 + 0.27 * shoulder + 0.08 * belly) * f
        return a, b


@dataclass
class _Anatomy:
    """Shapes of one mouse in mm, built in a fixed order of random draws."""

    body: _Body
    skin: float
    fat: float
    scale: float
    spine_y: object = None
    bone_cyl: list = field(default_factory=lambda: [[], [], [], []])
    bone_joints: list = field(default_factory=lambda: [[], []])
    air_cyl: list = field(default_factory=lambda: [[], [], [], []])
    air_joints: list = field(default_factory=lambda: [[], []])
    major_airways: int = 0
    organs: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)

    def add(self, store: list, rows: tuple) -> None:
        for column, values in zip(store, rows, strict=True):
            column.extend(values)

    def wall(self) -> float:
        """Depth below the skin of the rib cage's centre line (mm)."""
        return self.skin + self.fat + 0.7 * self.scale


def _draw_body(rng: np.random.Generator, width_mm: float, height_mm: float, skin_mm: float,
               fat_mm: float) -> _Anatomy:
    s = rng.uniform(*_SCALE_RANGE)
    z_shoulder = -15.0 * s + rng.uniform(-1.5, 1.5)
    body = _Body(half_width=width_mm / 2 * s, half_height=height_mm / 2 * s, z_shoulder=z_shoulder,
                 z_belly=z_shoulder + 20.0 * s, centre_y=rng.uniform(-0.3, 0.3),
                 wobble=(rng.uniform(0, _WOBBLE_MAX), rng.uniform(15.0, 30.0), rng.uniform(0, 2 * np.pi)))
    anatomy = _Anatomy(body=body, skin=skin_mm, fat=fat_mm * rng.uniform(0.7, 1.3), scale=s)
    depth = 3.9 * s  # vertebral body centre below the dorsal skin

    def spine_y(z):
        return body.centre_y - body.semi(z)[0] + depth

    anatomy.spine_y = spine_y
    anatomy.figures.update(scale=s, z_shoulder_mm=z_shoulder, z_diaphragm_mm=z_shoulder + 17.0 * s + rng.uniform(-1, 1),
                           fat_thickness_mm=anatomy.fat)
    return anatomy


def _add_spine(rng: np.random.Generator, an: _Anatomy, half_length_mm: float) -> list[float]:
    """Vertebrae along the whole scan; returns the heights of their centres (mm)."""
    s = an.scale
    period, r_body, half = 2.0 * s, 1.0 * s, 0.75 * s
    zs = np.arange(-half_length_mm - 2 * period + rng.uniform(0, period), half_length_mm + 2 * period, period)
    for z in zs:
        y = an.spine_y(z)
        an.add(an.bone_cyl, ([np.array([z, y, 0.0])], [np.array([1.0, 0, 0])], [half], [r_body]))
        # Laminae close a spinal canal dorsal to the body; the spinous process tops them.
        apex = np.array([z, y - r_body - 1.2 * s, 0.0])
        for side in (-1, 1):
            an.add(an.bone_cyl, _segments([[z, y - 0.7 * r_body, side * 0.75 * r_body], apex], 0.22 * s))
        an.add(an.bone_cyl, _segments([apex, apex - [0, 0.3 * s, 0]], 0.22 * s))
        an.add(an.bone_joints, ([apex], [0.22 * s]))
    return list(zs)


def _add_ribs(an: _Anatomy, vertebrae: list[float]) -> None:
    s, body = an.scale, an.body
    z_top, z_bottom = an.figures["z_shoulder_mm"] + 1.0 * s, an.figures["z_diaphragm_mm"] + 5.0 * s
    thoracic = [z for z in vertebrae if z_top <= z <= z_bottom]
    for k, z in enumerate(thoracic):
        a, b = (v - an.wall() for v in body.semi(z))
        # True ribs reach the sternum; the last ones (false ribs) end short of it.
        theta = np.linspace(0.5, 2.45 if k < 7 else 1.9, 5)
        slant = 2.0 * s * (theta - theta[0]) / (2.45 - theta[0])
        y_spine = an.spine_y(z)
        for side in (-1, 1):
            arc = np.stack([z + slant, body.centre_y - a * np.cos(theta), side * b * np.sin(theta)], axis=1)
            points = np.concatenate([[[z, y_spine, side * 1.0 * s]], arc])
            an.add(an.bone_cyl, _segments(points, 0.3 * s))
            an.add(an.bone_joints, (list(points[1:-1]), [0.3 * s] * (len(points) - 2)))
    if thoracic:
        for z in np.arange(thoracic[0], an.figures["z_diaphragm_mm"] + 1.0 * s, 2.3 * s):
            y = body.centre_y + body.semi(z)[0] - an.wall()
            an.add(an.bone_cyl, ([np.array([z, y, 0.0])], [np.array([1.0, 0, 0])], [0.8 * s], [0.5 * s]))
    an.figures["rib_pairs"] = len(thoracic)


def _add_organs(rng: np.random.Generator, an: _Anatomy) -> None:
    """Lungs, heart and liver as ellipsoids (centre, rotation, semi-axes in mm)."""
    s, body = an.scale, an.body
    z_top, z_diaph = an.figures["z_shoulder_mm"] + 1.0 * s, an.figures["z_diaphragm_mm"]
    z_lung = (z_top + z_diaph + 1.5 * s) / 2
    a, b = body.semi(z_lung)
    inner_a, inner_b = a - an.wall() - 0.3 * s, b - an.wall() - 0.7 * s
    for side, name, share in ((-1, "lung_left", 0.40), (1, "lung_right", 0.44)):
        semi = np.array([(z_diaph + 1.5 * s - z_top) / 2, 0.62 * inner_a, share * inner_b])
        semi *= rng.uniform(0.95, 1.05, 3)
        centre = np.array([z_lung, body.centre_y - 0.1 * a, side * (inner_b - semi[2])])
        an.organs[name] = (centre, _rotation(0, rng.uniform(-5, 5)), semi)
    a, b = body.semi(z_diaph - 4.0 * s)
    an.organs["heart"] = (
        np.array([z_diaph - 4.0 * s + rng.uniform(-0.5, 0.5), body.centre_y + 0.28 * a, -0.15 * b]),
        _rotation(1, rng.uniform(27, 43)) @ _rotation(2, rng.uniform(-10, 10)),
        np.array([3.6, 3.0, 3.2]) * s * rng.uniform(0.95, 1.05, 3))
    semi_z = 8.5 * s * rng.uniform(0.95, 1.05)
    z_liver = z_diaph - 1.0 * s + semi_z
    a, b = (v - an.skin - an.fat for v in body.semi(z_liver))
    an.organs["liver"] = (
        np.array([z_liver, body.centre_y + 0.14 * a, 0.06 * b]),
        _rotation(1, rng.uniform(-8, 8)),
        np.array([semi_z, 0.8 * a * rng.uniform(0.95, 1.05), 0.82 * b * rng.uniform(0.95, 1.05)]))


def _organ(an: _Anatomy, name: str) -> Ellipsoids:
    c, r, semi = an.organs[name]
    return Ellipsoids(c, r, semi, label=_LABEL["lung" if name.startswith("lung") else name])


def _add_airways(rng: np.random.Generator, an: _Anatomy, half_length_mm: float, generations: int) -> None:
    """Trachea, main bronchi, then a dichotomous tree kept inside each lung."""
    s = an.scale
    r_trachea, r_bronchus = 0.7 * s, 0.45 * s
    lungs = {name: _organ(an, name) for name in ("lung_left", "lung_right")}
    z_carina = float(np.mean([g.centres[0, 0] - 0.3 * g.semi_axes[0, 0] for g in lungs.values()]))

    def trachea_point(z):
        # Ventral to the vertebral bodies, with room for the oesophagus between.
        return [z, an.spine_y(z) + 1.0 * s + 1.1 * s + r_trachea, 0.0]

    z_top = -half_length_mm - 2.0
    path = np.array([trachea_point(z) for z in np.linspace(z_top, z_carina, 4)])
    an.add(an.air_cyl, _segments(path, r_trachea))
    an.add(an.air_joints, (list(path[1:]), [r_trachea] * 3))
    blockers = [_organ(an, "heart"), _organ(an, "liver")]
    for lung in lungs.values():
        c, semi = lung.centres[0], lung.semi_axes[0]
        side = np.sign(c[2])
        hilum = np.array([c[0] - 0.1 * semi[0], c[1], c[2] - side * 0.35 * semi[2]])
        an.add(an.air_cyl, _segments([path[-1], hilum], r_bronchus))
        an.add(an.air_joints, ([hilum], [r_bronchus]))
        # The first split sends one branch to the apex and one to the base, as the lobar bronchi do.
        first = [_unit([-1.0, 0.0, 0.5 * side]), _unit([1.0, 0.1, 0.5 * side])]
        length = 0.3 * semi[0]
        for d in first:
            _branch(rng, an, lung, blockers, hilum, _unit(d + rng.normal(0, 0.1, 3)), length, 0.8 * r_bronchus,
                    1, generations)
    an.major_airways = len(an.air_cyl[0])


def _branch(rng, an: _Anatomy, lung: Ellipsoids, blockers: list, start: np.ndarray, direction: np.ndarray,
            length: float, radius: float, generation: int, generations: int) -> None:
    if generation > generations:
        return
    for factor in (1.0, 0.6):
        end = start + direction * length * factor
        probe = np.stack([start + 0.5 * (end - start), end])
        inside = lung.level(0, probe).max() < -(radius + 0.1)
        clear = all(b.level(0, probe).min() > radius for b in blockers)
        if inside and clear:
            break
    else:
        return
    an.add(an.air_cyl, _segments([start, end], radius))
    an.add(an.air_joints, ([end], [radius]))
    axis = _unit(np.cross(direction, rng.normal(size=3)))
    angle = np.deg2rad(rng.uniform(25, 40))
    for sign in (-1, 1):
        # Rodrigues' rotation of the parent direction about a random perpendicular axis.
        t = sign * angle
        child = direction * np.cos(t) + np.cross(axis, direction) * np.sin(t)
        _branch(rng, an, lung, blockers, end, _unit(child), length * 0.8 * rng.uniform(0.85, 1.15),
                radius * 0.79, generation + 1, generations)


# --- Tumours ---------------------------------------------------------------------------------------


def _flat_rotation(rng: np.random.Generator, tilt_degrees: float) -> np.ndarray:
    """Rotation whose last column (the shortest axis) lies within ``tilt_degrees`` of ``z``, random about it."""
    theta, phi = np.deg2rad(rng.uniform(0, tilt_degrees)), rng.uniform(0, 2 * np.pi)
    d = np.array([np.cos(theta), np.sin(theta) * np.sin(phi), np.sin(theta) * np.cos(phi)])
    u = _unit(np.cross(d, [0.0, 1.0, 0.0] if abs(d[1]) < 0.9 else [0.0, 0.0, 1.0]))
    v = np.cross(d, u)
    psi = rng.uniform(0, 2 * np.pi)
    return np.stack([np.cos(psi) * u + np.sin(psi) * v, -np.sin(psi) * u + np.cos(psi) * v, d], axis=1)


def _draw_tumour_shape(rng: np.random.Generator, area_mm2: float, lobulated: bool, flat: bool):
    """A main ellipsoid and 0-2 lobes (mm, about the main centre) whose largest axial section is ``area_mm2``.

    Axis ratios 1 : 0.7-1 : 0.45-0.75 and a uniformly random orientation; a
    ``flat`` tumour has ratios 1 : 0.7-1 : 0.4-0.6 and its shortest axis within
    20° of ``z``.
    """
    semi = np.array([1.0, rng.uniform(0.7, 1.0), rng.uniform(0.4, 0.6) if flat else rng.uniform(0.45, 0.75)])
    rot = _flat_rotation(rng, 20.0) if flat else _random_rotation(rng)
    centres, rotations, semis = [np.zeros(3)], [rot], [semi]
    if lobulated:
        for _ in range(int(rng.integers(1, 3))):
            u = _unit(rng.normal(size=3))
            centres.append(rot @ (semi * u) * rng.uniform(0.5, 0.75))
            rotations.append(_random_rotation(rng))
            semis.append(rng.uniform(0.35, 0.55) * np.array([1.0, rng.uniform(0.75, 1.0), rng.uniform(0.6, 0.9)]))
    centres, rotations, semis = np.array(centres), np.array(rotations), np.array(semis)
    k = np.sqrt(area_mm2 / _axial_area(centres, rotations, semis))
    return centres * k, rotations, semis * k


def _reach(shape, frame: np.ndarray) -> np.ndarray:
    """Half-extent of a tumour (offsets, rotations, semi-axes) along each column of ``frame``."""
    offsets, rotations, semi = shape
    extent = [np.abs(frame.T @ c) + np.sqrt(np.einsum("jk,jk->j", frame.T @ r, (frame.T @ r) * s**2))
              for c, r, s in zip(offsets, rotations, semi, strict=True)]
    return np.max(extent, axis=0)


def _probe(group, i: int) -> tuple[np.ndarray, float]:
    """Points covering obstacle ``i`` of a group, and how far its surface lies beyond them."""
    if isinstance(group, Cylinders):
        h, r = group.half_lengths[i], group.radii[i]
        t = np.linspace(-h, h, int(np.ceil(2 * h / (0.5 * r))) + 1)
        return group.centres[i] + t[:, None] * group.directions[i], float(r)
    if isinstance(group, Spheres):
        return group.centres[i][None], float(group.radii[i])
    return _ellipsoid_points(group.centres[i:i + 1], group.rotations[i:i + 1], group.semi_axes[i:i + 1], 1.0), 0.0


@dataclass
class _Room:
    """Where a tumour may go: in ``space`` with ``gap`` to spare, mostly in its ``host`` organ, clear of the
    ``obstacles``, inside the scanned height (mm)."""

    space: object
    host: Ellipsoids
    obstacles: list
    gap: float
    z_limit: float

    def fits(self, cand: Ellipsoids) -> bool:
        lo, hi = cand.bounds()
        lo, hi = lo.min(axis=0), hi.max(axis=0)
        if lo[0] < -self.z_limit or hi[0] > self.z_limit:
            return False
        surface = _ellipsoid_points(cand.centres, cand.rotations, cand.semi_axes, 1.0)
        if self.space.level(0, surface).max() >= -self.gap:
            return False
        points = np.concatenate([surface, _ellipsoid_points(cand.centres, cand.rotations, cand.semi_axes, 0.55),
                                 cand.centres])
        if self.host.level(0, cand.centres[:1])[0] >= -self.gap or np.mean(self.host.level(0, points) < 0) < 0.5:
            return False
        for group in self.obstacles:
            g_lo, g_hi = group.bounds()
            near = np.flatnonzero(np.all(g_lo < hi + self.gap, axis=1) & np.all(g_hi > lo - self.gap, axis=1))
            for i in near:
                if group.level(i, points).min() <= self.gap:
                    return False
                probe, reach = _probe(group, i)
                if _union_level(cand, probe).min() <= self.gap + reach:
                    return False
        return True


def _rooms(an: _Anatomy, gap_mm: float, z_limit: float, half_length_mm: float) -> dict[str, _Room]:
    """A room per host. Lung tumours stay inside their lung. Liver tumours are centred in the liver and at
    least half inside it; the rest may bulge into the abdomen, wrapped in a rim of liver, as large liver
    tumours do (the liver grows around them); they stay clear of the lungs."""
    bones = [Cylinders(*an.bone_cyl, label=0), Spheres(*an.bone_joints, label=0)]
    major = Cylinders(*(column[:an.major_airways] for column in an.air_cyl), label=0)
    organs = {name: _organ(an, name) for name in ("heart", "liver", "lung_left", "lung_right")}
    z = np.arange(-half_length_mm - 5.0, half_length_mm + 5.0, 0.25)
    wall = an.skin + an.fat + 0.5 * an.scale
    cavity = EllipticTube(z, np.stack(an.body.semi(z), axis=1) - wall, (an.body.centre_y, 0.0), label=0)
    rooms = {"liver": _Room(cavity, organs["liver"], [*bones, major, organs["heart"], organs["lung_left"],
                                                          organs["lung_right"]], gap_mm, z_limit)}
    for side in ("lung_left", "lung_right"):
        rooms[side] = _Room(organs[side], organs[side], [*bones, major, organs["heart"], organs["liver"]],
                            gap_mm, z_limit)
    return rooms


def _centre(rng: np.random.Generator, host: Ellipsoids, spread: np.ndarray, slab: tuple[float, float] | None):
    """A point drawn uniformly in the host's ellipsoid of semi-axes ``spread``, within the ``z`` slab if given."""
    c, r = host.centres[0], host.rotations[0]
    for _ in range(64):
        p = c + r @ (spread * _unit(rng.normal(size=3)) * rng.uniform() ** (1 / 3))
        if slab is None or slab[0] <= p[0] < slab[1]:
            break
    return p


def _place_tumours(rng: np.random.Generator, an: _Anatomy, *, counts, strata_mm2, small_area_mm2, large_area_mm2,
                   lung_share, lobulated_share, gap_mm, z_limit, half_length_mm, max_attempts) -> list[dict]:
    """Tumours in mm, largest stratum first, each in its host and clear of the others.

    Medium and large tumours each get a slab of their own along the liver's
    height (in random order): placed anywhere, the first large one can leave no
    room for the next. A tumour that finds no room restarts the placement, at
    most ``_RESTARTS`` times.
    """
    lo_mid, hi_mid = strata_mm2
    ranges = {"small": (small_area_mm2, (1 - _STRATUM_MARGIN) * lo_mid, True),
              "medium": ((1 + _STRATUM_MARGIN) * lo_mid, (1 - _STRATUM_MARGIN) * hi_mid, False),
              "large": ((1 + _STRATUM_MARGIN) * hi_mid, large_area_mm2, False)}
    liver = _organ(an, "liver")
    z0, z1 = liver.bounds()[0][0, 0], liver.bounds()[1][0, 0]
    n_big = counts[1] + counts[2]
    for _ in range(_RESTARTS + 1):
        rooms = _rooms(an, gap_mm, z_limit, half_length_mm)
        edges = z0 + (z1 - z0) * np.arange(n_big + 1) / max(n_big, 1)
        slabs = [(edges[j], edges[j + 1]) for j in rng.permutation(n_big)]
        placed: list[dict] = []
        n_lung = round(lung_share * counts[0])
        organs = {"small": list(rng.permutation(["lung"] * n_lung + ["liver"] * (counts[0] - n_lung))),
                  "medium": ["liver"] * counts[1], "large": ["liver"] * counts[2]}
        for stratum, count in zip(reversed(STRATA), reversed(counts), strict=True):
            a_lo, a_hi, log_uniform = ranges[stratum]
            for _ in range(count):
                slab = slabs.pop() if stratum != "small" else None
                organ = organs[stratum].pop()
                for attempt in range(max_attempts):
                    if attempt % _CENTRES_PER_SHAPE == 0:
                        host = organ if organ == "liver" else ("lung_left", "lung_right")[int(rng.integers(2))]
                        area = float(np.exp(rng.uniform(np.log(a_lo), np.log(a_hi))) if log_uniform
                                     else rng.uniform(a_lo, a_hi))
                        shape = _draw_tumour_shape(rng, area, bool(rng.uniform() < lobulated_share),
                                                   flat=stratum != "small")
                        room, g = rooms[host], rooms[host].host
                        # Centres are drawn where the tumour can fit: whole in a lung; in the liver,
                        # which it may bulge out of, far enough from the surface for most of it.
                        reach = _reach(shape, g.rotations[0])
                        spread = (np.maximum(g.semi_axes[0] - 0.7 * reach, 0.25 * g.semi_axes[0]) if host == "liver"
                                  else np.maximum(g.semi_axes[0] - reach, 0.0))
                    cand = Ellipsoids(_centre(rng, g, spread, slab) + shape[0], shape[1], shape[2], label=0)
                    if room.fits(cand):
                        break
                else:
                    break
                for r in rooms.values():
                    r.obstacles.append(cand)
                placed.append({"host": host, "shape": cand, "area_mm2": area, "stratum": stratum})
            else:
                continue
            break
        else:
            return placed
    raise InputError("tumour_counts", f"are {tuple(counts)}: a {stratum} tumour found no room in "
                     f"{_RESTARTS + 1} tries of {max_attempts} attempts",
                     "expected fewer or smaller tumours, or more max_attempts")


# --- Building --------------------------------------------------------------------------------------


def _check_options(size, voxel_size_um, counts, strata_mm2, small_area_mm2, large_area_mm2, shares, contrasts,
                   airway_generations, max_attempts) -> tuple[int, tuple[int, int, int], tuple[float, float]]:
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 16:
        raise InputError("size", f"is {size!r}", "expected an integer of at least 16 voxels")
    check_positive("voxel_size_um", voxel_size_um, "µm")
    try:
        counts = tuple(int(c) for c in counts)
    except (TypeError, ValueError):
        raise InputError("tumour_counts", f"is {counts!r}", "expected (small, medium, large) counts") from None
    if len(counts) != 3 or min(counts) < 0:
        raise InputError("tumour_counts", f"is {counts}", "expected three non-negative counts (small, medium, large)")
    try:
        lo, hi = (float(v) for v in strata_mm2)
    except (TypeError, ValueError):
        raise InputError("strata_mm2", f"is {strata_mm2!r}",
                         "expected a (small/medium, medium/large) pair of mm²") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
        raise InputError("strata_mm2", f"is ({lo}, {hi})", "expected 0 < small/medium bound < medium/large bound")
    if not 0 < check_positive("small_area_mm2", small_area_mm2, "mm²") < (1 - _STRATUM_MARGIN) * lo:
        raise InputError("small_area_mm2", f"is {small_area_mm2}", f"expected below {(1 - _STRATUM_MARGIN) * lo} mm²")
    if check_positive("large_area_mm2", large_area_mm2, "mm²") <= (1 + _STRATUM_MARGIN) * hi:
        raise InputError("large_area_mm2", f"is {large_area_mm2}", f"expected above {(1 + _STRATUM_MARGIN) * hi} mm²")
    for name, value in shares.items():
        if not (np.isfinite(value) and 0 <= value <= 1):
            raise InputError(name, f"is {value}", "expected a fraction in [0, 1]")
    for name, value in contrasts.items():
        if not (np.isfinite(value) and -0.5 < value < 0.5):
            raise InputError(name, f"is {value}", "expected a relative contrast in (-0.5, 0.5)")
    if isinstance(airway_generations, bool) or airway_generations not in range(8):
        raise InputError("airway_generations", f"is {airway_generations!r}", "expected an integer in [0, 7]")
    check_positive_int("max_attempts", max_attempts, "placement attempts per tumour")
    return int(size), counts, (lo, hi)


def _to_voxels(group, c0: float, vmm: float):
    """A group in mm about the volume centre, in voxel coordinates."""
    centres = c0 + np.asarray(group.centres) / vmm
    if isinstance(group, Cylinders):
        return Cylinders(centres, group.directions, group.half_lengths / vmm, group.radii / vmm, group.label)
    if isinstance(group, Spheres):
        return Spheres(centres, group.radii / vmm, group.label)
    return Ellipsoids(centres, group.rotations, group.semi_axes / vmm, group.label)


def _tubes(an: _Anatomy, n: int, vmm: float) -> tuple[EllipticTube, ...]:
    """Soft-tissue core, fat and skin as nested tubes, each painted where the previous one left room."""
    c0 = (n - 1) / 2
    # Knots at a fixed spacing in mm keep the outline the same at every voxel size.
    z_mm = np.arange(-(n / 2 + 3) * vmm, (n / 2 + 3) * vmm, 0.25)
    knots = c0 + z_mm / vmm
    a, b = an.body.semi(z_mm)
    centre = (c0 + an.body.centre_y / vmm, c0)
    out = []
    for name, inset in (("soft_tissue", an.skin + an.fat), ("fat", an.skin), ("skin", 0.0)):
        out.append(EllipticTube(knots, np.stack([a - inset, b - inset], axis=1) / vmm, centre, _LABEL[name]))
    return tuple(out)


def mouse_layout(
    *,
    size: int,
    seed: int,
    voxel_size_um: float = 85.0,
    energy_kev: float = 42.0,
    body_width_mm: float = 26.0,
    body_height_mm: float = 20.0,
    skin_thickness_um: float = 300.0,
    fat_thickness_um: float = 600.0,
    airway_generations: int = 4,
    tumour_counts: tuple[int, int, int] = (4, 1, 1),
    strata_mm2: tuple[float, float] = (50.0, 100.0),
    small_area_mm2: float = 3.0,
    large_area_mm2: float = 130.0,
    lung_tumour_share: float = 0.5,
    lobulated_share: float = 0.5,
    liver_tumour_contrast: float = -0.05,
    lung_tumour_contrast: float = 0.0,
    tumour_gap_um: float = 300.0,
    max_attempts: int = 2000,
) -> MouseLayout:
    """The continuous description of a mouse, without rendering it (see :func:`mouse_phantom`).

    Parameters
    ----------
    size : int
        Edge of the cubic volume (voxels); the field of view is ``size × voxel_size_um``
        across and long, and must hold the body's width.
    seed : int
        Seed of every random draw (``numpy.random.default_rng``).
    voxel_size_um : float
        Voxel edge (µm).
    energy_kev : float
        Effective photon energy (keV) of the attenuation (see the module docstring).
    body_width_mm, body_height_mm : float
        Width (left-right) and height (back-belly) of the abdomen (mm); the
        thorax is 0.88 and 0.92 of them, the neck 0.55 and 0.65. Each seed scales
        the whole animal by 0.95-1.05.
    skin_thickness_um, fat_thickness_um : float
        Skin and subcutaneous fat thickness (µm); the fat varies by ±30% between seeds.
    airway_generations : int
        Bifurcations below the main bronchi (0-7); radii shrink by 0.79 per
        generation (Murray's law for equal daughters), lengths by about 0.8.
        Branches leaving the lung or meeting the heart or liver are cut.
    tumour_counts : tuple of int
        Tumours per stratum (small, medium, large). The default fills every
        stratum; a second medium or large tumour often finds no room (see the
        module docstring), and the generator then raises.
    strata_mm2 : tuple of float
        Bounds between the strata (mm² of largest axial cross-section): small
        below the first, large above the second.
    small_area_mm2, large_area_mm2 : float
        Smallest area of a small tumour and largest of a large one (mm²). Areas
        are drawn log-uniformly in the small stratum, uniformly in the others,
        5% inside the bounds.
    lung_tumour_share : float
        Share of the small tumours that grow in a lung (rounded to a count;
        each picks a lung at random), the others in the liver.
    lobulated_share : float
        Chance that a tumour carries one or two lobes (smaller ellipsoids
        straddling its surface); the others are single ellipsoids. Axis ratios
        are random; small tumours have a uniformly random orientation, medium
        and large ones lie flattened along ``z`` (module docstring).
    liver_tumour_contrast : float
        Attenuation of liver tumours relative to the liver (``-0.05``: 5%
        lower, a hypo-attenuating lesion; untreated livers in native scans are
        closer to 0, contrast-enhanced ones further from it).
    lung_tumour_contrast : float
        Attenuation of lung tumours relative to soft tissue: a solid nodule is
        soft tissue in aerated lung, about 3.5 times the lung's attenuation.
    tumour_gap_um : float
        Least distance between a tumour and its host's surface, another
        tumour, bone, the heart, a large airway or (lung tumours) the liver (µm).
    max_attempts : int
        Candidate positions per tumour before the placement restarts (a new shape every 100).

    Returns
    -------
    MouseLayout
        Shapes in voxels, the phases and their attenuation, and ``params``:
        the arguments, ``generator`` ``"mouse"``, ``cylinder_radius`` (0.5, the
        field-of-view cylinder), ``attenuation_per_cm`` by phase, drawn figures
        (``scale``, ``z_diaphragm_mm``, ``rib_pairs``, ...) and ``n_airway_segments``.
    """
    n, counts, strata = _check_options(
        size, voxel_size_um, tumour_counts, strata_mm2, small_area_mm2, large_area_mm2,
        {"lung_tumour_share": lung_tumour_share, "lobulated_share": lobulated_share},
        {"liver_tumour_contrast": liver_tumour_contrast, "lung_tumour_contrast": lung_tumour_contrast},
        airway_generations, max_attempts)
    for name, value in (("body_width_mm", body_width_mm), ("body_height_mm", body_height_mm),
                        ("skin_thickness_um", skin_thickness_um), ("fat_thickness_um", fat_thickness_um),
                        ("tumour_gap_um", tumour_gap_um)):
        check_positive(name, value, name.rsplit("_", 1)[1].replace("um", "µm"))
    layers_mm = (skin_thickness_um + 1.3 * fat_thickness_um) / 1000
    if layers_mm + 1.0 >= 0.55 * _SCALE_RANGE[0] * min(body_width_mm, body_height_mm) / 2:
        raise InputError("skin_thickness_um/fat_thickness_um", f"are {skin_thickness_um}/{fat_thickness_um}",
                         "expected layers thin enough to leave a body inside the neck")
    mu = {phase: tissue_attenuation(tissue, energy_kev) for phase, tissue in _TISSUE_OF.items()}
    mu["liver_tumour"] = mu["liver"] * (1 + liver_tumour_contrast)
    mu["lung_tumour"] = mu["soft_tissue"] * (1 + lung_tumour_contrast)
    attenuation = tuple(float(mu.get(p, 0.0)) for p in PHASES)

    vmm = voxel_size_um / 1000.0
    fov_mm = n * vmm
    widest = (max(body_width_mm, body_height_mm) / 2 * _SCALE_RANGE[1] * (1 + _WOBBLE_MAX) + 0.3) / vmm + 1.0
    if widest >= n / 2:
        need = int(np.floor(2 * widest)) + 1
        raise InputError("size", f"is {n}, a field of view {fov_mm:.1f} mm across at {voxel_size_um} µm",
                         f"expected at least {need} voxels to hold a body up to {body_width_mm} mm wide")

    rng = np.random.default_rng(seed)
    an = _draw_body(rng, body_width_mm, body_height_mm, skin_thickness_um / 1000, fat_thickness_um / 1000)
    vertebrae = _add_spine(rng, an, fov_mm / 2)
    _add_ribs(an, vertebrae)
    _add_organs(rng, an)
    _add_airways(rng, an, fov_mm / 2, int(airway_generations))
    placed = _place_tumours(rng, an, counts=counts, strata_mm2=strata, small_area_mm2=float(small_area_mm2),
                            large_area_mm2=float(large_area_mm2), lung_share=float(lung_tumour_share),
                            lobulated_share=float(lobulated_share), gap_mm=tumour_gap_um / 1000,
                            z_limit=fov_mm / 2, half_length_mm=fov_mm / 2, max_attempts=int(max_attempts))

    c0 = (n - 1) / 2
    tumours = tuple(
        Tumour(phase="liver_tumour" if t["host"] == "liver" else "lung_tumour", host=t["host"],
               centres=c0 + t["shape"].centres / vmm, rotations=t["shape"].rotations,
               semi_axes=t["shape"].semi_axes / vmm, area_mm2=t["area_mm2"], stratum=_stratum(t["area_mm2"], strata))
        for t in placed)
    mm_groups = (Cylinders(*an.air_cyl, label=_LABEL["airway"]), Spheres(*an.air_joints, label=_LABEL["airway"]),
                 Cylinders(*an.bone_cyl, label=_LABEL["bone"]), Spheres(*an.bone_joints, label=_LABEL["bone"]),
                 *(_organ(an, name) for name in ("heart", "liver", "lung_left", "lung_right")))
    anatomy = (*(_to_voxels(g, c0, vmm) for g in mm_groups), *_tubes(an, n, vmm))
    params = {
        "generator": "mouse", "size": n, "seed": seed, "voxel_size_um": float(voxel_size_um),
        "energy_kev": float(energy_kev), "body_width_mm": body_width_mm, "body_height_mm": body_height_mm,
        "skin_thickness_um": skin_thickness_um, "fat_thickness_um": fat_thickness_um,
        "airway_generations": int(airway_generations), "tumour_counts": list(counts), "strata_mm2": list(strata),
        "small_area_mm2": small_area_mm2, "large_area_mm2": large_area_mm2,
        "lung_tumour_share": lung_tumour_share, "lobulated_share": lobulated_share,
        "liver_tumour_contrast": liver_tumour_contrast, "lung_tumour_contrast": lung_tumour_contrast,
        "tumour_gap_um": tumour_gap_um, "cylinder_radius": 0.5,
        "attenuation_per_cm": dict(zip(PHASES, attenuation, strict=True)),
        **{k: float(v) if isinstance(v, float | np.floating) else v for k, v in an.figures.items()},
        "n_airway_segments": len(an.air_cyl[0]),
    }
    return MouseLayout(size=n, voxel_size_um=float(voxel_size_um), phases=PHASES, attenuation=attenuation,
                       anatomy=anatomy, tumours=tumours, params=params)


def _render_layout(layout: MouseLayout, supersample: int, tumours: tuple[Tumour, ...] | None = None) -> Phantom:
    check_positive_int("supersample", supersample, "sub-voxel samples per axis")
    tumours = layout.tumours if tumours is None else tumours
    n, phases = layout.size, layout.phases
    groups = layout.groups(tumours)
    fractions = np.empty((len(phases), n, n, n), dtype=np.float32)
    # Slabs bound the renderer's temporary point grids (the body tubes span whole slices);
    # every voxel is computed alone, so the slab size changes no bit.
    step = max(1, (1 << 21) // (n * n))
    for z0 in range(0, n, step):
        z1 = min(n, z0 + step)
        fractions[:, z0:z1] = _render(n, 0.5 * n, groups, len(phases), supersample=int(supersample), rows=(z0, z1))
    labels = np.argmax(fractions, axis=0).astype(np.uint8)
    body = 1.0 - fractions[0] - fractions[1]
    params = dict(layout.params)
    volume = float(body.sum())
    for k, name in enumerate(phases[2:], start=2):
        params[f"{name}_fraction"] = float(fractions[k].sum() / volume)
    params["tumours"] = _tumour_records(tumours)
    return Phantom(labels=labels, fractions=fractions, phases=phases, attenuation=layout.attenuation,
                   voxel_size_um=layout.voxel_size_um, mask=body >= 0.5, params=params, inclusions=groups)


def _tumour_records(tumours: tuple[Tumour, ...]) -> list[dict]:
    """Per tumour: instance id, phase, host, stratum, area and the rows of its phase's ellipsoid group."""
    rows = {"liver_tumour": 0, "lung_tumour": 0}
    out = []
    for k, t in enumerate(tumours, start=1):
        first = rows[t.phase]
        rows[t.phase] += len(t.semi_axes)
        out.append({"id": k, "phase": t.phase, "host": t.host, "stratum": t.stratum, "area_mm2": float(t.area_mm2),
                    "equivalent_diameter_mm": float(2 * np.sqrt(t.area_mm2 / np.pi)), "lobes": len(t.semi_axes),
                    "rows": [first, first + len(t.semi_axes)], "centre_voxels": [float(v) for v in t.centres[0]]})
    return out


def mouse_phantom(*, size: int, seed: int, voxel_size_um: float = 85.0, supersample: int = 2, **options) -> Phantom:
    """A mouse torso for in-vivo micro-CT, with liver and lung tumours (see the module docstring).

    Parameters
    ----------
    size : int
        Edge of the cubic volume (voxels); ``size × voxel_size_um`` must hold the
        body (at least 337 voxels of 85 µm with the default body).
    seed : int
        Seed of every random draw: the same seed gives the same bytes.
    voxel_size_um : float
        Voxel edge (µm); 85 µm is a usual in-vivo mouse protocol.
    supersample : int
        Sub-samples per voxel edge for the partial-volume fractions.
    **options
        Keywords of :func:`mouse_layout` (energy, body size, tumours, ...).

    Returns
    -------
    Phantom
        Phases :data:`PHASES` with their attenuation at ``energy_kev``;
        ``mask`` is the body (skin and everything inside it). ``inclusions``
        holds the shapes (tumours first) inside the field-of-view cylinder of
        radius ``size / 2``, so projections are rendered from them
        (:func:`aiax_bench.sim.project.project_phantom`). ``params`` holds
        those of :func:`mouse_layout`, each phase's share of the body volume
        (``<phase>_fraction``) and ``tumours``: one record per tumour (``id``,
        ``phase``, ``host``, ``stratum``, ``area_mm2``, ``equivalent_diameter_mm``,
        ``lobes``, ``rows`` of its phase's ellipsoid group, ``centre_voxels``).
        The tumour instance map is :func:`tumour_instances`.

    Notes
    -----
    The fractions take ``4 × 12 × size³`` bytes (6 GiB at 512³).
    """
    return _render_layout(mouse_layout(size=size, seed=seed, voxel_size_um=voxel_size_um, **options), supersample)


def growth_series(*, size: int, seed: int, weeks: int = 4, growth_per_week: float = 1.26,
                  voxel_size_um: float = 85.0, supersample: int = 2, **options) -> list[Phantom]:
    """The same mouse scanned at weekly intervals while its tumours grow.

    The last scan is :func:`mouse_phantom` with the same arguments; each earlier
    week's tumours are the next week's shrunk about their centres by
    ``growth_per_week`` (a linear factor: 1.26 doubles the volume weekly), so a
    tumour moves down the strata as the series goes back. The rest of the
    animal is unchanged. A shrunk tumour lies within its full-size self (a
    lobulated one to within micrometres), so it stays in its host and clear
    of everything else; the rim of liver around it shrinks with it.

    Parameters
    ----------
    size, seed, voxel_size_um, supersample, **options
        As in :func:`mouse_phantom`.
    weeks : int
        Number of scans, one a week.
    growth_per_week : float
        Linear growth factor of every tumour per week (at least 1).

    Returns
    -------
    list of Phantom
        One phantom per week, the earliest first; ``params["week"]`` is its index
        and ``params["tumour_scale"]`` its tumours' linear scale relative to the last week.
    """
    weeks = check_positive_int("weeks", weeks, "weekly scans")
    if not (np.isfinite(growth_per_week) and growth_per_week >= 1):
        raise InputError("growth_per_week", f"is {growth_per_week}", "expected a linear growth factor of at least 1")
    layout = mouse_layout(size=size, seed=seed, voxel_size_um=voxel_size_um, **options)
    strata = tuple(layout.params["strata_mm2"])
    out = []
    for week in range(weeks):
        factor = float(growth_per_week) ** (week - (weeks - 1))
        ph = _render_layout(layout, supersample, tuple(t.scaled(factor, strata) for t in layout.tumours))
        ph.params.update(week=week, tumour_scale=factor, growth_per_week=float(growth_per_week))
        out.append(ph)
    return out


# --- Tumour instances ------------------------------------------------------------------------------


class TumourInstances(NamedTuple):
    """Per-tumour truth for instance-wise scores (e.g. Dice by tumour size).

    Attributes
    ----------
    labels : numpy.ndarray
        ``int32`` instance id per voxel ``(Z, Y, X)``: 0 where the phantom's
        label is not a tumour, else the id (``k + 1`` for tumour ``k``) of the
        tumour nearest the voxel centre.
    area_mm2 : numpy.ndarray
        ``(K,)`` largest axial cross-section of each tumour's continuous shape (mm²).
    voxel_area_mm2 : numpy.ndarray
        ``(K,)`` the same measured on ``labels``: the largest slice's voxel count times the voxel area.
    strata : tuple of str
        Stratum of each tumour (from ``area_mm2``), one of :data:`STRATA`.
    hosts : tuple of str
        ``"liver"``, ``"lung_left"`` or ``"lung_right"`` per tumour.
    """

    labels: np.ndarray
    area_mm2: np.ndarray
    voxel_area_mm2: np.ndarray
    strata: tuple[str, ...]
    hosts: tuple[str, ...]


def tumour_instances(phantom: Phantom) -> TumourInstances:
    """Tumour instance labels and size strata of a mouse phantom.

    Parameters
    ----------
    phantom : Phantom
        Made by :func:`mouse_phantom` or :func:`growth_series`.

    Returns
    -------
    TumourInstances
        The instance map and each tumour's area, stratum and host.
    """
    records = phantom.params.get("tumours") if phantom.params.get("generator") == "mouse" else None
    if records is None:
        raise InputError("phantom", f"was made by {phantom.params.get('generator')!r}",
                         "expected a mouse phantom (mouse_phantom or growth_series)")
    groups = {g.label: g for g in phantom.inclusions if isinstance(g, Ellipsoids)}
    shape = phantom.shape
    instances = np.zeros(shape, dtype=np.int32)
    nearest = np.full(shape, np.inf)
    for rec in records:
        label = phantom.phases.index(rec["phase"])
        group = groups[label]
        rows = range(*rec["rows"])
        lo, hi = _ellipsoid_bounds(group.centres[rows.start:rows.stop], group.rotations[rows.start:rows.stop],
                                   group.semi_axes[rows.start:rows.stop])
        i_lo = np.maximum(np.floor(lo.min(axis=0)).astype(int) - 1, 0)
        i_hi = np.minimum(np.ceil(hi.max(axis=0)).astype(int) + 2, shape)
        if np.any(i_hi <= i_lo):
            continue
        box = tuple(slice(a, b) for a, b in zip(i_lo, i_hi, strict=True))
        pts = np.stack(np.meshgrid(*(np.arange(a, b, dtype=np.float64) for a, b in zip(i_lo, i_hi, strict=True)),
                                   indexing="ij"), axis=-1)
        level = np.min([group.level(i, pts) for i in rows], axis=0)
        take = (phantom.labels[box] == label) & (level < nearest[box])
        instances[box][take] = rec["id"]
        nearest[box][take] = level[take]
    voxel_mm2 = (phantom.voxel_size_um / 1000.0) ** 2
    k = len(records)
    per_slice = np.zeros((k + 1, shape[0]))
    for z in range(shape[0]):
        per_slice[:, z] = np.bincount(instances[z].ravel(), minlength=k + 1)[: k + 1]
    return TumourInstances(
        labels=instances,
        area_mm2=np.array([r["area_mm2"] for r in records], dtype=np.float64),
        voxel_area_mm2=per_slice[1:].max(axis=1, initial=0.0) * voxel_mm2,
        strata=tuple(r["stratum"] for r in records),
        hosts=tuple(r["host"] for r in records))
