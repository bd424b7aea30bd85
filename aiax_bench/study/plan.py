"""What an acquisition study runs: (method, split, seed) tasks, and each split's acquisition."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiax_bench.errors import InputError

__all__ = ["Acquisition", "StudyPlan", "StudyTask", "acquisition_of"]


@dataclass(frozen=True)
class Acquisition:
    """Where a split sits on the study's x-axis.

    Attributes
    ----------
    split : str
        Split name.
    kind : str
        The split's kind (``sparse``, ``dose``, ...).
    projections : int
        Projections acquired.
    saving : float
        How many times less the split acquires than the reference scan
        (scan time and dose for sparse and dose splits, detector pixels for binning).
    saving_of : str
        What the saving is of, in words.
    """

    split: str
    kind: str
    projections: int
    saving: float
    saving_of: str

    def describe(self, reference_angles: int) -> str:
        """``75 of 500 projections (6.7× less scan time and dose)``-style words."""
        head = {"sparse": f"{self.projections} of {reference_angles} projections",
                "continuous": f"{self.projections} projections in continuous rotation"}.get(self.kind, self.split)
        return f"{head} ({self.saving:.3g}× less {self.saving_of})"


def _sparse(split, reference_angles: int) -> Acquisition:
    return Acquisition(split.name, split.kind, split.n_angles, reference_angles / split.n_angles,
                       "scan time and dose")


def _dose(split, reference_angles: int) -> Acquisition:
    return Acquisition(split.name, split.kind, reference_angles, 1 / split.dose_factor, "dose")


def _binning(split, reference_angles: int) -> Acquisition:
    return Acquisition(split.name, split.kind, reference_angles, float(split.factor) ** 2, "detector data")


def _continuous(split, reference_angles: int) -> Acquisition:
    return Acquisition(split.name, split.kind, split.n_angles, reference_angles / split.n_angles,
                       "projections, without stopping the stage")


#: Split kind -> its place on the x-axis; the only place that knows what each kind saves.
ACQUISITIONS: dict[str, Callable[[Any, int], Acquisition]] = {
    "sparse": _sparse, "subsample": _sparse, "dose": _dose, "binning": _binning, "continuous": _continuous}


def acquisition_of(spec, split: str) -> Acquisition:
    """The acquisition of ``split`` of ``spec`` (a :class:`~aiax_bench.data.registry.DatasetVersion`)."""
    split_spec = spec.split_spec(split)
    if split_spec.kind not in ACQUISITIONS:
        raise InputError(f"split {split!r}", f"is of kind {split_spec.kind!r}",
                         f"a split that saves acquisition ({', '.join(ACQUISITIONS)})")
    return ACQUISITIONS[split_spec.kind](split_spec, reference_angles_of(spec))


def reference_angles_of(spec) -> int:
    """Projections of the dataset's reference scan."""
    acquisition = spec.recipe.get("acquisition", {})
    return int(acquisition.get("reference_angles") or acquisition.get("n_angles") or 0)


@dataclass(frozen=True)
class StudyTask:
    """One evaluation of a study."""

    method: str
    split: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.method}/{self.split}/seed{self.seed}"

    def slug(self) -> str:
        """A file-name-safe form of the key."""
        return f"{self.method}--{self.split.replace('/', '_')}--seed{self.seed}"


@dataclass(frozen=True)
class StudyPlan:
    """Every evaluation a study runs.

    Attributes
    ----------
    methods, splits, seeds : sequence
        The grid: each method at each split for each seed.
    dataset : str
        ``name`` or ``name@version``.
    profile : str, optional
        Size profile (the dataset's default if omitted).
    out : Path
        The study directory (results, predictions, report).
    configs : dict
        Per method, ``--config`` overrides.
    tolerance : float
        Relative distance to the truth (fraction) within which a statistic "stays".
    save_predictions : bool
        Keep every test volume's prediction (else only what the report draws of the first).
    threads : int
        Threads of each evaluation. Fixed, not taken from the machine: the same study trained its
        networks with 1 and with 2 threads per evaluation and its tables differed
        (``benchmarks/study-local-threads-by-workers.json``), so a study's numbers would otherwise
        depend on ``--workers`` and on the cores of each cluster's jobs. One thread each and as
        many workers as cores also keeps every core busy through many evaluations.
    """

    methods: Sequence[str]
    splits: Sequence[str]
    seeds: Sequence[int]
    dataset: str = "foam"
    profile: str | None = None
    out: Path = Path("study")
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    tolerance: float = 0.05
    save_predictions: bool = False
    threads: int = 1

    def tasks(self) -> list[StudyTask]:
        return [StudyTask(m, s, seed) for m in self.methods for s in self.splits for seed in self.seeds]

    def check(self) -> tuple[Any, str, dict[str, Acquisition]]:
        """Check the grid before anything runs: the dataset version, its profile and every split's acquisition."""
        from aiax_bench.data.registry import resolve
        from aiax_bench.methods import get_method

        for name, values in (("--method", self.methods), ("--splits", self.splits), ("--seeds", self.seeds)):
            if not values:
                raise InputError(name, "is empty", "give at least one")
            if len(set(values)) != len(values):
                raise InputError(name, f"repeats a value ({list(values)})", "give distinct values")
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.seeds):
            raise InputError("--seeds", f"is {list(self.seeds)}", "expected non-negative integers")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise InputError("--threads", f"is {self.threads!r}", "a positive number of threads per evaluation")
        if not 0 < self.tolerance < 1:
            raise InputError("--tolerance", f"is {self.tolerance}", "a fraction in (0, 1), e.g. 0.05 for 5 %")
        for method in self.methods:
            get_method(method)
        spec = resolve(self.dataset)
        profile = self.profile or spec.default_profile
        spec.check_profile(profile)
        acquisitions = {}
        for split in self.splits:
            spec.check_split(split)
            acquisitions[split] = acquisition_of(spec, split)
        return spec, profile, acquisitions
