"""The method contract every reference and user method follows."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from aiax_bench.data.sample import SampleLike
from aiax_bench.errors import InputError

__all__ = ["Budget", "FitContext", "Method", "coerce_value"]

_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _type_name(annotation: Any) -> str:
    if annotation is type(None):
        return "null"
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin in (tuple, list):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return f"a list of {_type_name(args[0])}" if args else "a list"
    return {int: "an integer", float: "a number", str: "text", bool: "true or false",
            dict: "a mapping"}.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _to_none(value: Any, annotation: Any) -> None:
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "~")):
        return None
    raise ValueError


def _to_union(value: Any, annotation: Any) -> Any:
    # None first, so that "none" never becomes the text 'none' of an optional string.
    for arg in sorted(typing.get_args(annotation), key=lambda a: a is not type(None)):
        try:
            return coerce_value(value, arg)
        except ValueError:
            continue
    raise ValueError


def _to_literal(value: Any, annotation: Any) -> Any:
    for choice in typing.get_args(annotation):
        try:
            if coerce_value(value, type(choice)) == choice:
                return choice
        except ValueError:
            continue
    raise ValueError


def _to_sequence(value: Any, annotation: Any) -> list | tuple:
    if isinstance(value, str):
        value = [v for v in value.replace(",", " ").split() if v]
    if not isinstance(value, list | tuple):
        raise ValueError
    args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
    items = [coerce_value(v, args[0]) if args else v for v in value]
    return tuple(items) if (typing.get_origin(annotation) or annotation) is tuple else items


def _to_bool(value: Any, annotation: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    raise ValueError


def _to_int(value: Any, annotation: Any) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, str):
        value = float(value.strip()) if any(c in value for c in ".eE") else int(value.strip())
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError
        value = int(value)
    if not isinstance(value, int):
        raise ValueError
    return value


def _to_float(value: Any, annotation: Any) -> float:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, str):
        value = float(value.strip())
    if not isinstance(value, int | float) or math.isnan(value):
        raise ValueError
    return float(value)


def _exactly(kind: type):
    def check(value: Any, annotation: Any) -> Any:
        if not isinstance(value, kind):
            raise ValueError
        return value
    return check


#: How a value becomes each kind of annotation (the annotation's origin for generics).
_COERCERS = {type(None): _to_none, typing.Union: _to_union, types.UnionType: _to_union, Literal: _to_literal,
             tuple: _to_sequence, list: _to_sequence, bool: _to_bool, int: _to_int, float: _to_float,
             str: _exactly(str), dict: _exactly(dict)}


def parse_config_pairs(pairs: Sequence[str]) -> dict[str, Any]:
    """``--config KEY=VALUE ...`` as a mapping, each value read as YAML (the Config types then check it)."""
    import yaml

    config = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError("--config", f"item {pair!r} is not KEY=VALUE", "write e.g. --config filter=hann")
        try:
            config[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            config[key] = value  # plain text; the method's Config types decide whether it is valid
    return config


def coerce_value(value: Any, annotation: Any) -> Any:
    """``value`` converted to the type ``annotation`` names, or ``ValueError``.

    Command-line values arrive as text or as YAML scalars: ``"1e-3"`` becomes
    the float 0.001, ``"16"`` the integer 16, ``"none"`` None where the field
    is optional; ``16.5`` for an integer or ``"abc"`` for a number are refused.
    """
    if annotation is Any:
        return value
    coercer = _COERCERS.get(typing.get_origin(annotation) or annotation)
    return value if coercer is None else coercer(value, annotation)


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


@dataclasses.dataclass(frozen=True)
class FitContext:
    """What a method trains on and where it may keep checkpoints; the harness always passes one to ``fit``.

    Attributes
    ----------
    dataset, profile, split : str, optional
        The dataset reference (``name@version``), size profile and split evaluated (trained on too, unless
        ``train_splits`` says otherwise).
    task : str, optional
        The task the method is evaluated on (one of :meth:`Method.tasks`); None means ``Method.task``.
    annotated_slices : int, optional
        The annotated-k protocol of a segmentation method.
    train_splits : tuple of str, optional
        The mixed-degradation protocol: the training and validation samples are
        these splits' (the same volumes through each split, in this order), not
        ``split``'s. A checkpoint key names these instead of ``split``, so one
        mixed training serves every split it is evaluated on.
    dataset_sha256 : str, optional
        Content hash of the dataset profile: a checkpoint is reused only for the same data.
    lesions : aiax_bench.evaluation.LesionSpec, optional
        The dataset's lesions and their size strata (registry ``evaluation.lesions``), for
        size-stratified sampling while training.
    checkpoint_root : Path, optional
        Cache of trained checkpoints (``<root>/<method>/<key>``); none if omitted.
    checkpoint : Path, optional
        Use this checkpoint instead of training (refused unless it was trained
        by this method with the same config on the same data).
    reuse : bool
        Reuse a cached checkpoint with the same key (False trains again and replaces it).
    resume : bool
        Resume an interrupted training from its saved state.
    """

    dataset: str | None = None
    task: str | None = None
    profile: str | None = None
    split: str | None = None
    annotated_slices: int | None = None
    train_splits: tuple[str, ...] | None = None
    dataset_sha256: str | None = None
    lesions: Any = None
    checkpoint_root: Path | None = None
    checkpoint: Path | None = None
    reuse: bool = True
    resume: bool = True

    @classmethod
    def of(cls, value: FitContext | Mapping[str, Any] | None) -> FitContext:
        """A context from a ``FitContext``, a mapping of its fields, or None (every field at its default)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise InputError("fit context", f"has unknown key(s) {unknown}", f"known keys: {sorted(known)}")
        paths = {k: Path(value[k]) for k in ("checkpoint_root", "checkpoint") if value.get(k) is not None}
        # A mapping read from JSON holds a list; the context keeps a tuple, as the harness passes it.
        mixture = {"train_splits": tuple(value["train_splits"])} if value.get("train_splits") else {}
        return cls(**{**value, **paths, **mixture})


