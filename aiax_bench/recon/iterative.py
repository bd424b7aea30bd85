"""Iterative reconstruction: SIRT, CGLS and total-variation regularised least squares.

All three work on a whole stack of slices at once (each slice is its own
problem, the projector applies to all of them in one product), in float32 on
the projector's device. SIRT and CGLS also take a cone-beam projector, whose
rays cross slices: the volume is then one problem. They take line integrals (dimensionless) and return
attenuation per voxel (1/voxel), like :func:`~aiax_bench.recon.fbp`.

Each one can report, per iteration, the residual norm ``||A x_k - b||_2`` of
every slice: ``return_residuals=True`` returns them with the volume, and a
``callback(iteration, x, residual)`` sees them as they come (returning ``True``
from it stops early).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from aiax_bench.errors import InputError
from aiax_bench.recon.projector import SparseProjector, _positive_int

if TYPE_CHECKING:
    from aiax_bench.recon.cone import ConeBeamProjector

__all__ = ["cgls", "sirt", "tv_reconstruction"]

#: ``callback(iteration, x, residual) -> bool | None``: ``x`` is the current
#: iterate (a tensor on the projector's device, not to be modified), ``residual``
#: the per-slice norms ``||A x - b||``; returning ``True`` stops the iterations.
Callback = Callable[[int, torch.Tensor, torch.Tensor], "bool | None"]


class _Problem:
    """Checked inputs of an iterative reconstruction, as tensors on the projector's device."""

    def __init__(self, sinogram, projector, n_iter, x0, callback, *, whole_volume: bool = True) -> None:
        from aiax_bench.recon.cone import ConeBeamProjector

        #: A cone-beam projector couples every slice: the volume is one problem, not a stack of slices.
        self.whole = isinstance(projector, ConeBeamProjector)
        if self.whole and not whole_volume:
            raise InputError("projector", "is a ConeBeamProjector", "a ParallelBeamProjector or a FanBeamProjector "
                             "(this reconstruction works slice by slice)")
        if not (self.whole or isinstance(projector, SparseProjector)):
            raise InputError("projector", f"is {type(projector).__name__}",
                             "pass a ParallelBeamProjector, a FanBeamProjector or a ConeBeamProjector")
        self.n_iter = _positive_int(n_iter, "n_iter", "number of iterations")
        if callback is not None and not callable(callback):
            raise InputError("callback", f"is {type(callback).__name__}",
                             "pass a function callback(iteration, x, residual) or None")
        self.projector, self.callback = projector, callback
        self.as_numpy = not isinstance(sinogram, torch.Tensor)
        b = torch.as_tensor(np.asarray(sinogram) if self.as_numpy else sinogram, dtype=torch.float32)
        if self.whole:
            if tuple(b.shape) != projector.data_shape:
                raise InputError("projections", f"have shape {tuple(b.shape)}",
                                 f"expected {projector.data_shape} (angles, detector rows, columns)")
            self.vol_shape = projector.volume_shape
        else:
            a, d, n = projector.angles.size, projector.n_detector, projector.n_pixels
            if b.ndim < 2 or tuple(b.shape[-2:]) != (a, d):
                raise InputError("sinogram", f"has shape {tuple(b.shape)}",
                                 f"expected ({a}, {d}) or (Z, {a}, {d}) for {a} angles and {d} detector pixels")
            self.vol_shape = (*b.shape[:-2], n, n)
        self.b = b.to(projector.device)
        if x0 is None:
            self.x = torch.zeros(self.vol_shape, dtype=torch.float32, device=projector.device)
        else:
            x0 = torch.as_tensor(np.asarray(x0) if not isinstance(x0, torch.Tensor) else x0,
                                 dtype=torch.float32)
            if tuple(x0.shape) != self.vol_shape:
                raise InputError("x0", f"has shape {tuple(x0.shape)}", f"expected {self.vol_shape}")
            # A copy: the iterations update x in place and must not touch the caller's array.
            self.x = x0.to(projector.device, copy=True)
        self.residuals: list[torch.Tensor] = []

    def sumsq(self, t: torch.Tensor) -> torch.Tensor:
        """Sum of squares per problem (per slice, or of the whole volume), in float64: sums over 10^5 terms
        lose digits in float32."""
        t = t.double().square()
        return t.sum() if self.whole else t.sum(dim=(-2, -1), keepdim=True)

    def report(self, iteration: int, x: torch.Tensor, residual: torch.Tensor) -> bool:
        """Record the residual norms; True when the callback asks to stop."""
        norms = torch.linalg.vector_norm(residual) if self.whole else torch.linalg.vector_norm(residual, dim=(-2, -1))
        self.residuals.append(norms)
        return bool(self.callback is not None and self.callback(iteration, x, norms))

    def result(self, x: torch.Tensor, return_residuals: bool):
        volume = x.cpu().numpy() if self.as_numpy else x
        if not return_residuals:
            return volume
        residuals = torch.stack(self.residuals).cpu().numpy()
        return volume, residuals


