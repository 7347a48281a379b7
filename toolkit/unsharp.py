"""The linear unsharp mask: the matched, non-spectral control for the spectral TV augmentation.

The spectral augmentation adds amplified fine TV bands to an image, ``w = f + sum_j (k_j - 1) phi_j``.
The control adds an amplified linear high-pass instead,

    w = f + a (f - G_s * f),

with ``G_s`` a Gaussian of standard deviation ``s`` pixels and ``a`` drawn per image (or once per
batch). Its perturbation ``w - f = a (f - G_s * f)`` is linear in ``f`` and has no notion of edges or
scale in the TV sense, so when its mean size ``||w - f||`` equals the spectral augmentation's
(``experiments/unsharp_match.py`` chooses ``s`` and the range of ``a``), any difference between the
two conditions is due to *which* perturbation the TV bands make, not to how large it is.

Batched over (B, C, H, W) on any device and dtype; every channel is filtered on its own.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["gaussian_kernel", "gaussian_blur", "high_pass", "unsharp_mask", "random_amounts"]


def gaussian_kernel(sigma: float, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """The normalised 1-D Gaussian of standard deviation ``sigma`` pixels on ``[-r, r]``, ``r = ceil(3 sigma)``."""
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    r = max(1, math.ceil(3 * sigma))
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype=dtype, device=device)


def gaussian_blur(f: torch.Tensor, sigma: float) -> torch.Tensor:
    """``G_s * f`` per channel, separable, with reflecting borders (so a constant image stays constant)."""
    if f.dim() != 4:
        raise ValueError(f"expected a batch (B, C, H, W), got shape {tuple(f.shape)}")
    k = gaussian_kernel(sigma, dtype=f.dtype, device=f.device)
    r, c = k.numel() // 2, f.shape[1]
    if r >= min(f.shape[-2:]):
        raise ValueError(f"sigma {sigma} needs images larger than {r} pixels, got {tuple(f.shape[-2:])}")
    x = F.conv2d(F.pad(f, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def high_pass(f: torch.Tensor, sigma: float) -> torch.Tensor:
    """``f - G_s * f``: what the unsharp mask amplifies."""
    return f - gaussian_blur(f, sigma)


def unsharp_mask(f: torch.Tensor, amount, sigma: float) -> torch.Tensor:
    """``w = f + a (f - G_s * f)``; ``amount`` is a number or one value per image, shape (B,)."""
    a = torch.as_tensor(amount, dtype=f.dtype, device=f.device)
    if a.dim() == 1:
        a = a.view(-1, 1, 1, 1)
    return f + a * high_pass(f, sigma)


def random_amounts(batch: int, amount: tuple, *, per_image: bool = True,
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Amounts ``a`` drawn uniformly from ``[amount[0], amount[1])``, shape (batch,), on the CPU (float64).

    ``per_image=False`` draws one amount and repeats it for the whole batch, as ``pock.random_gains``
    does for the dissertation's one gain per batch, so that the control's copies vary as the spectral ones.
    """
    lo, hi = amount
    if not 0 <= lo < hi:
        raise ValueError(f"amount must be LO,HI with 0 <= LO < HI, got {amount}")
    a = lo + (hi - lo) * torch.rand(batch if per_image else 1, generator=generator, dtype=torch.float64)
    return a if per_image else a.expand(batch)
