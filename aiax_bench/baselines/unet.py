"""U-Net / FBPConvNet denoiser of reconstructed slices, 2D or 2.5D, with a residual output.

Written from Jin, McCann, Froustey & Unser, "Deep convolutional neural network
for inverse problems in imaging", IEEE TIP 26(9):4509-4522, 2017 (FBPConvNet),
and Ronneberger, Fischer & Brox, "U-Net", MICCAI 2015 (no code copied).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from torch import nn

from aiax_bench.baselines._nets import ACTIVATIONS, UNetwork
from aiax_bench.errors import InputError
from aiax_bench.training.method import SliceConfig, SliceMethod

__all__ = ["UNet"]


class UNet(SliceMethod):
    """U-Net / FBPConvNet (Jin et al. 2017): multi-scale encoder-decoder that learns the residual.

    Two 3×3 convolutions (with batch normalisation and ReLU) per level, 2×2
    max-pooling down, 3×3 stride-2 transposed convolutions up, skip
    connections by concatenation, a final 1×1 convolution, and the input's
    centre slice added to the output, so that the network learns the artefacts
    to remove (target − input). ``slices=1`` is the 2D network of the paper,
    ``slices>1`` its 2.5D variant on adjacent slices.

    Presets (``config={"preset": name}``):

    ``cpu`` (default)
        Depth 3, 8 channels at the finest level, 5 slices, 64 px patches,
        batch 8, Adam 1e-3, 1,000 steps: 1 to 2.5 minutes of training on 2
        shared CPU cores for the ``small`` profile (+5.8 dB over FBP on
        ``foam/100proj``).
    ``2d``
        The ``cpu`` preset on single slices.
    ``paper``
        FBPConvNet as published: 2D, depth 4, 64 base channels, SGD with
        momentum 0.99, learning rate decreased geometrically from 1e-2 to 1e-3,
        gradient clipping at 1e-2, batch 1, whole slices (512 px patches): for a GPU.
    """

    name = "unet"
    residual = True

    @dataclasses.dataclass
    class Config(SliceConfig):
        """U-Net hyper-parameters (see :class:`aiax_bench.training.SliceConfig` for the shared ones).

        Attributes
        ----------
        depth : int
            Number of 2× down-samplings (FBPConvNet: 4).
        base_channels : int
            Channels at the finest level, doubled per level (FBPConvNet: 64).
        batch_norm : bool
            Batch normalisation after every convolution (FBPConvNet: yes).
        activation : {'relu', 'tanh'}
            Hidden activation: ReLU (FBPConvNet), or tanh as in the biomedical
            micro-CT users' Keras U-Net.
        """

        depth: int = 3
        base_channels: int = 8
        batch_norm: bool = True
        activation: str = "relu"
        max_steps: int = 1000

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "cpu": {},
        "2d": {"slices": 1},
        "paper": {"slices": 1, "depth": 4, "base_channels": 64, "batch_norm": True, "optimizer": "sgd",
                  "learning_rate": 1e-2, "final_learning_rate": 1e-3, "lr_schedule": "geometric",
                  "grad_clip": 1e-2, "batch_size": 1, "patch_size": 512, "max_steps": 100_000,
                  "max_seconds": None, "val_every": 1000, "val_slice_step": 1, "num_workers": 4},
    }

    def _check_config(self) -> None:
        super()._check_config()
        if self.config.depth < 1 or self.config.base_channels < 1:
            raise InputError("depth / base_channels", f"are {self.config.depth} / {self.config.base_channels}",
                             "expected positive integers")
        if self.config.activation not in ACTIVATIONS:
            raise InputError("activation", f"is {self.config.activation!r}", f"one of {list(ACTIVATIONS)}")

    def build_network(self) -> nn.Module:
        c = self.config
        return UNetwork(c.slices, 1, depth=c.depth, base_channels=c.base_channels, batch_norm=c.batch_norm,
                        activation=c.activation)