def _row_col_sums(problem: _Problem) -> tuple[torch.Tensor, torch.Tensor]:
    """``A 1`` (each ray's length through the volume) and ``A^T 1`` (per voxel): of one slice, or of the volume."""
    projector, device = problem.projector, problem.projector.device
    if problem.whole:
        return (projector.forward(torch.ones(projector.volume_shape, device=device)),
                projector.backward(torch.ones(projector.data_shape, device=device)))
    n, a, d = projector.n_pixels, projector.angles.size, projector.n_detector
    rows = projector.forward(torch.ones((1, n, n), device=device))[0]
    cols = projector.backward(torch.ones((1, a, d), device=device))[0]
    return rows, cols


def _inverse(t: torch.Tensor) -> torch.Tensor:
    # Rays that miss the slice (and voxels no ray sees) get weight 0, not infinity.
    return torch.where(t > 0, 1.0 / t.clamp(min=1e-12), torch.zeros_like(t))


def sirt(
    sinogram,
    *,
    projector: SparseProjector | ConeBeamProjector,
    n_iter: int,
    x0=None,
    nonneg: bool = False,
    callback: Callback | None = None,
    return_residuals: bool = False,
):
    """Simultaneous iterative reconstruction technique (SIRT).

    Iterates ``x <- x + C A^T R (b - A x)`` with ``R`` and ``C`` the inverse
    row and column sums of the system matrix ``A`` (astra-toolbox's SIRT).

    Parameters
    ----------
    sinogram : array_like or torch.Tensor
        Line integrals (dimensionless), ``(A, D)`` or ``(Z, A, D)``; with a cone-beam projector,
        its ``(A, R, D)`` projections.
    projector : SparseProjector or ConeBeamProjector
        The system matrix ``A``; the work runs on its device. A cone-beam projector makes the
        whole volume one problem (its residual norm is one number per iteration).
    n_iter : int
        Number of iterations (one forward and one back projection each).
    x0 : array_like or torch.Tensor, optional
        Starting volume ``(N, N)`` or ``(Z, N, N)`` in 1/voxel; zeros by default.
    nonneg : bool
        Clip negative attenuation to zero after each update.
    callback : callable, optional
        ``callback(iteration, x, residual)`` after each iteration, see the module
        notes; returning ``True`` stops.
    return_residuals : bool
        Also return the residual norms.

    Returns
    -------
    volume : numpy.ndarray or torch.Tensor
        Attenuation per voxel (1/voxel), ``(N, N)`` or ``(Z, N, N)``; numpy for
        numpy input, else a tensor on the projector's device.
    residuals : numpy.ndarray
        Only with ``return_residuals``: ``||A x_k - b||_2`` after iteration
        ``k``, shape ``(iterations,)`` or ``(iterations, Z)``.

    Notes
    -----
    SIRT decreases the ``R``-weighted residual ``||A x - b||_R`` at every
    iteration (with or without ``nonneg``); the plain residual reported
    decreases too in practice.
    """
    problem = _Problem(sinogram, projector, n_iter, x0, callback)
    rows, cols = _row_col_sums(problem)
    inv_rows, inv_cols = _inverse(rows), _inverse(cols)
    x, b = problem.x, problem.b
    if nonneg:
        x.clamp_(min=0.0)
    residual = projector.forward(x) - b
    for k in range(problem.n_iter):
        x.sub_(projector.backward(residual.mul_(inv_rows)).mul_(inv_cols))
        if nonneg:
            x.clamp_(min=0.0)
        residual = projector.forward(x) - b
        if problem.report(k, x, residual):
            break
    return problem.result(x, return_residuals)


