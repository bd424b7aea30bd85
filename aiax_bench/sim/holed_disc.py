"""Discs with holes, projected analytically in any divergent or parallel 2D geometry.

A synthetic counterpart of the HTC2022 phantoms (acrylic discs with laser-cut
holes, :mod:`aiax_bench.data.htc2022`): a uniform disc whose holes are unions
of at most two convex pieces (half-planes, optionally within an ellipse):
ellipses and circles, convex polygons, cells of a Voronoi partition with walls
between them, and crosses of two bars. Every ray's path through the material
is computed exactly as the disc's chord minus the holes' chords, so the
projections carry no discretisation of their own (no inverse crime with the
reconstruction grid); each detector pixel averages the transmitted intensity
of several sub-rays across it, then counting noise is added.

Coordinates are those of the projectors (:mod:`aiax_bench.recon`): ``x`` along
the image columns and ``y`` along its rows, in voxels from the slice centre.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from aiax_bench.errors import InputError, UnknownNameError
from aiax_bench.validation import check_positive, check_positive_int

__all__ = ["STYLES", "ConvexPiece", "Hole", "HoledDisc", "holed_discs", "project_holed_disc", "random_holed_disc",
           "rasterize_holed_disc"]


@dataclasses.dataclass(frozen=True)
class ConvexPiece:
    """The points ``p`` with ``p · normal_k <= offset_k`` for every half-plane, inside the ellipse if one is given.

    Attributes
    ----------
    normals : numpy.ndarray
        ``(K, 2)`` outward unit normals ``(x, y)`` of the half-planes (``K`` may be 0).
    offsets : numpy.ndarray
        ``(K,)`` their distances from the slice centre along the normals (voxels).
    ellipse : tuple of float, optional
        ``(x, y, semi-axis along the rotated x, semi-axis along the rotated y, rotation in radians)``.
    """

    normals: np.ndarray
    offsets: np.ndarray
    ellipse: tuple[float, float, float, float, float] | None = None

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether each point ``(x, y)`` lies in the piece (boolean, the points' shape)."""
        inside = np.ones(np.broadcast_shapes(x.shape, y.shape), dtype=bool)
        for (mx, my), h in zip(self.normals, self.offsets, strict=True):
            inside &= x * mx + y * my <= h
        if self.ellipse is not None:
            qx, qy = _ellipse_frame(self.ellipse, x, y)
            inside &= qx * qx + qy * qy <= 1.0
        return inside

    def interval(self, p0: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each line ``p0 + s direction`` (``(R, 2)`` each, unit directions) enters and leaves the piece.

        Returns ``(s_in, s_out)``; the line misses the piece where ``s_out <= s_in``.
        """
        s_in = np.full(p0.shape[0], -np.inf)
        s_out = np.full(p0.shape[0], np.inf)
        for m, h in zip(self.normals, self.offsets, strict=True):
            along = direction @ m
            room = h - p0 @ m
            with np.errstate(divide="ignore", invalid="ignore"):
                bound = room / along
            s_out = np.where(along > 0, np.minimum(s_out, bound), s_out)
            s_in = np.where(along < 0, np.maximum(s_in, bound), s_in)
            s_out = np.where((along == 0) & (room < 0), -np.inf, s_out)
        if self.ellipse is not None:
            qx, qy = _ellipse_frame(self.ellipse, p0[:, 0], p0[:, 1])
            vx, vy = _ellipse_frame(self.ellipse, direction[:, 0], direction[:, 1], translate=False)
            a = vx * vx + vy * vy
            b = qx * vx + qy * vy
            disc = b * b - a * (qx * qx + qy * qy - 1.0)
            root = np.sqrt(np.maximum(disc, 0.0))
            s_in = np.maximum(s_in, np.where(disc > 0, (-b - root) / a, np.inf))
            s_out = np.minimum(s_out, np.where(disc > 0, (-b + root) / a, -np.inf))
        return s_in, s_out


def _ellipse_frame(ellipse, x, y, *, translate: bool = True):
    cx, cy, ax, ay, rotation = ellipse
    if translate:
        x, y = x - cx, y - cy
    c, s = math.cos(rotation), math.sin(rotation)
    return (x * c + y * s) / ax, (-x * s + y * c) / ay


@dataclasses.dataclass(frozen=True)
class Hole:
    """A hole: the union of one or two convex pieces (a cross is two bars)."""

    pieces: tuple[ConvexPiece, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.pieces) <= 2:
            raise InputError("pieces", f"are {len(self.pieces)}", "a hole is the union of one or two convex pieces")

    def chord(self, p0: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """Length of each line inside the hole (voxels)."""
        intervals = [piece.interval(p0, direction) for piece in self.pieces]
        length = sum(np.maximum(s_out - s_in, 0.0) for s_in, s_out in intervals)
        if len(intervals) == 2:  # inclusion-exclusion: the overlap of two convex pieces is one interval
            (a_in, a_out), (b_in, b_out) = intervals
            length = length - np.maximum(np.minimum(a_out, b_out) - np.maximum(a_in, b_in), 0.0)
        return length

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        inside = self.pieces[0].contains(x, y)
        for piece in self.pieces[1:]:
            inside |= piece.contains(x, y)
        return inside


@dataclasses.dataclass(frozen=True)
class HoledDisc:
    """A uniform disc of attenuation ``mu`` (1/voxel) with disjoint holes.

    Attributes
    ----------
    centre : tuple of float
        ``(x, y)`` of the disc's centre (voxels from the slice centre).
    radius : float
        Disc radius (voxels).
    mu : float
        Attenuation of the material (1/voxel).
    holes : tuple of Hole
        Disjoint holes inside the disc.
    style : str
        How the holes were drawn (for the record).
    """

    centre: tuple[float, float]
    radius: float
    mu: float
    holes: tuple[Hole, ...]
    style: str = ""

    def path_length(self, p0: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """Length of each line through the material (voxels): the disc's chord minus the holes'."""
        disc = ConvexPiece(np.zeros((0, 2)), np.zeros(0), (*self.centre, self.radius, self.radius, 0.0))
        s_in, s_out = disc.interval(p0, direction)
        length = np.maximum(s_out - s_in, 0.0)
        for hole in self.holes:
            length -= hole.chord(p0, direction)
        return np.maximum(length, 0.0)

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether each point lies in the material."""
        cx, cy = self.centre
        inside = (x - cx) ** 2 + (y - cy) ** 2 <= self.radius**2
        for hole in self.holes:
            inside &= ~hole.contains(x, y)
        return inside


def project_holed_disc(disc: HoledDisc, projector, *, subrays: int = 4, photons: float | None = None,
                       offset: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Line integrals ``-log(I / I0)`` of ``disc`` in the geometry of ``projector``, ``(A, D)`` float32.

    Parameters
    ----------
    disc : HoledDisc
        The phantom.
    projector : SparseProjector
        Any projector of :mod:`aiax_bench.recon` (parallel or fan beam); only its rays are used.
    subrays : int
        Sub-rays across each detector pixel whose transmitted intensities are averaged.
    photons : float, optional
        Incident photons per detector pixel (Poisson noise); noise-free without.
    offset : float
        Constant added to every line integral (a flat field that does not quite match the scan's).
    rng : numpy.random.Generator, optional
        Source of the noise (required with ``photons``).
    """
    subrays = check_positive_int("subrays", subrays)
    fine = dataclasses.replace(projector, n_detector=projector.n_detector * subrays,
                               det_spacing=projector.det_spacing / subrays, lazy=True)
    cos, sin, u = np.broadcast_arrays(*fine._rays(np.asarray(projector.angles, dtype=np.float64)))
    normal = np.stack([cos.ravel(), sin.ravel()], axis=1)
    p0 = normal * u.ravel()[:, None]
    direction = np.stack([-normal[:, 1], normal[:, 0]], axis=1)
    line = disc.mu * disc.path_length(p0, direction).reshape(cos.shape)
    intensity = np.exp(-line).reshape(cos.shape[0], projector.n_detector, subrays).mean(axis=2)
    if photons is not None:
        check_positive("photons", photons, "photons per detector pixel")
        if rng is None:
            raise InputError("rng", "is None with photons given", "a numpy.random.Generator for the noise")
        intensity = np.maximum(rng.poisson(photons * intensity), 1) / photons
    return (-np.log(intensity) + offset).astype(np.float32)


def rasterize_holed_disc(disc: HoledDisc, n_pixels: int, *, supersample: int = 4) -> np.ndarray:
    """The material's area fraction in each pixel of an ``n × n`` slice, float32 in [0, 1]."""
    n_pixels, supersample = check_positive_int("n_pixels", n_pixels), check_positive_int("supersample", supersample)
    sub = (np.arange(n_pixels * supersample) + 0.5) / supersample - 0.5 - (n_pixels - 1) / 2
    inside = disc.contains(sub[None, :], sub[:, None])
    return inside.reshape(n_pixels, supersample, n_pixels, supersample).mean(axis=(1, 3)).astype(np.float32)


# -- random phantoms like the HTC2022 ones -------------------------------------------------------------------------

STYLES = ("ellipses", "polygons", "cells", "crosses")


def _rotation(angle: float) -> np.ndarray:
    return np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


def _polygon_piece(vertices: np.ndarray) -> ConvexPiece:
    """The convex polygon of ``vertices`` (counter-clockwise in x, y)."""
    edges = np.roll(vertices, -1, axis=0) - vertices
    normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return ConvexPiece(normals, np.einsum("ij,ij->i", normals, vertices))


def _bar(centre: np.ndarray, length: float, width: float, angle: float) -> ConvexPiece:
    corners = np.array([[-length, -width], [length, -width], [length, width], [-length, width]]) / 2
    return _polygon_piece(corners @ _rotation(angle).T + centre)


def _placed_holes(rng: np.random.Generator, make, count: int, *, room: float, radius_range: tuple[float, float],
                  wall: float) -> list[Hole]:
    """Up to ``count`` holes from ``make(centre, radius)``, bounding circles ``wall`` apart, inside ``room``."""
    placed: list[tuple[np.ndarray, float]] = []
    holes = []
    for _ in range(count * 50):
        if len(holes) == count:
            break
        radius = rng.uniform(*radius_range)
        distance = (room - radius) * math.sqrt(rng.random())
        angle = rng.uniform(0, 2 * math.pi)
        centre = distance * np.array([math.cos(angle), math.sin(angle)])
        if all(np.linalg.norm(centre - c) > r + radius + wall for c, r in placed):
            placed.append((centre, radius))
            holes.append(make(centre, radius))
    return holes


def _voronoi_cells(rng: np.random.Generator, count: int, *, room: float, wall: float) -> list[Hole]:
    """Cells of a Voronoi partition of ``room``'s disc, each shrunk by half a wall, inside a circle of ``room``."""
    seeds = []
    while len(seeds) < count:
        point = rng.uniform(-room, room, size=2)
        if np.linalg.norm(point) < 0.85 * room and all(np.linalg.norm(point - s) > 0.6 * room / math.sqrt(count)
                                                       for s in seeds):
            seeds.append(point)
    seeds = np.array(seeds)
    holes = []
    for i, seed in enumerate(seeds):
        others = np.delete(seeds, i, axis=0)
        normals = others - seed
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        offsets = np.einsum("ij,ij->i", normals, (others + seed) / 2) - wall / 2
        holes.append(Hole((ConvexPiece(normals, offsets, (0.0, 0.0, room, room, 0.0)),)))
    return holes


def random_holed_disc(rng: np.random.Generator, *, style: str | None = None, radius: float = 235.0,
                      centre_jitter: float = 6.0, mu: float = 0.005, wall: float | None = None) -> HoledDisc:
    """A random disc with holes of one style (drawn when not given), sized like the HTC2022 phantoms.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random choice.
    style : {'ellipses', 'polygons', 'cells', 'crosses'}, optional
        Ellipses and circles; convex polygons of 3 to 6 sides; Voronoi cells with walls; crosses of two bars.
    radius : float
        Disc radius (voxels); the holes' sizes scale with it (the defaults are the HTC2022 discs' on
        their 512² grid).
    centre_jitter : float
        Largest offset of the disc's centre from the slice centre (voxels).
    mu : float
        Material attenuation (1/voxel).
    wall : float, optional
        Least material between two holes, and between a hole and the disc's edge (voxels; default
        ``radius / 23.5``, 10 voxels on the HTC2022 grid).
    """
    style = style or STYLES[int(rng.integers(len(STYLES)))]
    check_positive("radius", radius, "voxels")
    unit = radius / 235.0  # hole sizes below are those of the HTC2022 discs, in their voxels
    wall = 10.0 * unit if wall is None else check_positive("wall", wall, "voxels")
    room = radius - 2 * wall
    if style == "ellipses":
        def make(centre, r):
            aspect = rng.uniform(0.45, 1.0)
            return Hole((ConvexPiece(np.zeros((0, 2)), np.zeros(0),
                                     (centre[0], centre[1], r, r * aspect, rng.uniform(0, math.pi))),))
        holes = _placed_holes(rng, make, int(rng.integers(3, 13)), room=room, radius_range=(12 * unit, 50 * unit),
                              wall=wall)
    elif style == "polygons":
        def make(centre, r):
            # Regular polygons, jittered and stretched: triangles to hexagons, parallelogram-like quads.
            sides = int(rng.integers(3, 7))
            step = 2 * math.pi / sides
            angles = np.arange(sides) * step + rng.uniform(-0.2, 0.2, sides) * step
            outline = np.stack([np.cos(angles), np.sin(angles)], axis=1) * [1.0, rng.uniform(0.4, 1.0)]
            return Hole((_polygon_piece(centre + r * outline @ _rotation(rng.uniform(0, math.pi)).T),))
        holes = _placed_holes(rng, make, int(rng.integers(4, 14)), room=room, radius_range=(18 * unit, 55 * unit),
                              wall=wall)
    elif style == "crosses":
        def make(centre, r):
            width, angle = rng.uniform(0.2, 0.4) * r, rng.uniform(0, math.pi)
            return Hole((_bar(centre, 2 * r, width, angle),
                         _bar(centre + rng.uniform(-0.3, 0.3, 2) * r, 2 * r * rng.uniform(0.6, 1.0), width,
                              angle + rng.uniform(math.pi / 4, 3 * math.pi / 4))))
        holes = _placed_holes(rng, make, int(rng.integers(5, 15)), room=room, radius_range=(28 * unit, 55 * unit),
                              wall=wall)
    elif style == "cells":
        holes = _voronoi_cells(rng, int(rng.integers(8, 17)), room=room, wall=wall)
    else:
        raise UnknownNameError("hole style", style, list(STYLES), "pick one of the listed styles")
    offset = rng.uniform(-centre_jitter, centre_jitter, size=2)
    holes = [_shifted(hole, offset) for hole in holes]
    return HoledDisc(centre=(float(offset[0]), float(offset[1])), radius=float(radius), mu=float(mu),
                     holes=tuple(holes), style=style)


def _shifted(hole: Hole, shift: np.ndarray) -> Hole:
    pieces = []
    for piece in hole.pieces:
        ellipse = piece.ellipse
        if ellipse is not None:
            ellipse = (ellipse[0] + float(shift[0]), ellipse[1] + float(shift[1]), *ellipse[2:])
        pieces.append(ConvexPiece(piece.normals, piece.offsets + piece.normals @ shift, ellipse))
    return Hole(tuple(pieces))


def holed_discs(seed: int, count: int, **options) -> Sequence[HoledDisc]:
    """``count`` random discs from one seed, the styles taken in turn."""
    rng = np.random.default_rng(seed)
    return [random_holed_disc(rng, style=STYLES[i % len(STYLES)], **options) for i in range(count)]
