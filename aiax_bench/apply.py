"""A trained method on a new volume: ``aiax-bench apply --checkpoint DIR --input VOLUME --output OUT``.

The checkpoint names its method (``metadata.json``), which loads it. Enhancement
methods run slab by slab (:func:`aiax_bench.training.predict_volume`: a few
slices in memory, their neighbours as halo), written to a chunked zarr array or
a TIFF / ``.npy`` file; ``--dtype uint16`` maps the training inputs' range
(mean ± 5 std) to 0–65535 and records the mapping. When the input's values
are far from those the network was trained on (median more than 5 training
standard deviations from the training mean), a warning says so: the network
is extrapolating. A self-supervised method (``--method noise2inverse``) needs
no checkpoint: it trains on the imported scan itself (:func:`apply_self_supervised`).
``--match-intensity`` maps the input linearly onto the
training inputs' mean and standard deviation first (and the output back), for
a scan in other units or of another material; the map is recorded.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from aiax_bench.errors import InputError

__all__ = ["VOLUME_OUTPUTS", "apply_checkpoint", "apply_self_supervised", "check_volume_output", "intensity_map",
           "intensity_warning", "load_trained", "write_volume"]

#: Output types and how values are stored in them.
DTYPES = ("float32", "uint16")


def load_trained(directory: Path | str):
    """The method a checkpoint directory was trained by, with its weights loaded."""
    from aiax_bench.methods import get_method

    directory = Path(directory)
    meta_path = directory / "metadata.json"
    if not meta_path.is_file():
        raise InputError(str(directory), "has no metadata.json", "a checkpoint directory written by training")
    name = json.loads(meta_path.read_text()).get("method")
    if not name:
        raise InputError(f"{meta_path}: field method", "is missing", "the name of the method that trained it")
    method_cls = get_method(name)
    if not hasattr(method_cls, "load"):
        raise InputError(f"method {name}", "cannot load checkpoints", "a learned method")
    return method_cls.load(directory)


def intensity_warning(volume: Any, value_range: dict[str, float]) -> str | None:
    """A warning when the input's median is more than 5 training standard deviations from the training mean."""
    if not value_range or "input_mean" not in value_range:
        return None
    step = max(1, volume.shape[0] // 16)
    median = float(np.median(np.asarray(volume[::step], dtype=np.float64)))
    distance = abs(median - value_range["input_mean"]) / value_range["input_std"]
    if distance > 5:
        return (f"the input's median {median:.4g} is {distance:.0f} training standard deviations from the training "
                f"mean {value_range['input_mean']:.4g}: the network extrapolates (check the units, 1/cm)")
    return None


class _Scaled:
    """A volume seen through ``a * x + b``, read slab by slab like the volume itself."""

    def __init__(self, volume: Any, a: float, b: float) -> None:
        self.volume, self.a, self.b = volume, a, b
        self.shape = tuple(volume.shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, index):
        return (self.a * np.asarray(self.volume[index], dtype=np.float32) + self.b).astype(np.float32)

    def __array__(self, dtype=None, copy=None):
        return self[...] if dtype is None else self[...].astype(dtype)


class _MappedBack:
    """An output array written through ``(y - b) / a``: the inverse of :class:`_Scaled`, slab by slab."""

    def __init__(self, target: Any, a: float, b: float) -> None:
        self.target, self.a, self.b = target, a, b
        self.shape = tuple(target.shape)
        self.chunks = getattr(target, "chunks", None)

    def __setitem__(self, index, values) -> None:
        self.target[index] = (np.asarray(values, dtype=np.float32) - self.b) / self.a


def intensity_map(volume: Any, value_range: dict[str, float]) -> tuple[float, float]:
    """``(a, b)`` so that ``a * volume + b`` has the training inputs' mean and standard deviation."""
    if "input_mean" not in value_range:
        raise InputError("--match-intensity", "needs the training inputs' statistics",
                         "a checkpoint whose metadata has value_range.input_mean and input_std")
    step = max(1, volume.shape[0] // 16)
    sample = np.asarray(volume[::step], dtype=np.float64)
    std = float(sample.std())
    if not std > 0:
        raise InputError("--input", "is constant", "a volume with contrast")
    a = value_range["input_std"] / std
    return a, value_range["input_mean"] - a * float(sample.mean())


#: What a volume can be written as, by suffix.
VOLUME_OUTPUTS = (".zarr", ".tif", ".tiff", ".npy")


def check_volume_output(path: Path | str) -> Path:
    """``path`` as a Path, or one line when its suffix is no volume format :func:`write_volume` writes."""
    path = Path(path)
    if path.suffix not in VOLUME_OUTPUTS:
        raise InputError("--output", f"is {str(path)!r}", "a .zarr, .tif or .npy path")
    return path


def _open_output(path: Path, shape: tuple[int, ...]):
    check_volume_output(path)
    if path.suffix == ".zarr":
        import zarr

        return zarr.create_array(str(path), shape=shape, dtype="float32", chunks=(min(16, shape[0]), *shape[1:]),
                                 overwrite=True)
    return None  # written whole at the end


def apply_checkpoint(checkpoint: Path | str, volume: Any, output: Path | str, *, dtype: str = "float32",
                     batch_size: int | None = None, progress: bool = False,
                     match_intensity: bool = False) -> dict[str, Any]:
    """Run a trained enhancement method on ``volume`` (1/cm) and write the result to ``output``.

    With ``match_intensity`` the input is first mapped linearly onto the
    training inputs' mean and standard deviation and the output mapped back
    (both slab by slab).

    Returns a record of what was done: method, shapes, seconds, slices per
    minute, the stored type and its scaling, the intensity map, and any warning.
    """
    from aiax_bench.training.inference import predict_volume

    if dtype not in DTYPES:
        raise InputError("--dtype", f"is {dtype!r}", f"one of {', '.join(DTYPES)}")
    method = load_trained(checkpoint)
    if getattr(method, "task", "enhance") != "enhance":
        raise InputError(f"checkpoint {checkpoint}", f"is of the {method.task} method {method.name}",
                         "an enhancement method's checkpoint")
    output = Path(output)
    shape = tuple(int(s) for s in volume.shape)
    if len(shape) != 3:
        raise InputError("--input", f"has shape {shape}", "a 3D volume (z, y, x)")
    target = _open_output(output, shape)
    if dtype == "uint16":
        target = None  # scaled in memory, then written once
    value_range = (method.metadata or {}).get("value_range", {})
    intensity = None
    if match_intensity:
        a, b = intensity_map(volume, value_range)
        volume = _Scaled(volume, a, b)
        target = None if target is None else _MappedBack(target, a, b)
        intensity = {"a": a, "b": b, "rule": "input mapped to a * x + b: the training inputs' mean and std; "
                                             "output mapped back by (y - b) / a"}
    warning = intensity_warning(volume, value_range)
    if warning:
        warnings.warn(warning, stacklevel=2)
    c = method.config
    start = time.perf_counter()
    result = predict_volume(method.model, volume, slices=c.slices, batch_size=batch_size or c.inference_batch_size,
                            tile=c.inference_tile,
                            overlap=c.inference_overlap, out=target, progress=progress)
    seconds = time.perf_counter() - start
    if intensity is not None:
        result = result.target if isinstance(result, _MappedBack) else (np.asarray(result) - intensity["b"]) / \
            intensity["a"]
    scaling = None
    if dtype == "uint16":
        # The output is in the input's units; a residual network's output statistics are those of the correction.
        mean, std = value_range.get("input_mean", 0.0), value_range.get("input_std", 1.0)
        lo, hi = mean - 5 * std, mean + 5 * std
        if intensity is not None:
            lo, hi = sorted(((lo - intensity["b"]) / intensity["a"], (hi - intensity["b"]) / intensity["a"]))
        scaling = {"value_at_0": lo, "value_at_65535": hi, "units": "1/cm"}
    if target is None or scaling is not None:
        data = np.asarray(result)
        if scaling is not None:
            data = np.round(np.clip((data - lo) / (hi - lo), 0, 1) * 65535).astype(np.uint16)
        write_volume(output, data)
    return {"method": method.name, "checkpoint": str(checkpoint), "shape": list(shape), "output": str(output),
            "dtype": dtype, "scaling": scaling, "intensity_map": intensity, "seconds": round(seconds, 3),
            "slices_per_minute": round(shape[0] / seconds * 60, 1) if seconds > 0 else None, "warning": warning}


def write_volume(output: Path, data: np.ndarray) -> None:
    """``data`` to a ``.npy``, ``.zarr`` or ``.tif`` file, by the suffix."""
    output = check_volume_output(output)
    if output.suffix == ".npy":
        np.save(output, data)
    elif output.suffix == ".zarr":
        import zarr

        zarr.create_array(str(output), data=data, overwrite=True)
    else:
        import tifffile

        tifffile.imwrite(output, data)


def apply_self_supervised(dataset: str, output: Path | str, *, method: str = "noise2inverse", seed: int = 0,
                          config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train a self-supervised method on an imported scan itself and write its result for every row.

    The method learns from the scan's own sinograms (the train slab, validated
    on the val slab, as ``evaluate`` trains it), never from the reference; the
    result covers the rows of all slabs, in order.

    Parameters
    ----------
    dataset : str
        The name an ``aiax-bench import`` gave the scan.
    output : path
        ``.zarr``, ``.tif`` or ``.npy``.
    method : str
        A registered method whose supervision is ``self``.
    seed : int
        Random seed of the training.
    config : dict, optional
        The method's hyper-parameters.
    """
    from aiax_bench.data.loader import load
    from aiax_bench.data.sealed import seal
    from aiax_bench.methods import FitContext, get_method

    output = check_volume_output(output)
    method_cls = get_method(method)
    if method_cls.supervision != "self":
        raise InputError("--method", f"is {method!r} ({method_cls.supervision}-supervised)",
                         "a self-supervised method, which trains on the scan itself (noise2inverse)")
    data = load(dataset)
    if not data.spec.imported:
        raise InputError("--input", f"is {dataset!r}, a registered dataset", "the name of a scan you imported")
    split = data.split("reference")
    samples = sorted([*split.train, *split.val, *split.test], key=lambda s: s.meta["rows"][0])
    if not samples[0].has("sinogram"):
        raise InputError("--input", f"is {dataset!r}, imported without projections", "a scan imported from projections")
    trainer = method_cls(config)
    start = time.perf_counter()
    # Sealed: a self-supervised method sees projections and reconstructions of the scan, never the reference.
    trainer.fit(seal(split.train or split.test), seal(split.val or split.test), seed=seed,
                context=FitContext(dataset=data.spec.ref, profile=data.profile, split="reference",
                                   dataset_sha256=data.content_sha256))
    trained = time.perf_counter() - start
    result = np.concatenate([np.asarray(trainer.predict(s), dtype=np.float32) for s in seal(samples)])
    seconds = time.perf_counter() - start - trained
    write_volume(output, result)
    rows = [samples[0].meta["rows"][0], samples[-1].meta["rows"][1]]
    return {"method": method, "dataset": data.spec.ref, "seed": seed, "config": trainer.config_dict(),
            "rows": rows, "shape": list(result.shape), "output": str(output), "dtype": "float32",
            "train_seconds": round(trained, 1), "seconds": round(seconds, 3),
            "slices_per_minute": round(result.shape[0] / seconds * 60, 1) if seconds > 0 else None,
            "warning": None}
