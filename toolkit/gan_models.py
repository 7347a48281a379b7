"""DCGAN generator and discriminator (Radford, Metz & Chintala 2016), as in pytorch/examples `dcgan`.

The nets follow the DCGAN paper and the dissertation: a stack of stride-2 (transposed) 4x4 convolutions
that doubles (halves) the resolution at each layer, batch norm everywhere except the generator's output
and the discriminator's input, ReLU in the generator, LeakyReLU(0.2) in the discriminator. They are built
for any power-of-two ``image_size`` >= 16; the shape comments give the 64x64 case of the paper.

The discriminator returns logits (no final sigmoid) so that the loss is ``BCEWithLogitsLoss``, which is
numerically safe under CUDA autocast, unlike ``sigmoid`` + ``BCELoss``.

For the ``joint`` mode, :class:`BandGenerator` wraps a generator whose output channels are the spectral
bands phi_1..phi_K and the residual; the image is their sum, so the reconstruction is exact by
construction (Gilboa's identity f = sum_n phi_n + residual).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from toolkit.errors import ModelError


def _n_layers(image_size: int) -> int:
    # Number of stride-2 layers between the 4x4 seed and the image.
    if image_size < 16 or image_size & (image_size - 1):
        raise ModelError(f"--image-size must be a power of two >= 16, got {image_size}")
    return int(math.log2(image_size)) - 2


def weights_init(m: nn.Module) -> None:
    """DCGAN initialisation: conv weights ~ N(0, 0.02); batch-norm gamma ~ N(1, 0.02), beta = 0."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """z (B, nz, 1, 1) -> image (B, nc, image_size, image_size) in [-1, 1] (tanh), or raw if ``tanh=False``."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 1, image_size: int = 64, tanh: bool = True):
        super().__init__()
        n = _n_layers(image_size)
        mult = 2 ** (n - 1)  # 8 for 64x64: the seed has ngf*8 channels
        layers = [
            # input: nz x 1 x 1
            nn.ConvTranspose2d(nz, ngf * mult, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * mult),
            nn.ReLU(True),
            # state size: (ngf*8) x 4 x 4
        ]
        for _ in range(n - 1):
            layers += [
                nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ngf * mult // 2),
                nn.ReLU(True),
                # state size: (ngf*4) x 8 x 8, then (ngf*2) x 16 x 16, then ngf x 32 x 32
            ]
            mult //= 2
        layers.append(nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False))
        # state size: nc x 64 x 64
        if tanh:
            layers.append(nn.Tanh())
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class Discriminator(nn.Module):
    """image (B, nc, image_size, image_size) -> logit (B,)."""

    def __init__(self, ndf: int = 64, nc: int = 1, image_size: int = 64):
        super().__init__()
        n = _n_layers(image_size)
        layers = [
            # input: nc x 64 x 64
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            # state size: ndf x 32 x 32
        ]
        mult = 1
        for _ in range(n - 1):
            layers += [
                nn.Conv2d(ndf * mult, ndf * mult * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ndf * mult * 2),
                nn.LeakyReLU(0.2, inplace=True),
                # state size: (ndf*2) x 16 x 16, then (ndf*4) x 8 x 8, then (ndf*8) x 4 x 4
            ]
            mult *= 2
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 0, bias=False))
        # state size: 1 x 1 x 1 (a logit)
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).flatten()


class BandGenerator(nn.Module):
    """Generator of K spectral bands and the residual; the image is their sum.

    The wrapped DCGAN generator outputs (K+1)*nc raw channels; channel group k is squashed by
    ``scale_k * tanh``, where ``scale_k`` is the largest magnitude of that component in the real data,
    so each generated component lives in the range its real counterpart occupies.

    ``forward`` returns ``(image, components)`` with components of shape (B, K+1, nc, H, W) ordered
    phi_1..phi_K, residual, and ``image == components.sum(1)`` exactly.
    """

    def __init__(self, scales: torch.Tensor, nz: int = 100, ngf: int = 64, nc: int = 1, image_size: int = 64):
        super().__init__()
        self.n_comp = scales.numel()
        self.nc = nc
        self.net = Generator(nz, ngf, nc * self.n_comp, image_size, tanh=False)
        self.register_buffer("scales", scales.detach().clone().float().reshape(-1))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.net(z)
        b, _, h, w = raw.shape
        comps = torch.tanh(raw.float()).view(b, self.n_comp, self.nc, h, w) * self.scales.view(1, -1, 1, 1, 1)
        return comps.sum(1), comps


def joint_disc_input(image: torch.Tensor, comps: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """What the joint discriminator sees: the image and its bands phi_1..phi_K (each divided by its scale
    so that all channels have comparable ranges), stacked as channels: (B, (1+K)*nc, H, W).

    The residual is left out because it is determined by the others (residual = image - sum phi).
    """
    k = comps.shape[1] - 1
    bands = comps[:, :k] / scales[:k].view(1, -1, 1, 1, 1).to(comps.dtype)
    return torch.cat([image.unsqueeze(1), bands], 1).flatten(1, 2)
