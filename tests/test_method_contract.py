"""The method contract, for every registered method: fit and predict on tiny, shape and dtype, seeded, checkpoints.

Every method registered on the ``aiax_bench.methods`` entry point must have a
tiny configuration below: registering a method without one fails
:func:`test_every_registered_method_has_a_tiny_configuration`.
"""

from __future__ import annotations

import numpy as np
import pytest

from aiax_bench.data.annotation import AnnotatedSample
from aiax_bench.data.sealed import seal
from aiax_bench.errors import InputError
from aiax_bench.harness import SEALED_SUPERVISION
from aiax_bench.methods import FitContext, available_methods, get_method

_NETWORK = {"max_steps": 2, "val_every": 2, "patch_size": 16, "batch_size": 2, "max_seconds": None,
            "progress": False}
_SLICES = {**_NETWORK, "val_slice_step": 32}

#: Smallest settings that still run every code path of fit and predict.
TINY = {
    "fbp": {"tune_slices": 2},
    "fbp-ramp": {},
    "sirt": {"tune_slices": 2, "max_iter": 4},
    "tv": {"tune_slices": 2, "max_iter": 4, "check_every": 2},
    "msdnet": {**_SLICES, "depth": 2},
    "unet": {**_SLICES, "depth": 1, "base_channels": 4},
    "noise2inverse": {**_SLICES, "depth": 1, "base_channels": 4},
    "noise2noise": {**_SLICES, "depth": 1, "base_channels": 4},
    "tomogan": {**_SLICES, "depth": 1, "base_channels": 4, "disc_channels": [4]},
    "threshold": {},
    "unet-seg": {**_NETWORK, "depth": 1, "base_channels": 4},
    "dct-threshold": {"window": 15, "refresh": 4},
}


def test_every_registered_method_has_a_tiny_configuration():
    assert sorted(available_methods()) == sorted(TINY)


def _fit(name: str, split, seed: int):
    method_cls = get_method(name)
    method = method_cls(method_cls.make_config(TINY[name]))
    train, val = split.train[:1], split.val[:1]
    if method_cls.task == "segment":
        train, val = ([AnnotatedSample(s, 5) for s in part] for part in (train, val))
    if method.supervision in SEALED_SUPERVISION:
        train, val = seal(train), seal(val)
    method.fit(train, val, seed=seed, context=FitContext(split="100proj"))
    return method


@pytest.fixture(scope="module")
def split(tiny_v2):
    return tiny_v2.split("100proj")


@pytest.fixture(scope="module")
def frames_split(tmp_path_factory):
    """dct-spots@1.0 tiny's frames: the split of the DCT methods (task ``dct``)."""
    from aiax_bench.data.loader import load

    return load("dct-spots@1.0", profile="tiny", root=tmp_path_factory.mktemp("dct-data")).split("frames")


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("name", sorted(TINY))
def test_method_contract(name, request, tmp_path):
    # Requested here, not as an argument: a DCT method's run builds no tomography dataset.
    split = request.getfixturevalue("frames_split" if get_method(name).task == "dct" else "split")
    method = _fit(name, split, seed=0)
    sample = seal(split.test[:1])[0]
    prediction = method.predict(sample)
    assert isinstance(prediction, np.ndarray) and prediction.shape == sample.shape
    if method.task == "segment":
        assert prediction.dtype == np.uint8 and prediction.max() < len(split.test[0].meta["phases"])
    elif method.task == "dct":
        assert np.issubdtype(prediction.dtype, np.integer) and prediction.min() >= 0
    else:
        assert prediction.dtype == np.float32 and np.isfinite(prediction).all()
    assert method.supervision in ("reference", "truth", "self", "none")

    # Same seed, same bits (one torch thread; the harness seeds everything the same way).
    np.testing.assert_array_equal(_fit(name, split, seed=0).predict(sample), prediction)

    if method.trainable:
        assert method.parameter_count() > 0
        method.save(tmp_path / "checkpoint")
        restored = type(method).load(tmp_path / "checkpoint")
        np.testing.assert_array_equal(restored.predict(sample), prediction)
        assert method.fit_summary()["training"]["checkpoint"] == "trained"


def test_fit_context_is_typed_and_refuses_unknown_keys(tmp_path):
    ctx = FitContext.of({"split": "100proj", "checkpoint_root": str(tmp_path)})
    assert ctx.checkpoint_root == tmp_path and ctx.reuse and ctx.resume
    assert FitContext.of(None) == FitContext() and FitContext.of(ctx) is ctx
    with pytest.raises(InputError, match=r"fit context has unknown key\(s\) \['checkpoint_dir'\]"):
        FitContext.of({"checkpoint_dir": tmp_path})


def test_every_sample_view_is_sample_like(split):
    from aiax_bench.data.sample import SampleLike

    stored = split.test[0]
    views = [stored, seal([stored])[0], AnnotatedSample(stored, 5)]
    assert all(isinstance(view, SampleLike) for view in views)
    assert not isinstance(np.zeros(3), SampleLike)
