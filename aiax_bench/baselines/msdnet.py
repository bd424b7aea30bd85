"""Mixed-scale dense network (MS-D), a 2.5D denoiser of reconstructed slices.

Written from Pelt & Sethian, "A mixed-scale dense convolutional neural network
for image analysis", PNAS 115(2):254-259, 2018, and the description of the
method's reference code in the project's design notes (no code copied).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from torch import nn

from aiax_bench.baselines._nets import MSDNetwork
from aiax_bench.errors import InputError
from aiax_bench.training.method import SliceConfig, SliceMethod

__all__ = ["MSDNet"]


class MSDNet(SliceMethod):
    """Mixed-scale dense network (Pelt & Sethian 2018): width 1, dilations 1..10, dense connections.

    Every layer applies one dilated 3×3 convolution (dilations cycling
    1, 2, ..., 10) and a ReLU to all earlier feature maps and the input, and
    adds one map; a final 1×1 convolution combines all maps into the output.
    The input is a stack of ``slices`` adjacent slices of the low-quality
    reconstruction, the target the centre slice of the reference (``high``).

    As in the paper's reference code: no batch normalisation, the final layer
    starts at zero, input and output standardised once from the training data,
    Adam with learning rate 1e-3, L2 loss, 8-fold flip/rotation augmentation.
    L1 and SSIM-based losses are selectable (``loss``).

    Presets (``config={"preset": name}``):

    ``cpu`` (default)
        Depth 20, 64 px patches, batch 8, 1,500 steps: 1.5 to 3.5 minutes of
        training on 2 shared CPU cores for the ``small`` profile (+5 dB over
        FBP on ``foam/100proj``).
    ``paper``
        Depth 100 (45,652 parameters with one input slice), 256 px patches,
        Adam 1e-3, training until the validation loss stops improving (patience
        20 validations) within 200,000 steps. Its activations take memory linear
        in the depth, so a step fits a CPU too (650 MB peak at batch 4, about 22 s
        a step on one shared core, ``benchmarks/msd.json``); the budget is a GPU's.
    """

    name = "msdnet"
    residual = False

    @dataclasses.dataclass
    class Config(SliceConfig):
        """MS-D hyper-parameters (see :class:`aiax_bench.training.SliceConfig` for the shared ones).

        Attributes
        ----------
        depth : int
            Number of 3×3 layers (paper: 100).
        max_dilation : int
            Dilations cycle through 1..``max_dilation`` (paper: 10).
        """

        depth: int = 20
        max_dilation: int = 10
        max_steps: int = 1500

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "cpu": {},
        "paper": {"depth": 100, "patch_size": 256, "batch_size": 4, "max_steps": 200_000, "max_seconds": None,
                  "val_every": 1000, "val_slice_step": 1, "patience": 20, "num_workers": 4},
    }

    def _check_config(self) -> None:
        super()._check_config()
        if self.config.depth < 1 or self.config.max_dilation < 1:
            raise InputError("depth / max_dilation", f"are {self.config.depth} / {self.config.max_dilation}",
                             "expected positive integers")
        if self.config.patch_size <= self.config.max_dilation:
            raise InputError("patch_size", f"is {self.config.patch_size}",
                             f"expected more than max_dilation ({self.config.max_dilation}) px for reflected borders")

    def build_network(self) -> nn.Module:
        return MSDNetwork(self.config.slices, 1, depth=self.config.depth, max_dilation=self.config.max_dilation)
