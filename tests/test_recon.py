"""Projector, FBP and iterative reconstructions, checked against astra-toolbox where it applies.

Convention mapping to astra-toolbox (2D ``parallel`` geometry, ``linear`` projector,
``create_vol_geom(N, N)``, ``create_proj_geom('parallel', det_spacing, D, angles)``):
astra puts image row 0 at the top (its ``y`` axis points up, ours points down
with the row index), so for the same array and the same detector indexing,

    ours(angles) == astra(-angles)

(equivalently ``astra(angles)`` of the array flipped upside down). Detector pixel
``d`` sits at ``(d - (D-1)/2) * det_spacing`` in both, and both FBPs scale by
``pi / n_angles`` with astra's default zero padding, so the values agree to
float32 rounding, far inside the 1 % the tests ask for.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from astra_reference import astra_fbp as _astra_fbp
from astra_reference import astra_forward as _astra_forward

from aiax_bench.errors import InputError
from aiax_bench.recon import (
    FILTERS,
    ParallelBeamProjector,
    cgls,
    fbp,
    filter_sinogram,
    operator_nbytes,
    sirt,
    tv_reconstruction,
)
from aiax_bench.recon.iterative import _grad, _grad_adjoint

# The module, not the function of the same name that aiax_bench.recon exports.
fbp_module = importlib.import_module("aiax_bench.recon.fbp")
projector_module = importlib.import_module("aiax_bench.recon.projector")

N = 64
N_ANGLES = 90


def _rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


def _angles(n_angles: int = N_ANGLES, span: float = np.pi) -> np.ndarray:
    return np.linspace(0.0, span, n_angles, endpoint=False)


def _phantom(n: int = N, n_slices: int | None = None, seed: int = 0) -> np.ndarray:
    """A disc with an off-centre bar and a little texture, attenuation ~0.02 /voxel."""
    yy, xx = np.mgrid[:n, :n]
    c = (n - 1) / 2
    disc = (yy - c) ** 2 + (xx - c) ** 2 < (0.4 * n) ** 2
    img = np.where(disc, 0.02 + 0.002 * np.random.default_rng(seed).random((n, n)), 0.0)
    img[n // 4 : n // 3, n // 3 : n // 2 + 5] = 0.05  # asymmetric: catches flips and rotations
    img = img.astype(np.float32)
    return img if n_slices is None else np.repeat(img[None], n_slices, axis=0)


@pytest.fixture(scope="module")
def projector() -> ParallelBeamProjector:
    return ParallelBeamProjector(N, _angles(), device="cpu")


@pytest.fixture(scope="module")
def astra():
    return pytest.importorskip("astra")



# (slice size, detector width, detector spacing, number of angles, angular span)
GEOMETRIES = [
    (64, 64, 1.0, 90, np.pi),
    (65, 65, 1.0, 60, np.pi),  # odd size: centre on a voxel
    (64, 96, 1.0, 90, np.pi),  # wider detector
    (64, 48, 1.5, 90, np.pi),  # coarser detector pixels
    (96, 96, 1.0, 120, 2 * np.pi),  # full turn
]


@pytest.mark.parametrize(("n", "n_det", "spacing", "n_angles", "span"), GEOMETRIES)
def test_forward_matches_astra(astra, n, n_det, spacing, n_angles, span):
    angles = _angles(n_angles, span)
    image = _phantom(n)
    ours = ParallelBeamProjector(n, angles, n_detector=n_det, det_spacing=spacing, device="cpu").forward(image)
    reference = _astra_forward(astra, image, angles, n_det, spacing)
    assert ours.shape == reference.shape == (n_angles, n_det)
    assert _rel(ours, reference) < 0.01


def test_astra_mapping_alternatives(astra):
    # astra's +theta on the same array is a different projection; on the array
    # flipped upside down it is ours (the helper negates the angles it is given).
    angles = _angles()
    image = _phantom()
    ours = ParallelBeamProjector(N, angles, device="cpu").forward(image)
    plus_same = _astra_forward(astra, image, -angles, N)
    plus_flipped = _astra_forward(astra, image[::-1], -angles, N)
    assert _rel(ours, plus_flipped) < 0.01
    assert _rel(ours, plus_same) > 0.1


@pytest.mark.parametrize(("n", "n_det", "spacing", "n_angles", "span"), GEOMETRIES)
def test_fbp_matches_astra(astra, n, n_det, spacing, n_angles, span):
    angles = _angles(n_angles, span)
    proj = ParallelBeamProjector(n, angles, n_detector=n_det, det_spacing=spacing, device="cpu")
    sino = _astra_forward(astra, _phantom(n), angles, n_det, spacing)
    ours = fbp(sino, projector=proj, filter="ramp")
    reference = _astra_fbp(astra, sino, angles, n, spacing)
    assert _rel(ours, reference) < 0.01


def _fov(n: int = N) -> np.ndarray:
    """The disc every ray sees at every angle, where FBP is valid (corners are not)."""
    yy, xx = np.mgrid[:n, :n]
    c = (n - 1) / 2
    return (yy - c) ** 2 + (xx - c) ** 2 < (n / 2 - 1) ** 2


def test_fbp_recovers_attenuation(projector):
    truth = _phantom()
    recon = fbp(projector.forward(truth), projector=projector)
    fov = _fov()
    assert _rel(recon[fov], truth[fov]) < 0.15
    assert abs(recon[fov].mean() - truth[fov].mean()) < 1e-3 * truth[fov].mean()


def test_fbp_builds_its_own_projector_from_angles():
    angles = _angles(45)
    sino = ParallelBeamProjector(N, angles, device="cpu").forward(_phantom())
    a = fbp(sino, angles)
    b = fbp(sino, projector=ParallelBeamProjector(N, angles, device="cpu"))
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("max_bytes", [None, operator_nbytes(N, 30, 80)])
def test_adjoint(max_bytes):
    kwargs = {} if max_bytes is None else {"max_bytes": max_bytes}
    proj = ParallelBeamProjector(N, _angles(), n_detector=80, device="cpu", **kwargs)
    assert proj.stored == (max_bytes is None)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, N, N)).astype(np.float32)
    y = rng.standard_normal((3, N_ANGLES, 80)).astype(np.float32)
    lhs = np.vdot(proj.forward(x).astype(np.float64), y)
    rhs = np.vdot(x, proj.backward(y).astype(np.float64))
    scale = np.linalg.norm(proj.forward(x)) * np.linalg.norm(y)
    assert abs(lhs - rhs) <= 1e-6 * scale


def test_blockwise_operator_equals_stored(projector):
    streamed = ParallelBeamProjector(N, _angles(), device="cpu", max_bytes=operator_nbytes(N, 20))
    assert not streamed.stored and streamed.nbytes == 0 and len(streamed._blocks) > 1
    rng = np.random.default_rng(2)
    x = rng.random((2, N, N), dtype=np.float32)
    y = rng.random((2, N_ANGLES, N), dtype=np.float32)
    np.testing.assert_allclose(streamed.forward(x), projector.forward(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(streamed.backward(y), projector.backward(y), rtol=1e-5, atol=1e-4)


def test_backward_only_operator_keeps_half_and_the_same_bytes(projector):
    """The transposed matrix alone: half the memory, the same back projection bit for bit, the same
    forward projection (its blocks built at the call) to float32 rounding."""
    backward_only = ParallelBeamProjector(N, _angles(), device="cpu", matrices="backward")
    y = np.random.default_rng(4).random((3, N_ANGLES, N), dtype=np.float32)
    np.testing.assert_array_equal(backward_only.backward(y), projector.backward(y))
    np.testing.assert_array_equal(fbp(y, projector=backward_only), fbp(y, projector=projector))
    assert backward_only.stored and 0 < backward_only.nbytes < 0.55 * projector.nbytes
    assert backward_only.nbytes <= operator_nbytes(N, N_ANGLES, matrices="backward")
    x = _phantom(N)
    np.testing.assert_allclose(backward_only.forward(x), projector.forward(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="matrices"):
        ParallelBeamProjector(N, _angles(), device="cpu", matrices="transposed")


def test_forward_only_operator_keeps_half_and_the_same_bytes(projector):
    """The forward matrix alone (simulated scans): half the memory, the same forward projection bit for bit,
    the same back projection (its blocks built at the call) to float32 rounding."""
    forward_only = ParallelBeamProjector(N, _angles(), device="cpu", matrices="forward")
    assert forward_only.stored and all(b.matrix_t is None for b in forward_only._blocks)
    assert 0 < forward_only.nbytes < 0.55 * projector.nbytes
    assert forward_only.nbytes <= operator_nbytes(N, N_ANGLES, matrices="forward")
    x = np.stack([_phantom(N), _phantom(N)[::-1]])
    np.testing.assert_array_equal(forward_only.forward(x), projector.forward(x))
    y = np.random.default_rng(5).random((2, N_ANGLES, N), dtype=np.float32)
    np.testing.assert_allclose(forward_only.backward(y), projector.backward(y), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(("n_det", "spacing"), [(N, 1.0), (N + 9, 0.7), (N - 8, 1.3)])
def test_pixel_driven_back_projection_is_the_operator_transpose(n_det, spacing):
    """Without the matrix, pixel by pixel: the same Joseph transpose, to float32 rounding."""
    from aiax_bench.recon.fbp import backproject_pixel_driven

    angles = np.linspace(0, np.pi, 37, endpoint=False) + 0.01
    stored = ParallelBeamProjector(N, angles, n_detector=n_det, det_spacing=spacing, device="cpu")
    y = torch.as_tensor(np.random.default_rng(5).random((3, angles.size, n_det), dtype=np.float32))
    expected = stored.backward(y).numpy()
    got = backproject_pixel_driven(y, angles, N, det_spacing=spacing).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_fbp_without_a_stored_operator_back_projects_pixel_by_pixel(projector):
    """An operator too large to keep is not rebuilt at each call: the same FBP, to float32 rounding,
    and the same bytes whatever the number of threads."""
    streamed = ParallelBeamProjector(N, _angles(), device="cpu", max_bytes=operator_nbytes(N, 20))
    y = np.random.default_rng(3).random((4, N_ANGLES, N), dtype=np.float32)
    expected = fbp(y, projector=projector)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fbp(y, projector=streamed, backprojector="pixel")
        torch.set_num_threads(3)
        np.testing.assert_array_equal(fbp(y, projector=streamed, backprojector="pixel"), one)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(one, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_fourier_back_projection_is_fbp_with_band_limited_interpolation(projector):
    """The non-uniform FFT back projection (the default where the operator is not kept) against the
    operator's: within 2 % RMS of the image's maximum, as close to the phantom, the same bytes at any
    thread count."""
    x = _phantom(N)
    y = projector.forward(x)
    streamed = ParallelBeamProjector(N, _angles(), device="cpu", max_bytes=operator_nbytes(N, 20))
    matrix = fbp(y, projector=projector)
    fourier = fbp(y, projector=streamed)  # auto: not stored, so Fourier
    np.testing.assert_array_equal(fourier, fbp(y, projector=projector, backprojector="fourier"))
    inside = np.hypot(*(np.mgrid[:N, :N] - (N - 1) / 2)) < N / 2 - 4
    scale = np.abs(matrix).max()
    assert np.sqrt(np.mean((fourier - matrix)[inside] ** 2)) < 0.02 * scale
    error = {name: np.sqrt(np.mean((v - x)[inside] ** 2)) for name, v in (("matrix", matrix), ("fourier", fourier))}
    assert error["fourier"] < 1.1 * error["matrix"]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        np.testing.assert_array_equal(fbp(y, projector=streamed), fourier)
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(InputError, match="backprojector"):
        fbp(y, projector=projector, backprojector="gridrec")


def test_fourier_back_projection_in_threads_gives_the_same_bytes(monkeypatch):
    """Angle groups (a rule of the geometry) and slice groups run in threads: the bytes do not depend on the
    number of threads nor on the slices reconstructed together; more groups change the sum's rounding only."""
    import sys

    from aiax_bench.recon.fbp import backproject_fourier

    module = sys.modules[backproject_fourier.__module__]
    rng = np.random.default_rng(3)
    filtered = torch.as_tensor(rng.normal(size=(3, 90, 48)).astype(np.float32))
    angles = np.linspace(0, np.pi, 90, endpoint=False)
    one_group = backproject_fourier(filtered, angles, 48, workers=1)
    monkeypatch.setattr(module, "FOURIER_POINTS_PER_GROUP", 90 * 96 // 3)
    serial = backproject_fourier(filtered, angles, 48, workers=1)
    assert torch.equal(backproject_fourier(filtered, angles, 48, workers=4), serial)
    alone = torch.stack([backproject_fourier(filtered[i:i + 1], angles, 48, workers=2)[0] for i in range(3)])
    assert torch.equal(alone, serial)
    torch.testing.assert_close(serial, one_group, rtol=0, atol=1e-5 * float(one_group.abs().max()))


def test_operator_larger_than_one_angle_limit_still_works():
    n, angles = 16, _angles(7)
    with pytest.warns(RuntimeWarning, match="one angle at a time"):
        tiny = ParallelBeamProjector(n, angles, device="cpu", max_bytes=1000)
    full = ParallelBeamProjector(n, angles, device="cpu")
    x = _phantom(n)
    np.testing.assert_allclose(tiny.forward(x), full.forward(x), rtol=1e-5, atol=1e-6)


def test_threads_do_not_change_a_bit(projector):
    rng = np.random.default_rng(7)
    x = rng.random((20, N, N), dtype=np.float32)
    y = rng.random((20, N_ANGLES, N), dtype=np.float32)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        reference = projector.forward(x), projector.backward(y), fbp(y, projector=projector)
        for n_threads in (2, 3, 4):  # more threads than cores, and a count that shares out unevenly
            torch.set_num_threads(n_threads)
            np.testing.assert_array_equal(projector.forward(x), reference[0])
            np.testing.assert_array_equal(projector.backward(y), reference[1])
            np.testing.assert_array_equal(fbp(y, projector=projector), reference[2])
    finally:
        torch.set_num_threads(threads)


def test_back_projection_ranges_cover_every_pixel_once():
    for n_rows, parts in [(4096, 16), (10, 16), (1, 16), (17, 4)]:
        ranges = projector_module._row_ranges(n_rows, parts)
        assert len(ranges) == min(parts, n_rows) and all(start < stop for start, stop in ranges)
        bounds = [start for start, _ in ranges] + [ranges[-1][1]]
        assert bounds[0] == 0 and bounds[-1] == n_rows
        assert all(stop == bounds[k + 1] for k, (_, stop) in enumerate(ranges))
    # Fewer pixels than ranges (a 3 x 3 slice) still back-projects, and is the adjoint.
    small = ParallelBeamProjector(3, _angles(40), device="cpu")
    rng = np.random.default_rng(4)
    x, y = rng.random((3, 3), dtype=np.float32), rng.random((40, 3), dtype=np.float32)
    assert np.vdot(small.forward(x), y) == pytest.approx(np.vdot(x, small.backward(y)), rel=1e-5)


def test_slice_chunks_do_not_change_results(projector, monkeypatch):
    rng = np.random.default_rng(7)
    x = rng.random((20, N, N), dtype=np.float32)
    y = rng.random((20, N_ANGLES, N), dtype=np.float32)
    reference = projector.forward(x), projector.backward(y)
    monkeypatch.setattr(projector_module, "_CPU_CACHE_BYTES", 1)  # 8 slices per product: 3 chunks
    # Equal to float32 rounding only: the number of slices per sparse product is the sparse
    # library's business, and may change its rounding (it is fixed for a given input shape).
    np.testing.assert_allclose(projector.forward(x), reference[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(projector.backward(y), reference[1], rtol=1e-5, atol=1e-5)


def test_operator_memory(projector):
    assert 0 < projector.nbytes <= operator_nbytes(N, N_ANGLES)
    assert projector.shape == (N_ANGLES * N, N * N)


def test_numpy_and_tensor_io(projector):
    x = _phantom(n_slices=2)
    out = projector.forward(x)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (2, N_ANGLES, N)
    out_t = projector.forward(torch.from_numpy(x))
    assert isinstance(out_t, torch.Tensor) and out_t.device == projector.device
    np.testing.assert_allclose(out_t.numpy(), out, rtol=1e-6)
    # Any leading shape, one slice included.
    assert projector.backward(out[0]).shape == (N, N)
    assert projector.backward(out[None]).shape == (1, 2, N, N)


def test_filters_run_and_hann_is_smoothest(projector):
    rng = np.random.default_rng(3)
    noise = rng.standard_normal((4, N_ANGLES, N)).astype(np.float32)
    truth = _phantom()
    sino = projector.forward(truth)
    fov = _fov()
    noise_level = {}
    for name in FILTERS:
        recon = fbp(sino, projector=projector, filter=name)
        assert recon.shape == (N, N) and np.all(np.isfinite(recon))
        # Every window keeps the ramp's DC response: the mean attenuation survives.
        assert abs(recon[fov].mean() - truth[fov].mean()) < 1e-3 * truth[fov].mean()
        assert _rel(recon[fov], truth[fov]) < 0.2
        noise_level[name] = float(fbp(noise, projector=projector, filter=name).std())
    assert noise_level["hann"] < noise_level["cosine"] < noise_level["shepp-logan"] < noise_level["ramp"]
    assert noise_level["hann"] < 0.7 * noise_level["ramp"]


@pytest.mark.parametrize("padding", [True, False])
def test_filter_paths_agree_with_a_float64_convolution(monkeypatch, padding):
    sino = torch.rand(2, 5, 33, generator=torch.Generator().manual_seed(0))
    d = sino.shape[-1]
    n_fft = 128 if padding else d
    idx = np.arange(d)
    for name in FILTERS:
        kernel = np.fft.irfft(fbp_module._response(n_fft, name), n=n_fft)
        expected = sino.double().numpy() @ kernel[(idx[None, :] - idx[:, None]) % n_fft]
        on_cpu = filter_sinogram(sino, filter=name, padding=padding)  # pocketfft, the reproducible path
        # torch's paths, taken on GPUs and for tensors that keep gradients: matrix product, then FFT.
        by_matrix = filter_sinogram(sino.clone().requires_grad_(), filter=name, padding=padding).detach()
        monkeypatch.setattr(fbp_module, "_DIRECT_MAX_WIDTH", 0)
        by_fft = filter_sinogram(sino.clone().requires_grad_(), filter=name, padding=padding).detach()
        monkeypatch.undo()
        for out in (on_cpu, by_matrix, by_fft):
            assert out.shape == sino.shape and out.dtype == torch.float32
            np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)


def _non_increasing(residuals: np.ndarray) -> bool:
    # float32 rounding may wiggle the last digits once converged.
    return bool(np.all(np.diff(residuals, axis=0) <= 1e-5 * residuals[:-1]))


def test_sirt_reduces_residual_monotonically(projector):
    truth = _phantom(n_slices=2)
    sino = projector.forward(truth)
    seen = []
    recon, residuals = sirt(sino, projector=projector, n_iter=40, return_residuals=True,
                            callback=lambda k, x, r: seen.append(k))
    assert residuals.shape == (40, 2) and seen == list(range(40))
    assert _non_increasing(residuals)
    assert residuals[-1, 0] < 0.1 * residuals[0, 0]
    assert _rel(recon, truth) < 0.15


def test_sirt_nonneg_and_early_stop(projector):
    sino = projector.forward(_phantom()) + 0.05 * np.random.default_rng(4).standard_normal(
        (N_ANGLES, N)).astype(np.float32)
    recon, residuals = sirt(sino, projector=projector, n_iter=30, nonneg=True, return_residuals=True,
                            callback=lambda k, x, r: k == 9)
    assert recon.min() >= 0.0
    assert residuals.shape == (10,)
    assert _non_increasing(residuals)


def test_cgls_reduces_residual_monotonically(projector):
    truth = _phantom(n_slices=2)
    sino = projector.forward(truth)
    recon, residuals = cgls(sino, projector=projector, n_iter=25, return_residuals=True)
    assert residuals.shape == (25, 2)
    assert _non_increasing(residuals)
    assert residuals[-1, 0] < 0.02 * residuals[0, 0]
    assert _rel(recon, truth) < 0.1


def test_cgls_is_per_slice_and_keeps_x0(projector):
    truth = _phantom(n_slices=2)
    sino = projector.forward(truth)
    sino[1] = 0.0  # an all-zero slice must stay zero, not divide by zero
    x0 = np.zeros((2, N, N), dtype=np.float32)
    recon = cgls(torch.from_numpy(sino), projector=projector, n_iter=5, x0=x0)
    assert isinstance(recon, torch.Tensor)
    assert torch.all(recon[1] == 0) and torch.isfinite(recon).all()
    assert np.all(x0 == 0)  # not modified in place
    single = cgls(sino[0], projector=projector, n_iter=5)
    np.testing.assert_allclose(single, recon[0].numpy(), rtol=1e-3, atol=1e-5)


def test_tv_beats_fbp_on_noisy_data(projector):
    truth = _phantom()
    rng = np.random.default_rng(5)
    sino = projector.forward(truth) + 0.05 * rng.standard_normal((N_ANGLES, N)).astype(np.float32)
    recon, residuals = tv_reconstruction(sino, projector=projector, weight=0.3, n_iter=150,
                                         nonneg=True, return_residuals=True)
    assert residuals.shape == (150,) and np.all(np.isfinite(residuals))
    assert recon.min() >= 0.0
    best_fbp = min(_rel(fbp(sino, projector=projector, filter=f), truth) for f in FILTERS)
    assert _rel(recon, truth) < 0.7 * best_fbp


def test_tv_without_weight_fits_the_data(projector):
    truth = _phantom()
    sino = projector.forward(truth)
    _, residuals = tv_reconstruction(sino, projector=projector, weight=0.0, n_iter=60, return_residuals=True)
    assert residuals[-1] < 0.1 * residuals[0]


def test_gradient_adjoint():
    rng = np.random.default_rng(6)
    x = torch.from_numpy(rng.standard_normal((2, 7, 9)))
    g = torch.from_numpy(rng.standard_normal((2, 2, 7, 9)))
    assert torch.isclose(torch.sum(_grad(x) * g), torch.sum(x * _grad_adjoint(g)))


# --- bad parameters: clear InputError, before any projector is built or applied ---------------


@pytest.fixture
def no_heavy_work(monkeypatch):
    """Make building or applying a projector fail the test."""

    def forbidden(*args, **kwargs):
        raise AssertionError("heavy work started before the parameters were checked")

    monkeypatch.setattr(fbp_module, "ParallelBeamProjector", forbidden)
    monkeypatch.setattr(ParallelBeamProjector, "forward", forbidden)
    monkeypatch.setattr(ParallelBeamProjector, "backward", forbidden)
    monkeypatch.setattr(projector_module, "_build_scipy", forbidden)


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"n_pixels": 64, "angles": []}, "angles", "zero projection angles"),
        ({"n_pixels": 64, "angles": [0.0, np.nan]}, "angles", "finite"),
        ({"n_pixels": 0, "angles": [0.0]}, "n_pixels", "positive integer"),
        ({"n_pixels": -8, "angles": [0.0]}, "n_pixels", "positive integer"),
        ({"n_pixels": 64.5, "angles": [0.0]}, "n_pixels", "positive integer"),
        ({"n_pixels": 64, "angles": [0.0], "n_detector": 0}, "n_detector", "positive integer"),
        ({"n_pixels": 64, "angles": [0.0], "det_spacing": 0.0}, "det_spacing", "positive"),
        ({"n_pixels": 64, "angles": [0.0], "det_spacing": -1.0}, "det_spacing", "positive"),
        ({"n_pixels": 64, "angles": [0.0], "max_bytes": 0}, "max_bytes", "positive integer"),
    ],
)
def test_projector_rejects_bad_parameters(no_heavy_work, kwargs, field, words):
    with pytest.raises(InputError, match=words) as info:
        ParallelBeamProjector(device="cpu", **kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(field)


def test_fbp_rejects_bad_parameters(no_heavy_work, projector):
    sino = np.zeros((N_ANGLES, N), dtype=np.float32)
    with pytest.raises(InputError, match="expected one of") as info:
        fbp(sino, _angles(), filter="ram-lak")
    assert info.value.field == "filter"
    with pytest.raises(InputError, match="angles"):
        fbp(sino)
    with pytest.raises(InputError, match=r"\(A, D\) or \(Z, A, D\)"):
        fbp(np.zeros(N), _angles())
    with pytest.raises(InputError, match="one sinogram row per angle"):
        fbp(np.zeros((N_ANGLES + 1, N)), _angles())
    with pytest.raises(InputError, match=f"expected \\({N_ANGLES}, {N}\\)"):
        fbp(np.zeros((N_ANGLES, N + 1)), projector=projector)
    with pytest.raises(InputError, match="batch"):
        fbp(sino, projector=projector, batch=0)
    with pytest.raises(InputError, match="n_pixels"):
        fbp(sino, _angles(), n_pixels=-1)
    with pytest.raises(InputError, match="expected one of"):
        filter_sinogram(torch.zeros(2, 8), filter="lanczos")


@pytest.mark.parametrize("method", [sirt, cgls, tv_reconstruction])
def test_iterative_rejects_bad_parameters(no_heavy_work, projector, method):
    sino = np.zeros((N_ANGLES, N), dtype=np.float32)
    extra = {"weight": 0.1} if method is tv_reconstruction else {}
    with pytest.raises(InputError, match="n_iter"):
        method(sino, projector=projector, n_iter=0, **extra)
    with pytest.raises(InputError, match="sinogram"):
        method(np.zeros((N_ANGLES, N - 1)), projector=projector, n_iter=3, **extra)
    with pytest.raises(InputError, match="x0"):
        method(sino, projector=projector, n_iter=3, x0=np.zeros((N, N + 1)), **extra)
    with pytest.raises(InputError, match="projector"):
        method(sino, projector="astra", n_iter=3, **extra)
    with pytest.raises(InputError, match="callback"):
        method(sino, projector=projector, n_iter=3, callback=42, **extra)
    if method is tv_reconstruction:
        for bad in (-1.0, float("nan")):
            with pytest.raises(InputError, match="weight"):
                method(sino, projector=projector, n_iter=3, weight=bad)


def test_lazy_operator_is_built_at_first_use_and_gives_the_same_bytes(projector):
    lazy = ParallelBeamProjector(N, _angles(), device="cpu", lazy=True)
    assert lazy.stored and lazy.nbytes == 0
    image = _phantom()
    assert lazy.forward(image).tobytes() == projector.forward(image).tobytes()
    assert lazy.nbytes == projector.nbytes


def test_fbp_without_a_projector_builds_only_what_its_back_projection_needs(projector, monkeypatch):
    """``fbp(sinogram, angles)`` builds its own projector with the transposed matrix alone, at first use: the
    same bytes as through a prebuilt operator with both matrices, and no matrix at all for a Fourier back
    projection."""
    from aiax_bench.recon.projector import SparseProjector

    y = projector.forward(_phantom(N))
    np.testing.assert_array_equal(fbp(y, _angles()), fbp(y, projector=projector))
    built, store_all = [], SparseProjector._store_all
    monkeypatch.setattr(SparseProjector, "_store_all", lambda self: (built.append(self.matrices), store_all(self)))
    fbp(y, _angles(), backprojector="fourier")
    assert built == []
    fbp(y, _angles())
    assert built == ["backward"]
