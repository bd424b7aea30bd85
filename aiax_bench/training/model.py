"""Standardisation around a network, so that methods take and return physical units."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Standardized"]


class Standardized(nn.Module):
    """A network between fixed input and output standardisations, optionally residual.

    ``y = net((x - input_mean) / input_std) * output_std + output_mean``, plus the
    input's centre channel when ``residual`` (FBPConvNet learns the residual
    target − input). The constants are buffers: they are saved with the weights
    and move with the module to any device.

    Parameters
    ----------
    net : torch.nn.Module
        Maps ``(B, C, ...)`` to ``(B, 1, ...)``.
    input_mean, input_std : float
        Statistics of the training inputs (1/cm).
    output_mean, output_std : float
        Statistics of what the network predicts (1/cm): the target, or the
        residual target − centre input slice when ``residual``.
    residual : bool
        Add the centre input channel to the output.
    """

    def __init__(self, net: nn.Module, *, input_mean: float = 0.0, input_std: float = 1.0,
                 output_mean: float = 0.0, output_std: float = 1.0, residual: bool = False) -> None:
        super().__init__()
        self.net = net
        self.residual = residual
        for name, value in (("input_mean", input_mean), ("input_std", input_std),
                            ("output_mean", output_mean), ("output_std", output_std)):
            self.register_buffer(name, torch.tensor(float(value), dtype=torch.float32))

    def set_statistics(self, *, input_mean: float, input_std: float, output_mean: float, output_std: float) -> None:
        """Set the standardisation constants (from the training data, before training)."""
        for name, value in (("input_mean", input_mean), ("input_std", input_std),
                            ("output_mean", output_mean), ("output_std", output_std)):
            getattr(self, name).fill_(float(value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.input_mean) / self.input_std
        y = self.net(z) * self.output_std + self.output_mean
        if self.residual:
            c = x.shape[1] // 2
            y = y + x[:, c:c + 1]
        return y
