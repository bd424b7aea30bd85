"""TomoGAN: a U-Net generator on 3 adjacent slices trained adversarially against a convolutional critic.

Written from Liu, Bicer, Kettimuthu, Gursoy, De Carlo & Foster, "TomoGAN:
low-dose synchrotron x-ray tomography with generative adversarial networks",
JOSA A 37(3):422-434, 2020, and the description of the public code in the
project's design notes (no code copied). The adversarial loss is selectable:
Jensen–Shannon (the paper's sigmoid cross-entropy) or Wasserstein with gradient
penalty (Gulrajani et al., NeurIPS 2017).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from aiax_bench.baselines._nets import UNetwork
from aiax_bench.errors import InputError
from aiax_bench.training.losses import make_loss
from aiax_bench.training.method import SliceConfig, SliceMethod
from aiax_bench.training.trainer import Trainer, TrainSettings

__all__ = ["Discriminator", "PerceptualFeatures", "TomoGAN"]


class Discriminator(nn.Module):
    """Convolutional critic: per level a 3×3 convolution and a 3×3 stride-2 one, LeakyReLU(0.2), then a logit.

    Global average pooling before the final linear layer makes it accept any
    patch size. No batch normalisation: the gradient penalty of WGAN-GP is
    defined per sample.

    Parameters
    ----------
    channels : sequence of int
        Channels of the levels (each halves the resolution).
    """

    def __init__(self, channels: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.LeakyReLU(0.2),
                       nn.Conv2d(c, c, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(-2, -1)))[:, 0]


class PerceptualFeatures(nn.Sequential):
    """The feature extractor of the optional perceptual term (weights supplied by the user).

    Architecture (its state-dict keys are ``0.weight`` ... ``6.bias``)::

        Conv2d(1, 16, 3, padding=1), ReLU, Conv2d(16, 16, 3, padding=1), ReLU,
        MaxPool2d(2), Conv2d(16, 32, 3, padding=1), ReLU

    Input: one image channel in 0–1 (the 0–255 intensity divided by 255).
    TomoGAN uses VGG-19 features pre-trained on ImageNet, which cannot be
    downloaded here; train this extractor on anything you like (e.g. the
    first layers of a VGG converted to one input channel, or an auto-encoder
    of reconstructions) and pass ``torch.save(net.state_dict(), path)`` as
    ``perceptual_weights``.
    """

    def __init__(self) -> None:
        super().__init__(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())


class TomoGAN(SliceMethod):
    """TomoGAN (Liu et al. 2020): supervised low → high with MSE + adversarial (+ perceptual) losses.

    The generator is a U-Net (no batch normalisation) on 3 adjacent slices of
    the low-quality reconstruction that predicts the centre slice of the
    reference (``high``). A convolutional discriminator sees single slices
    (reference or generated). Losses are weighted as in the public code on
    0–255 intensities (``data_range`` of the training targets ↦ 255): MSE 0.5,
    adversarial 20, perceptual 2; Adam 1e-4; 2 discriminator steps per
    generator step.

    The perceptual term is off by default. In every public version of
    TomoGAN the VGG features go through NumPy, so that term passes no
    gradient to the generator: training without it is faithful to the code.
    To use one, supply weights of :class:`PerceptualFeatures`
    (``perceptual_weights``; pre-trained VGG weights cannot be downloaded here).

    Validation (best generator kept, early stopping) uses the MSE to ``high``
    on the validation slices. The discriminator is not saved: only the
    generator is needed to predict.

    Presets (``config={"preset": name}``):

    ``cpu`` (default)
        Generator depth 3 with 16 channels at the finest level (half the
        paper's width), 64 px patches, batch 8, generator Adam 1e-3, 800 steps.
    ``mse``
        The ``cpu`` preset without adversarial term (the generator alone).
    ``wgan``
        The ``cpu`` preset with the Wasserstein-GP adversarial loss.
    ``paper``
        Width 32, Adam 1e-4 for both networks, 256 px patches, batch 4,
        100,000 steps: for a GPU.
    """

    name = "tomogan"
    residual = False

    @dataclasses.dataclass
    class Config(SliceConfig):
        """TomoGAN hyper-parameters (see :class:`aiax_bench.training.SliceConfig` for the shared ones).

        ``learning_rate`` is the generator's; ``loss`` is the validation loss
        (the training loss is the weighted sum below).

        Attributes
        ----------
        depth : int
            Generator U-Net down-samplings (TomoGAN: 3).
        base_channels : int
            Generator channels at the finest level (TomoGAN: 32).
        residual : bool
            Add the input's centre slice to the generator's output (not in the paper).
        adversarial : {'js', 'wgan-gp'}
            Jensen–Shannon (sigmoid cross-entropy, non-saturating generator
            loss; the paper) or Wasserstein with gradient penalty.
        mse_weight, adversarial_weight, perceptual_weight : float
            Loss weights on 0–255 intensities (TomoGAN: 0.5, 20, 2).
        disc_channels : tuple of int
            Discriminator channels per level.
        disc_learning_rate : float
            Discriminator Adam learning rate (TomoGAN: 1e-4).
        disc_steps : int
            Discriminator steps per generator step (TomoGAN: 2).
        gp_weight : float
            Gradient-penalty weight of WGAN-GP (Gulrajani et al.: 10).
        drift_weight : float
            Penalty on the critic's squared output for real slices (WGAN-GP
            only; Karras et al. 2018: 1e-3): keeps the critic loss bounded.
        perceptual_weights : str, optional
            Path of a :class:`PerceptualFeatures` state dict; no perceptual term if omitted.
        """

        slices: int = 3
        depth: int = 3
        base_channels: int = 16
        batch_norm: bool = False
        residual: bool = False
        adversarial: str = "js"
        mse_weight: float = 0.5
        adversarial_weight: float = 20.0
        perceptual_weight: float = 2.0
        disc_channels: tuple[int, ...] = (16, 32, 64)
        disc_learning_rate: float = 1e-4
        disc_steps: int = 2
        gp_weight: float = 10.0
        drift_weight: float = 1e-3
        perceptual_weights: str | None = None
        max_steps: int = 800

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "cpu": {},
        "mse": {"adversarial_weight": 0.0},
        "wgan": {"adversarial": "wgan-gp"},
        "paper": {"base_channels": 32, "learning_rate": 1e-4, "patch_size": 256, "batch_size": 4,
                  "max_steps": 100_000, "max_seconds": None, "val_every": 1000, "val_slice_step": 1,
                  "num_workers": 4},
    }

    def __init__(self, config: SliceConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.residual = bool(self.config.residual)

    def _check_config(self) -> None:
        super()._check_config()
        c = self.config
        if c.adversarial not in ("js", "wgan-gp"):
            raise InputError("adversarial", f"is {c.adversarial!r}", "expected 'js' or 'wgan-gp'")
        if c.depth < 1 or c.base_channels < 1 or c.disc_steps < 1 or not c.disc_channels:
            raise InputError("depth / base_channels / disc_steps / disc_channels",
                             f"are {c.depth} / {c.base_channels} / {c.disc_steps} / {c.disc_channels}",
                             "expected positive integers and at least one discriminator level")
        weights = (c.mse_weight, c.adversarial_weight, c.perceptual_weight, c.gp_weight, c.drift_weight)
        if min(weights) < 0 or not c.disc_learning_rate > 0:
            raise InputError("loss weights / disc_learning_rate", f"are {weights} / {c.disc_learning_rate}",
                             "expected non-negative weights and a positive learning rate")
        if c.perceptual_weights is not None and not Path(c.perceptual_weights).is_file():
            raise InputError("perceptual_weights", f"is {c.perceptual_weights!r}, not a file",
                             "expected the path of a PerceptualFeatures state dict, or None")

    def build_network(self) -> nn.Module:
        c = self.config
        return UNetwork(c.slices, 1, depth=c.depth, base_channels=c.base_channels, batch_norm=c.batch_norm)

    def build_discriminator(self) -> Discriminator:
        return Discriminator(tuple(self.config.disc_channels))

    def _perceptual(self) -> PerceptualFeatures | None:
        c = self.config
        if c.perceptual_weights is None or c.perceptual_weight == 0:
            return None
        net = PerceptualFeatures()
        try:
            net.load_state_dict(torch.load(c.perceptual_weights, map_location="cpu", weights_only=True))
        except Exception as exc:
            raise InputError("perceptual_weights", f"cannot be loaded ({type(exc).__name__}: {exc})",
                             "expected a state dict of aiax_bench.baselines.tomogan.PerceptualFeatures") from None
        net.requires_grad_(False)
        return net.eval()

    # -- training ----------------------------------------------------------------------------------

    def make_trainer(self, model: nn.Module, stats: Mapping[str, float], train_data: Any, val_data: Any, *,
                     seed: int, settings: TrainSettings, tracker: Any, work_dir: Path | None,
                     resume_key: str) -> Trainer:
        """The shared training loop with the adversarial objective: MSE + adversarial (+ perceptual) losses."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            disc = self.build_discriminator()
        return _AdversarialTrainer(self, model, disc, stats, train_data, val_data, seed=seed, settings=settings,
                                   tracker=tracker, work_dir=work_dir, resume_key=resume_key)

    def _disc_loss(self, disc: Discriminator, real: torch.Tensor, fake: torch.Tensor,
                   gen: torch.Generator) -> torch.Tensor:
        """Discriminator loss on standardised real and generated slices."""
        c = self.config
        real_logits, fake_logits = disc(real), disc(fake)
        if c.adversarial == "js":
            return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                    + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
        # WGAN-GP: the critic's gradient norm is pushed to 1 on random interpolates.
        eps = torch.rand((real.shape[0], 1, 1, 1), generator=gen).to(real.device)
        mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(disc(mix).sum(), mix, create_graph=True)
        penalty = (grad.flatten(1).norm(dim=1) - 1).square().mean()
        return (fake_logits.mean() - real_logits.mean() + c.gp_weight * penalty
                + c.drift_weight * real_logits.square().mean())


