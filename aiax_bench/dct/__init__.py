"""Diffraction contrast tomography: preprocessing of diffraction frame stacks (``psi x y x x``)."""

from aiax_bench.dct.moving_median import moving_median, moving_median_reference, refresh_windows, subtract_moving_median

__all__ = ["moving_median", "moving_median_reference", "refresh_windows", "subtract_moving_median"]