def cgls(
    sinogram,
    *,
    projector: SparseProjector | ConeBeamProjector,
    n_iter: int,
    x0=None,
    callback: Callback | None = None,
    return_residuals: bool = False,
):
    """Conjugate gradients on the normal equations (CGLS), least squares ``min ||A x - b||``.

    Each slice runs its own CGLS (step sizes are per slice); the stack is
    only batched through the projector.

    Parameters
    ----------
    sinogram : array_like or torch.Tensor
        Line integrals (dimensionless), ``(A, D)`` or ``(Z, A, D)``; with a cone-beam projector,
        its ``(A, R, D)`` projections.
    projector : SparseProjector or ConeBeamProjector
        The system matrix ``A``; the work runs on its device. A cone-beam projector makes the
        whole volume one problem (its residual norm is one number per iteration).
    n_iter : int
        Number of iterations (one forward and one back projection each).
    x0 : array_like or torch.Tensor, optional
        Starting volume ``(N, N)`` or ``(Z, N, N)`` in 1/voxel; zeros by default.
    callback : callable, optional
        ``callback(iteration, x, residual)`` after each iteration, see the module
        notes; returning ``True`` stops.
    return_residuals : bool
        Also return the residual norms.

    Returns
    -------
    volume : numpy.ndarray or torch.Tensor
        Attenuation per voxel (1/voxel), ``(N, N)`` or ``(Z, N, N)``; numpy for
        numpy input, else a tensor on the projector's device.
    residuals : numpy.ndarray
        Only with ``return_residuals``: ``||A x_k - b||_2`` after iteration
        ``k``, shape ``(iterations,)`` or ``(iterations, Z)``; non-increasing
        in exact arithmetic. CGLS is unregularised: on noisy data, stop early.
    """
    problem = _Problem(sinogram, projector, n_iter, x0, callback)
    x, b = problem.x, problem.b
    residual = b - projector.forward(x)  # r = b - A x, updated by recursion below
    s = projector.backward(residual)
    p = s.clone()
    gamma = problem.sumsq(s)
    for k in range(problem.n_iter):
        q = projector.forward(p)
        alpha = _safe_div(gamma, problem.sumsq(q))
        x.add_(alpha * p)
        residual.sub_(alpha * q)
        s = projector.backward(residual)
        gamma_new = problem.sumsq(s)
        p = s.add_(_safe_div(gamma_new, gamma) * p)
        gamma = gamma_new
        if problem.report(k, x, residual):
            break
    return problem.result(x, return_residuals)


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    # A converged (or empty) slice has den == 0: it just stops moving.
    return torch.where(den > 0, num / den.clamp(min=1e-300), torch.zeros_like(num)).float()