def _check_finite(loss: torch.Tensor, what: str, step: int) -> None:
    if not torch.isfinite(loss):
        raise InputError(f"{what} at step {step + 1}", f"is {float(loss)}",
                         "lower the learning rates, or check the input data for NaN/inf")


class _AdversarialTrainer(Trainer):
    """TomoGAN's objective in the shared loop: discriminator steps before each generator step.

    Validation (best generator kept, early stopping) is the loop's default:
    the config's loss against ``high`` on the validation slices. A resumed
    training continues bit-exactly from a validation's saved state; after a
    Ctrl-C in the middle of a step it continues from the discriminator as it was.
    """

    def __init__(self, method: TomoGAN, generator: nn.Module, disc: Discriminator, stats: Mapping[str, float],
                 train_data: Any, val_data: Any, *, seed: int, settings: TrainSettings, tracker: Any,
                 work_dir: Path | None, resume_key: str) -> None:
        c = method.config
        loss = make_loss(c.loss, scale=stats["output_std"], data_range=stats["data_range"])
        super().__init__(generator, loss, train_data, val_data, settings=settings, tracker=tracker,
                         work_dir=work_dir, resume_key=resume_key, description=f"train {method.name}")
        self.method, self.config = method, c
        self.disc = disc.to(self.device).train()
        self.d_opt = torch.optim.Adam(disc.parameters(), lr=c.disc_learning_rate)
        self.perceptual = method._perceptual()
        if self.perceptual is not None:
            self.perceptual.to(self.device)
        # 0–255 intensities: the training targets' data_range spans 255, centred on their mean.
        self.mean, self.std = stats["output_mean"], stats["output_std"]
        self.to255 = 255.0 / stats["data_range"]
        self.noise = torch.Generator().manual_seed(seed)  # WGAN-GP interpolation weights

    def critic_input(self, v: torch.Tensor) -> torch.Tensor:
        return (v - self.mean) / self.std  # the discriminator sees standardised slices

    def before_step(self) -> dict[str, torch.Tensor]:
        c = self.config
        d_loss = torch.zeros((), device=self.device)
        if c.adversarial_weight > 0:
            for _ in range(c.disc_steps):
                x, y = self.next_batch()
                with torch.no_grad(), self.autocast:
                    fake = self.model(x).float()
                d_loss = self.method._disc_loss(self.disc, self.critic_input(y), self.critic_input(fake), self.noise)
                if not torch.isfinite(d_loss):
                    raise InputError(f"discriminator loss at step {self.step + 1}", f"is {float(d_loss)}",
                                     "lower the learning rates, or check the input data for NaN/inf")
                self.d_opt.zero_grad(set_to_none=True)
                d_loss.backward()
                self.d_opt.step()
        return {"d_loss": d_loss}

    def compute_loss(self, batch: Any) -> dict[str, torch.Tensor]:
        c = self.config
        x, y = batch
        with self.autocast:
            pred = self.model(x)
        pred = pred.float()
        mse = F.mse_loss(pred * self.to255, y * self.to255)
        loss = c.mse_weight * mse
        adv = torch.zeros((), device=self.device)
        if c.adversarial_weight > 0:
            self.disc.requires_grad_(False)  # the generator step must not train the critic
            logits = self.disc(self.critic_input(pred))
            self.disc.requires_grad_(True)
            if c.adversarial == "js":  # non-saturating: -log D(G(x))
                adv = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
            else:
                adv = -logits.mean()
            loss = loss + c.adversarial_weight * adv
        if self.perceptual is not None:
            def features(v: torch.Tensor) -> torch.Tensor:
                return self.perceptual(((v - self.mean) * self.to255 + 127.5) / 255.0)
            loss = loss + c.perceptual_weight * F.mse_loss(features(pred), features(y))
        return {"loss": loss, "mse_255": mse, "adversarial": adv}

    def extra_state(self) -> dict[str, Any]:
        return {"disc": self.disc.state_dict(), "d_opt": self.d_opt.state_dict(), "noise": self.noise.get_state()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.disc.load_state_dict(state["disc"])
        self.d_opt.load_state_dict(state["d_opt"])
        self.noise.set_state(state["noise"])
