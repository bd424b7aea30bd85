"""The method contract every reference and user method follows."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from aiax_bench.errors import InputError

__all__ = ["Budget", "Method"]


@dataclasses.dataclass(frozen=True)
class Budget:
    """How much training a method may do: whichever limit comes first.

    Attributes
    ----------
    seconds : float, optional
        Wall-clock training time (s).
    iterations : int, optional
        Optimiser steps.
    """

    seconds: float | None = None
    iterations: int | None = None


class Method(ABC):
    """A tomography enhancement or segmentation method.

    Subclasses set ``name``, ``task`` and ``inputs``, declare their
    hyper-parameters as a dataclass ``Config``, and implement :meth:`predict`
    (and :meth:`fit` if they learn). They are registered under the entry-point
    group ``aiax_bench.methods`` exactly like a user's own package would be.

    Attributes
    ----------
    name : str
        Registry name (``aiax-bench evaluate --method NAME``).
    task : {'enhance', 'segment'}
        What :meth:`predict` returns: a volume in 1/cm, or integer labels (the
        dataset's phase indices). A segmentation method reads its input as
        ``sample.read("low")`` (the split decides which reconstruction that is)
        and must treat the label value
        :data:`~aiax_bench.data.annotation.UNLABELLED` as "not annotated".
    inputs : tuple of str
        What the method reads from a sample: ``'reconstruction'`` and/or ``'sinogram'``.
    trainable : bool
        Whether :meth:`fit` learns anything.
    supervision : {'reference', 'truth', 'labels', 'self', 'none'}
        What the method learns from: the reference scan, the exact phantom,
        phase labels, its own projections only (self-supervised), or nothing.
        ``'self'`` and ``'none'`` methods get sealed training and validation
        samples (:class:`~aiax_bench.data.sealed.SealedSample`), like every
        method at test time; results are grouped by it.
    """

    name: ClassVar[str]
    task: ClassVar[str] = "enhance"
    inputs: ClassVar[tuple[str, ...]] = ("reconstruction",)
    trainable: ClassVar[bool] = False
    supervision: ClassVar[str] = "none"
    #: Named hyper-parameter sets (e.g. ``"paper"`` for a GPU), selected with ``{"preset": NAME}``.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    @dataclasses.dataclass
    class Config:
        """Hyper-parameters (none by default)."""

    def __init__(self, config: Config | dict[str, Any] | None = None) -> None:
        self.config = self.make_config(config)

    @classmethod
    def make_config(cls, config: Config | dict[str, Any] | None) -> Config:
        """Build the typed config from a mapping, rejecting unknown keys by name.

        A ``"preset"`` key starts from that entry of :attr:`PRESETS`; the other keys override it.
        """
        if config is None:
            return cls.Config()
        if isinstance(config, cls.Config):
            return config
        if "preset" in config:
            config = dict(config)
            name = config.pop("preset")
            if name not in cls.PRESETS:
                raise InputError(f"preset of method {cls.name}", f"is {name!r}",
                                 f"expected one of {sorted(cls.PRESETS) or 'none'}")
            config = {**cls.PRESETS[name], **config}
        known = {f.name for f in dataclasses.fields(cls.Config)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise InputError(f"config of method {cls.name}", f"has unknown key(s) {unknown}",
                             f"known keys: {sorted(known) or 'none'}")
        return cls.Config(**config)

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def fit(self, train: Sequence[Any], val: Sequence[Any], *, seed: int, budget: Budget | None = None,
            tracker: Any = None, context: Mapping[str, Any] | None = None) -> None:
        """Learn from training samples; methods that do not learn keep this no-op.

        ``context`` tells a learning method what it trains on (``dataset``,
        ``profile``, ``split``, ``dataset_sha256``) and where it may cache
        checkpoints (``checkpoint_root``), so that a checkpoint is reused only
        for the same data and config. Methods written before it existed may
        leave it out of their signature: the harness then does not pass it.
        """

    @abstractmethod
    def predict(self, sample: Any) -> np.ndarray:
        """Return the enhanced volume (1/cm, same shape as ``sample.low``) or labels."""

    def parameter_count(self) -> int:
        """Number of learned parameters (0 for classical methods)."""
        return 0

    def save(self, directory: Path) -> None:
        """Write a checkpoint directory; classical methods have nothing to save."""

    @classmethod
    def describe(cls) -> str:
        doc = (cls.__doc__ or "").strip().splitlines()
        return doc[0] if doc else ""