def _grad(x: torch.Tensor) -> torch.Tensor:
    """Forward differences along the slice's rows and columns, ``(..., 2, N, N)``."""
    g = torch.zeros((*x.shape[:-2], 2, *x.shape[-2:]), dtype=x.dtype, device=x.device)
    g[..., 0, :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    g[..., 1, :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    return g


def _grad_adjoint(g: torch.Tensor) -> torch.Tensor:
    """The adjoint of :func:`_grad` (minus the divergence)."""
    gi, gj = g[..., 0, :-1, :], g[..., 1, :, :-1]
    out = torch.zeros((*g.shape[:-3], *g.shape[-2:]), dtype=g.dtype, device=g.device)
    out[..., :-1, :] -= gi
    out[..., 1:, :] += gi
    out[..., :, :-1] -= gj
    out[..., :, 1:] += gj
    return out


def tv_reconstruction(
    sinogram,
    *,
    projector: SparseProjector,
    weight: float,
    n_iter: int,
    x0=None,
    nonneg: bool = False,
    callback: Callback | None = None,
    return_residuals: bool = False,
):
    """Least squares with isotropic total-variation regularisation, slice by slice.

    Minimises ``0.5 ||A x - b||^2 + weight * TV(x)`` for every slice, where
    ``TV(x)`` sums the Euclidean norm of the 2D forward-difference gradient
    over the slice's voxels, with the Chambolle–Pock primal-dual algorithm
    (PDHG) and its diagonal preconditioning (Pock & Chambolle, ICCV 2011),
    which needs no estimate of ``||A||`` and converges for any ``weight``.

    Parameters
    ----------
    sinogram : array_like or torch.Tensor
        Line integrals (dimensionless), ``(A, D)`` or ``(Z, A, D)``.
    projector : SparseProjector
        The system matrix ``A``; the work runs on its device.
    weight : float
        Regularisation strength (>= 0) in units of the data term: the squared
        line-integral residual per 1/voxel of total variation. ``A^T A`` grows
        with the number of angles, so comparable smoothing needs a weight
        roughly proportional to it; 0 gives plain least squares.
    n_iter : int
        Number of iterations (one forward and one back projection each).
    x0 : array_like or torch.Tensor, optional
        Starting volume ``(N, N)`` or ``(Z, N, N)`` in 1/voxel; zeros by default.
    nonneg : bool
        Constrain the attenuation to be non-negative.
    callback : callable, optional
        ``callback(iteration, x, residual)`` after each iteration, see the module
        notes; returning ``True`` stops.
    return_residuals : bool
        Also return the residual norms.

    Returns
    -------
    volume : numpy.ndarray or torch.Tensor
        Attenuation per voxel (1/voxel), ``(N, N)`` or ``(Z, N, N)``; numpy for
        numpy input, else a tensor on the projector's device.
    residuals : numpy.ndarray
        Only with ``return_residuals``: ``||A x_k - b||_2`` after iteration
        ``k``, shape ``(iterations,)`` or ``(iterations, Z)``. It need not
        decrease monotonically: PDHG trades it against the TV term.
    """
    if (isinstance(weight, bool) or not isinstance(weight, numbers.Real)
            or not np.isfinite(weight) or weight < 0):
        raise InputError("weight", f"is {weight!r}", "use a finite TV weight >= 0")
    problem = _Problem(sinogram, projector, n_iter, x0, callback, whole_volume=False)
    x, b = problem.x, problem.b
    if nonneg:
        x.clamp_(min=0.0)
    rows, cols = _row_col_sums(problem)
    # Diagonal steps: sigma_i = 1 / sum_j |K_ij|, tau_j = 1 / sum_i |K_ij| for K = [A; grad].
    # A row of grad holds at most one +1 and one -1, a column at most four entries.
    sigma_data = _inverse(rows)
    sigma_grad = 0.5
    tau = 1.0 / (cols + 4.0)
    dual_data = torch.zeros_like(b)
    dual_grad = torch.zeros((*x.shape[:-2], 2, *x.shape[-2:]), dtype=x.dtype, device=x.device)
    x_bar = x.clone()
    ax = projector.forward(x)
    ax_bar = ax.clone()
    for k in range(problem.n_iter):
        # Prox of the conjugate of 0.5 ||. - b||^2, elementwise with the per-ray step.
        dual_data.add_(sigma_data * (ax_bar - b)).div_(1.0 + sigma_data)
        # Prox of the conjugate of weight * ||.||_{2,1}: project on the ball of radius weight.
        dual_grad.add_(sigma_grad * _grad(x_bar))
        if weight > 0:
            norm = torch.linalg.vector_norm(dual_grad, dim=-3, keepdim=True)
            dual_grad.div_((norm / weight).clamp(min=1.0))
        else:
            dual_grad.zero_()
        x_new = x - tau * (projector.backward(dual_data) + _grad_adjoint(dual_grad))
        if nonneg:
            x_new.clamp_(min=0.0)
        ax_new = projector.forward(x_new)
        # Over-relaxation x_bar = 2 x_new - x; A x_bar follows by linearity, saving a projection.
        torch.sub(2.0 * x_new, x, out=x_bar)
        torch.sub(2.0 * ax_new, ax, out=ax_bar)
        x, ax = x_new, ax_new
        if problem.report(k, x, ax - b):
            break
    return problem.result(x, return_residuals)
