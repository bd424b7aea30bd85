"""Packing of non-overlapping voids of a size distribution, in physical units, at a target volume fraction."""

from __future__ import annotations

from itertools import chain

import numpy as np
from scipy.spatial import cKDTree

#: Relative width of the radius band placed per round by :func:`_pack_voids_pelt`. Measured
#: at 128³: 0.01 gives the void sizes of 0.001 (within the 1.5 % noise), 0.03 2 % smaller ones.
_PELT_BAND = 0.01
#: Least edge of the packing domain, in largest void radii (see :func:`_pack_voids_pelt`).
_MIN_BLOCK = 16.0
#: Period given to the k-d trees along axes that are not periodic: no distance reaches it.
_NO_PERIOD = 1.0e9


def _periodic_delta(d: np.ndarray, box: tuple[float, float, float]) -> np.ndarray:
    period = np.asarray(box)
    return d - period * np.round(d / period)


def _pairs_within(tree: cKDTree, points: np.ndarray, reach: float,
                  box: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs closer than ``reach``: index into ``points``, index into ``tree``, periodic distance."""
    # query_ball_point is far faster than sparse_distance_matrix when one side holds few points.
    found = tree.query_ball_point(points, reach, return_sorted=False) if len(points) else []
    counts = np.fromiter(map(len, found), dtype=np.intp, count=len(found))
    j = np.fromiter(chain.from_iterable(found), dtype=np.intp, count=int(counts.sum()))
    i = np.repeat(np.arange(len(found)), counts)
    return i, j, np.linalg.norm(_periodic_delta(points[i] - tree.data[j], box), axis=1)


class _VoidIndex:
    """Placed voids in a periodic k-d tree that is rebuilt only now and then.

    The voids added since the last rebuild sit in a small tree of their own, so
    adding voids costs little however many there are.
    """

    def __init__(self, box: tuple[float, float, float]) -> None:
        self.box = box
        self.centres, self.radii = np.empty((0, 3)), np.empty(0)
        self._static, self._recent, self._n_static = None, None, 0

    def add(self, centres: np.ndarray, radii: np.ndarray) -> None:
        # New arrays, never changed in place: the trees keep references to them.
        self.centres = np.concatenate([self.centres, centres])
        self.radii = np.concatenate([self.radii, radii])
        if self.radii.size - self._n_static > max(4096, self._n_static // 4):
            self._static, self._recent, self._n_static = cKDTree(self.centres, boxsize=self.box), None, self.radii.size
        else:
            self._recent = cKDTree(self.centres[self._n_static :], boxsize=self.box)

    def lower_room(self, points: np.ndarray, room: np.ndarray, reach: float, wall: float) -> np.ndarray:
        """Lower ``room`` to each point's distance to the nearest void surface, minus ``wall``.

        Only voids centred within ``reach`` are seen: the result is exact where
        it ends below ``reach - max(radii) - wall``.
        """
        for voids, first in ((self._static, 0), (self._recent, self._n_static)):
            if voids is not None:
                i, j, d = _pairs_within(voids, points, reach, self.box)
                np.minimum.at(room, i, d - self.radii[first + j] - wall)
        return room


class _CandidatePool:
    """Candidate centres in a periodic k-d tree of a snapshot, rebuilt only now and then.

    Redrawn candidates are marked as moved: the snapshot's pairs for them are
    dropped and their new positions looked up in a small tree instead.
    """

    def __init__(self, positions: np.ndarray, box: tuple[float, float, float]) -> None:
        self.box = box
        self.positions = positions
        self._rebuild()

    def _rebuild(self) -> None:
        # The tree keeps a reference to its data: give it a copy, as positions change in place.
        self._tree = cKDTree(self.positions.copy(), boxsize=self.box)
        self._moved = np.zeros(self.positions.shape[0], dtype=bool)

    def move(self, index: np.ndarray, positions: np.ndarray) -> None:
        self.positions[index] = positions
        self._moved[index] = True
        if self._moved.sum() > max(1024, self._moved.size // 8):
            self._rebuild()

    def lower_room(self, room: np.ndarray, centres: np.ndarray, radii: np.ndarray, reach: float,
                   wall: float) -> None:
        """Lower the candidates' ``room`` for new voids (``centres``, ``radii``) within ``reach``."""
        i, j, d = _pairs_within(self._tree, centres, reach, self.box)
        fresh = ~self._moved[j]
        np.minimum.at(room, j[fresh], d[fresh] - radii[i[fresh]] - wall)
        moved = np.flatnonzero(self._moved)
        if moved.size:
            i, j, d = _pairs_within(cKDTree(self.positions[moved], boxsize=self.box), centres, reach, self.box)
            np.minimum.at(room, moved[j], d - radii[i] - wall)


def _pack_voids_pelt(  # noqa: C901 (one packing loop with its rejection rules; a stated exception)
    rng: np.random.Generator,
    *,
    height: int,
    sample_radius: float,
    max_radius: float,
    min_radius: float,
    min_wall: float,
    density: float,
    porosity: float | None,
    n_voids: int | None,
    surface: str,
    replenish: bool = True,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Void packing of Pelt, Hendriksen & Batenburg (J. Synchrotron Rad. 29:254, 2022).

    All lengths are in voxels and ``density`` is in candidates per voxel³. A pool
    of ``density × volume`` candidate centres is drawn uniformly in the packing
    domain; each candidate knows the largest void it can host: its distance to
    the nearest void surface (and, for a ``"closed"`` surface, to the sample
    wall) less ``min_wall``, capped at ``max_radius``. The candidate hosting the
    largest void is placed (ties at the cap go to a random one), the candidates
    it leaves without room are redrawn uniformly where a void could still grow,
    so the pool keeps its size, and the process repeats until the voids fill
    ``porosity`` of the domain, ``n_voids`` voids are centred in the sample, or
    no candidate can host ``min_radius``.

    The domain is periodic along ``z`` and ``max_radius + min_wall`` longer than
    the scan at each end, so no void meets its own periodic image inside the
    scan. With ``surface="closed"`` it is the sample cylinder itself (voids stay
    inside it); with ``"cut"`` it is a box periodic in all three axes around the
    cylinder, a foam block out of which the sample is cut. Every rule is local
    and the candidate density is per unit volume, so the statistics do not
    depend on the size of the domain, provided it holds enough voids: the
    porosity stop sets the smallest radius, which scatters from one small block
    to the next. Each periodic edge is therefore at least :data:`_MIN_BLOCK`
    largest radii long (a small sample is cut from a larger block).

    For speed, voids are placed in rounds rather than one at a time: a round
    takes the candidates whose room lies within :data:`_PELT_BAND` (relative) of
    the current level and places each one that no higher-ranked candidate of
    the round could shrink. This is the one-at-a-time order, except that
    candidates redrawn during a round join the ranking at the next one.

    ``replenish=False`` drops the swallowed candidates instead of redrawing
    them (the pool shrinks), for comparison only.

    Returns
    -------
    centres : numpy.ndarray
        ``(n, 3)`` void centres ``(z, y, x)`` in voxel-index coordinates of the
        scanned volume (axis of the cylinder at ``(height - 1) / 2``), for the
        voids that meet the sample.
    radii : numpy.ndarray
        ``(n,)`` void radii (voxels).
    info : dict
        ``pool`` (candidates, constant), ``redrawn`` (replenishments), ``rounds``,
        ``stop`` (``"porosity"``, ``"n_voids"`` or ``"min_radius"``),
        ``porosity_packing`` (void volume over the domain volume, exact),
        ``n_voids_packing`` (voids in the domain) and ``inside`` (a mask of the
        returned voids whose centre lies in the sample).
    """
    w = float(min_wall)
    margin = max_radius + w
    block = _MIN_BLOCK * max_radius
    lz = max(height + 2 * margin, block)
    if surface == "closed":
        span = 2 * sample_radius
        box = (lz, _NO_PERIOD, _NO_PERIOD)
        volume = np.pi * sample_radius**2 * lz
    else:
        span = max(2 * (sample_radius + margin), block)
        box = (lz, span, span)
        volume = span**2 * lz
    axis = span / 2
    n_pool = max(1, round(density * volume))
    voids = _VoidIndex(box)

    def base_room(p: np.ndarray) -> np.ndarray:
        if surface == "closed":
            return np.minimum(sample_radius - np.hypot(p[:, 1] - axis, p[:, 2] - axis) - w, max_radius)
        return np.full(p.shape[0], float(max_radius))

    def periodic(values: np.ndarray, period: float) -> np.ndarray:
        # The k-d trees refuse a coordinate equal to its period, which rounding can produce.
        return np.minimum(values, np.nextafter(period, 0.0))

    def draw(k: int) -> np.ndarray:
        z = periodic(rng.uniform(0.0, lz, k), lz)
        if surface == "closed":
            rho = sample_radius * np.sqrt(rng.uniform(0.0, 1.0, k))
            phi = rng.uniform(0.0, 2 * np.pi, k)
            return np.stack([z, axis + rho * np.sin(phi), axis + rho * np.cos(phi)], axis=1)
        return np.stack([z, periodic(rng.uniform(0.0, span, k), span), periodic(rng.uniform(0.0, span, k), span)],
                        axis=1)

    def draw_free(k: int, top: float) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``k`` points uniform where a void could still grow (room >= 0), with their room.

        The rooms are exact up to ``top``, which bounds every room in the pool;
        the rare point beyond it gets its room recomputed with the full reach.
        Fewer than ``k`` come back only when walls leave almost no such space.
        """
        got_p, got_r, have, tries = [], [], 0, 0
        while have < k and tries < 1000 * k + 100_000:
            p = draw(int(1.3 * (k - have)) + 8)
            tries += p.shape[0]
            big = voids.radii.max() if voids.radii.size else 0.0
            room = voids.lower_room(p, base_room(p), top + big + w, w)
            far = np.flatnonzero(room >= top)
            if far.size and voids.radii.size:
                room[far] = voids.lower_room(p[far], base_room(p[far]), max_radius + big + w, w)
            keep = room >= 0
            got_p.append(p[keep])
            got_r.append(room[keep])
            have += int(keep.sum())
        return np.concatenate(got_p)[:k], np.concatenate(got_r)[:k]

    def in_sample(c: np.ndarray) -> np.ndarray:
        z = c[:, 0] - margin
        inside = (z >= 0) & (z < height)
        if surface == "cut":
            inside &= np.hypot(c[:, 1] - axis, c[:, 2] - axis) < sample_radius
        return inside

    positions, room = draw_free(n_pool, max_radius)
    pool = _CandidatePool(positions, box)
    key = rng.uniform(0.0, 1.0, n_pool)
    target_volume = np.inf if porosity is None else porosity * volume
    target_count = np.inf if n_voids is None else n_voids
    placed_volume, placed_count = 0.0, 0
    rounds = redrawn = 0
    level = max_radius
    stop = "min_radius"
    while True:
        top = float(room.max())
        if top < min_radius:
            break
        # A level ends when no candidate is left in its band; the next starts at the largest room left.
        if top < (1 - _PELT_BAND) * level:
            level = top
        rounds += 1
        batch = np.flatnonzero(room >= max(min_radius, (1 - _PELT_BAND) * level))
        batch = batch[np.lexsort((-key[batch], -room[batch]))]
        # A dense pool has many candidates at the cap: a prefix of the ranking keeps the round small.
        batch = batch[: max(256, int(2 * volume / (2 * top + w) ** 3))]
        blocked = np.zeros(batch.size, dtype=bool)
        at = pool.positions[batch]
        pairs = cKDTree(at, boxsize=box).query_pairs(2 * top + w, output_type="ndarray")
        if len(pairs):
            a, b = pairs[:, 0], pairs[:, 1]
            d = np.linalg.norm(_periodic_delta(at[a] - at[b], box), axis=1)
            # Placing one would shrink the other: only the higher-ranked may go this round.
            clash = d < room[batch[a]] + room[batch[b]] + w
            blocked[np.maximum(a, b)[clash]] = True
        hosts = batch[~blocked]
        new_c, new_r = pool.positions[hosts].copy(), room[hosts].copy()
        cum_volume = placed_volume + np.cumsum(4 / 3 * np.pi * new_r**3)
        cum_count = placed_count + np.cumsum(in_sample(new_c))
        done = (cum_volume >= target_volume) | (cum_count >= target_count)
        if done.any():
            k = int(np.argmax(done)) + 1
            stop = "porosity" if cum_volume[k - 1] >= target_volume else "n_voids"
            hosts, new_c, new_r = hosts[:k], new_c[:k], new_r[:k]
        placed_volume = float(cum_volume[new_r.size - 1])
        placed_count = int(cum_count[new_r.size - 1])
        voids.add(new_c, new_r)
        if done.any():
            break
        pool.lower_room(room, new_c, new_r, top + new_r.max() + w, w)
        room[hosts] = -1.0
        gone = np.flatnonzero(room < 0)
        if not replenish:
            room[gone] = -np.inf
            continue
        fresh, fresh_room = draw_free(gone.size, top)
        # With no free space left the unfilled slots stay empty: the pool shrinks only then.
        room[gone] = -np.inf
        gone = gone[: fresh_room.size]
        room[gone] = fresh_room
        pool.move(gone, fresh)
        key[gone] = rng.uniform(0.0, 1.0, gone.size)
        redrawn += gone.size

    centres, radii = voids.centres, voids.radii
    z = centres[:, 0] - margin - 0.5
    meets = (z + radii > -0.5) & (z - radii < height - 0.5)
    if surface == "cut":
        meets &= np.hypot(centres[:, 1] - axis, centres[:, 2] - axis) - radii < sample_radius
    inside = in_sample(centres)[meets]
    out = centres[meets] - np.array([margin + 0.5, axis - (height - 1) / 2, axis - (height - 1) / 2])
    info = {"pool": n_pool, "redrawn": redrawn, "rounds": rounds, "stop": stop,
            "porosity_packing": placed_volume / volume, "n_voids_packing": int(radii.size), "inside": inside}
    return out, radii[meets], info
