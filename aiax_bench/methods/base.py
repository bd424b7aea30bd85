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

from aiax_bench.errors import InputError

__all__ = ["Budget", "Method", "coerce_value"]

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


def coerce_value(value: Any, annotation: Any) -> Any:
    """``value`` converted to the type ``annotation`` names, or ``ValueError``.

    Command-line values arrive as text or as YAML scalars: ``"1e-3"`` becomes
    the float 0.001, ``"16"`` the integer 16, ``"none"`` None where the field
    is optional; ``16.5`` for an integer or ``"abc"`` for a number are refused.
    """
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if annotation is type(None):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "~")):
            return None
        raise ValueError
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        # None first, so that "none" never becomes the text 'none' of an optional string.
        for arg in sorted(args, key=lambda a: a is not type(None)):
            try:
                return coerce_value(value, arg)
            except ValueError:
                continue
        raise ValueError
    if origin is Literal:
        for choice in typing.get_args(annotation):
            try:
                if coerce_value(value, type(choice)) == choice:
                    return choice
            except ValueError:
                continue
        raise ValueError
    if origin in (tuple, list) or annotation in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
        if not isinstance(value, list | tuple):
            raise ValueError
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        items = [coerce_value(v, args[0]) if args else v for v in value]
        return tuple(items) if (origin or annotation) is tuple else items
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise ValueError
    if annotation is int:
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
    if annotation is float:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, str):
            value = float(value.strip())
        if not isinstance(value, int | float) or math.isnan(value):
            raise ValueError
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ValueError
        return value
    if annotation is dict or origin is dict:
        if not isinstance(value, dict):
            raise ValueError
        return value
    return value


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