class Method(ABC):
    """A tomography enhancement or segmentation method, or a DCT spot segmentation.

    Subclasses set ``name``, ``task`` and ``inputs``, declare their
    hyper-parameters as a dataclass ``Config``, and implement :meth:`predict`
    (and :meth:`fit` if they learn). They are registered under the entry-point
    group ``aiax_bench.methods`` exactly like a user's own package would be.

    Attributes
    ----------
    name : str
        Registry name (``aiax-bench evaluate --method NAME``).
    task : {'enhance', 'segment', 'dct'}
        What :meth:`predict` returns: a volume in 1/cm, or integer labels (the
        dataset's phase indices). A segmentation method reads its input as
        ``sample.read("low")`` (the split decides which reconstruction that is)
        and must treat the label value
        :data:`~aiax_bench.data.annotation.UNLABELLED` as "not annotated".
        A ``dct`` method segments the diffraction spots of a frame-stack
        dataset (recipe ``source: frames``): it reads the raw frames
        ``sample.read("low")`` ``(psi, y, x)``, ``dark`` and ``direct_beam``, and
        returns integer blob labels of the frames' shape (0 for the background,
        one id per blob).
    inputs : tuple of str
        What the method reads from a sample: ``'reconstruction'`` and/or ``'sinogram'``, or ``'frames'``.
    beams : tuple of str
        The beam geometries whose sinograms the method reconstructs (``'parallel'``,
        ``'fan'``; read from the sample's ``meta['geometry']``); matters only with
        input ``'sinogram'``.
    also_tasks : tuple of str
        Further tasks the method serves; the harness picks the task from the
        dataset (``'dct'`` on frame-stack datasets, ``task`` elsewhere) and
        passes it in :attr:`FitContext.task`. The segmentation U-Net lists
        ``'dct'``: it segments the spots of preprocessed frames too.
    trainable : bool
        Whether :meth:`fit` learns anything.
    supervision : {'reference', 'truth', 'self', 'none'}
        What the method learns or tunes its settings from: the reference scan,
        the exact phantom (attenuation or phase labels), its own projections
        only (self-supervised), or nothing. ``'self'`` and ``'none'`` methods
        get sealed training and validation samples
        (:class:`~aiax_bench.data.sealed.SealedSample`), like every method at
        test time. It is a leaderboard dimension: entries rank only against
        entries of the same supervision (:data:`aiax_bench.results.SUPERVISION`).
    """

    name: ClassVar[str]
    task: ClassVar[str] = "enhance"
    inputs: ClassVar[tuple[str, ...]] = ("reconstruction",)
    beams: ClassVar[tuple[str, ...]] = ("parallel",)
    also_tasks: ClassVar[tuple[str, ...]] = ()
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
        hints = typing.get_type_hints(cls.Config)
        typed = {}
        for key, value in config.items():
            annotation = hints.get(key, Any)
            try:
                typed[key] = coerce_value(value, annotation)
            except (ValueError, TypeError, OverflowError):
                raise InputError(f"config of method {cls.name}: key {key}", f"is {value!r}",
                                 f"expected {_type_name(annotation)}") from None
        return cls.Config(**typed)

    @classmethod
    def tasks(cls) -> tuple[str, ...]:
        """Every task the method serves: ``task`` first, then :attr:`also_tasks`."""
        return (cls.task, *cls.also_tasks)

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def fit(self, train: Sequence[SampleLike], val: Sequence[SampleLike], *, seed: int, budget: Budget | None = None,
            tracker: Any = None, context: FitContext | Mapping[str, Any] | None = None) -> None:
        """Learn from training samples; methods that do not learn keep this no-op.

        ``budget`` caps the training (the harness passes the request's, None
        for the method's own). ``context`` (a :class:`FitContext`, always passed
        by the harness; read it with ``FitContext.of(context)``) tells a learning
        method what it trains on and where it may cache checkpoints, so that a
        checkpoint is reused only for the same data and config.
        """

    @abstractmethod
    def predict(self, sample: SampleLike) -> np.ndarray:
        """Return the enhanced volume (1/cm, same shape as ``sample.low``), phase labels or blob labels."""

    def fit_summary(self) -> dict[str, Any]:
        """What :meth:`fit` chose, JSON-ready (e.g. settings tuned on the validation volumes); empty by default.

        The harness stores it in the result and the MLflow run, so a board entry
        shows the settings a classical baseline was tuned to.
        """
        return {}

    def prior_training_seconds(self) -> float:
        """Training time (s) the fitted state cost before the last :meth:`fit` call; 0 by default.

        A reused checkpoint costs its recorded training time, a resumed training
        the sessions before the interruption. The harness adds it to the wall
        time of ``fit``, so a result's ``train_seconds`` is what training took,
        not what a cache hit took.
        """
        return 0.0

    def parameter_count(self) -> int:
        """Number of learned parameters (0 for classical methods)."""
        return 0

    def save(self, directory: Path) -> None:
        """Write a checkpoint directory; classical methods have nothing to save."""

    @classmethod
    def describe(cls) -> str:
        doc = (cls.__doc__ or "").strip().splitlines()
        return doc[0] if doc else ""
