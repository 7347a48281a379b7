"""Fourier-basis perturbations: the maths of the Fourier heat map of a classifier.

Yin, Gontijo Lopes, Shlens, Cubuk and Gilmer, "A Fourier perspective on model robustness in
computer vision", NeurIPS 2019 (arXiv:1906.08988), perturb each test image along one real
Fourier basis image at a time and plot the test error against the frequency (i, j):

    X~ = clip(X + r s U_ij),    ||U_ij||_2 = 1,    s = +1 or -1 at random per image and channel,

where U_ij is real and its 2-D DFT is supported on (i, j) and its conjugate partner (-i, -j)
(indices modulo the image side). With theta = 2 pi (i m / H + j n / W) at pixel (m, n),

    U_ij = (cos theta - sin theta) / sqrt(H W)     where (i, j) != (-i, -j),
    U_ij =  cos theta              / sqrt(H W)     where (i, j) == (-i, -j) (cos theta is +-1 there),

the real part of the inverse DFT of the spectrum (1 + 1j) / 2 at (i, j) and (1 - 1j) / 2 at
(-i, -j), scaled to unit norm: the phase of the authors' released code (google-research
``frequency_analysis/freq_heatmap.py``), so these maps compare with theirs. U_ij and U_-i-j are
the same image, so only the unique half of the frequencies (:func:`unique_frequencies`) needs
evaluating, and those basis images are orthonormal. The norm r counts per channel: a colour
image moves by r sqrt(3) in all. Yin et al. use r = 4 for CIFAR-10 on images scaled to [0, 1]
(the scale of their released code's clipping and of the open re-implementations that reproduce
their maps; on [0, 255] a norm of 4 would be invisible to any model).
"""

from __future__ import annotations

import math
from typing import Optional

import torch

__all__ = ["unique_frequencies", "partner", "basis_images", "random_signs", "perturb", "centred_map"]


def partner(freqs: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The conjugate partner (-i mod h, -j mod w) of each row (i, j) of ``freqs``."""
    return torch.stack([(-freqs[:, 0]) % h, (-freqs[:, 1]) % w], 1)


def unique_frequencies(h: int, w: int) -> torch.Tensor:
    """(K, 2) DFT indices (i, j), 0 <= i < h, 0 <= j < w: one of each conjugate pair, in row-major order.

    Of each pair the one whose flat index i w + j is the smaller; (h w + s) / 2 rows in all, where
    s counts the self-conjugate frequencies (4 for even sides: (0, 0), (0, w/2), (h/2, 0), (h/2, w/2)).
    """
    grid = torch.cartesian_prod(torch.arange(h), torch.arange(w))
    other = partner(grid, h, w)
    return grid[grid[:, 0] * w + grid[:, 1] <= other[:, 0] * w + other[:, 1]]


def basis_images(h: int, w: int, freqs: Optional[torch.Tensor] = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(K, h, w) unit-norm Fourier basis images U_ij of the rows of ``freqs`` (default: the unique half).

    Computed in float64 from the closed form of the module docstring, then cast to ``dtype``.
    """
    freqs = unique_frequencies(h, w) if freqs is None else torch.as_tensor(freqs).reshape(-1, 2)
    f = freqs.to(torch.float64)
    m = torch.arange(h, dtype=torch.float64).view(1, h, 1)
    n = torch.arange(w, dtype=torch.float64).view(1, 1, w)
    theta = 2 * math.pi * (f[:, 0].view(-1, 1, 1) * m / h + f[:, 1].view(-1, 1, 1) * n / w)
    # On a self-conjugate frequency sin theta vanishes at every pixel and the pair is one point.
    self_conj = (partner(freqs, h, w) == freqs).all(1).view(-1, 1, 1)
    u = torch.where(self_conj, torch.cos(theta), torch.cos(theta) - torch.sin(theta))
    return (u / math.sqrt(h * w)).to(dtype)


def random_signs(n: int, channels: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """(n, channels) float signs, +1 or -1 with equal odds, from the CPU ``generator``.

    Drawn for a whole image set at once, so that the draw does not depend on how it is batched.
    """
    return torch.randint(0, 2, (n, channels), generator=generator).to(torch.float32) * 2 - 1


def perturb(x: torch.Tensor, u: torch.Tensor, norm: float, signs: torch.Tensor, lo: float = -1.0,
            hi: float = 1.0) -> torch.Tensor:
    """``clip(x + norm * s * u, lo, hi)`` for a batch ``x`` (B, C, H, W), one basis image ``u`` (H, W) and
    the (B, C) ``signs`` s (:func:`random_signs`): each channel moves by exactly ``norm`` before clipping."""
    s = signs.to(x.device, x.dtype)[:, :, None, None]
    return (x + norm * s * u.to(x.device, x.dtype)).clamp_(lo, hi)


def centred_map(values: torch.Tensor, freqs: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The (h, w) map of ``values`` given at ``freqs`` and, by symmetry, at their partners, zero frequency
    at the centre (``fftshift`` layout: entry [u][v] is frequency (u - h // 2, v - w // 2))."""
    values = torch.as_tensor(values, dtype=torch.float64)
    out = torch.full((h, w), float("nan"), dtype=torch.float64)
    out[freqs[:, 0], freqs[:, 1]] = values
    other = partner(freqs, h, w)
    out[other[:, 0], other[:, 1]] = values
    return torch.fft.fftshift(out)
