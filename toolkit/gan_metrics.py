"""Sample-quality metrics for the GANs: sliced Wasserstein distance on Laplacian-pyramid patches, the TV
spectrum of a set of images, and FID/KID through torchmetrics when the Inception weights are at hand.

All functions take float images in [-1, 1] of shape (B, C, H, W) unless said otherwise.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

import pock
from toolkit.errors import MetricError


# ------------------------------------------------------------------ sliced Wasserstein distance

def _binomial_filter(channels: int, like: torch.Tensor) -> torch.Tensor:
    # 5-tap binomial approximation of a Gaussian, as in Burt & Adelson's pyramid and Karras et al.'s code.
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=like.dtype, device=like.device) / 16
    return torch.outer(k, k).expand(channels, 1, 5, 5).contiguous()


def _pyr_down(x: torch.Tensor) -> torch.Tensor:
    w = _binomial_filter(x.shape[1], x)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), w, stride=2, groups=x.shape[1])


def _pyr_up(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    up = x.new_zeros(b, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = x
    # Zero insertion keeps a quarter of the samples, hence the gain 4 to preserve the mean.
    return F.conv2d(F.pad(up, (2, 2, 2, 2), mode="reflect"), 4 * _binomial_filter(c, x), groups=c)


def laplacian_pyramid(x: torch.Tensor, min_res: int = 16) -> list:
    """Laplacian pyramid [L_0 (full res), L_1, ..., G_last (the coarsest Gaussian level, >= min_res)]."""
    levels = []
    g = x
    while g.shape[-1] // 2 >= min_res and g.shape[-2] // 2 >= min_res:
        d = _pyr_down(g)
        levels.append(g - _pyr_up(d))
        g = d
    levels.append(g)
    return levels


def _patches(x: torch.Tensor, n_per_image: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """``n_per_image`` random size x size patches per image -> (B * n_per_image, C, size, size)."""
    b, c, h, w = x.shape
    ys = torch.randint(0, h - size + 1, (b, n_per_image, 1, 1), generator=gen)
    xs = torch.randint(0, w - size + 1, (b, n_per_image, 1, 1), generator=gen)
    d = torch.arange(size)
    bi = torch.arange(b).view(b, 1, 1, 1)
    p = x.cpu()[bi, :, ys + d.view(1, 1, size, 1), xs + d.view(1, 1, 1, size)]  # (B, P, size, size, C)
    return p.permute(0, 1, 4, 2, 3).reshape(b * n_per_image, c, size, size)


def _normalise(desc: torch.Tensor) -> torch.Tensor:
    # Per colour channel over all descriptors and positions, as Karras et al. do, so that the distance
    # compares the shape of the patch distribution at each scale rather than its overall contrast.
    mean = desc.mean(dim=(0, 2, 3), keepdim=True)
    std = desc.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-8)
    return ((desc - mean) / std).flatten(1)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, *, dir_repeats: int = 4, dirs_per_repeat: int = 128,
                       gen: Optional[torch.Generator] = None) -> float:
    """Sliced Wasserstein-1 distance between two equally sized point sets (M, D): the mean over random unit
    directions of the 1-D Wasserstein distance of the projections (sorted differences)."""
    if a.shape != b.shape:
        raise MetricError(f"sliced Wasserstein needs equal descriptor sets, got {tuple(a.shape)} and {tuple(b.shape)}")
    dists = []
    for _ in range(dir_repeats):
        dirs = torch.randn(a.shape[1], dirs_per_repeat, generator=gen, dtype=a.dtype)
        dirs /= dirs.norm(dim=0, keepdim=True)
        # numpy's vectorised sort is several times faster than torch.sort on CPU; rows are contiguous.
        pa = np.sort((dirs.T @ a.T).cpu().numpy(), axis=1)
        pb = np.sort((dirs.T @ b.T).cpu().numpy(), axis=1)
        dists.append(float(np.abs(pa - pb).mean()))
    return float(np.mean(dists))


def swd(real: torch.Tensor, fake: torch.Tensor, *, patch_size: int = 7, patches_per_image: int = 128,
        min_res: int = 16, dir_repeats: int = 4, dirs_per_repeat: int = 128, seed: int = 0) -> dict:
    """Sliced Wasserstein distance between two image sets, per Laplacian-pyramid level, times 1e3.

    Karras, Aila, Laine & Lehtinen, "Progressive growing of GANs for improved quality, stability, and
    variation", ICLR 2018, appendix D: at each level of a Laplacian pyramid (from the full resolution down
    to 16x16), ``patches_per_image`` random 7x7 neighbourhoods are taken from every image, normalised per
    channel (mean and standard deviation of each set's own descriptors), and the two descriptor sets are
    compared by the sliced Wasserstein distance with ``dir_repeats * dirs_per_repeat`` random directions.
    A small value means that the patch statistics at that scale are alike; "avg" is the mean over levels.

    Both sets must have the same number of images (use the smaller count of each); the result is
    deterministic for a given ``seed``, and exactly 0 for a set against itself. Returns ``{"64": ..., "32": ..., "16": ..., "avg": ...}`` keyed by
    the level resolution.
    """
    if real.shape[1:] != fake.shape[1:]:
        raise MetricError(f"SWD needs images of the same shape, got {tuple(real.shape[1:])} and {tuple(fake.shape[1:])}")
    n = min(len(real), len(fake))
    if n < 2:
        raise MetricError(f"SWD needs at least 2 images per set, got {n}")
    if min(real.shape[-2:]) < max(min_res, patch_size):
        raise MetricError(f"SWD needs images of at least {max(min_res, patch_size)} pixels, got {tuple(real.shape[-2:])}")
    descs = {}
    for name, x in (("real", real[:n]), ("fake", fake[:n])):
        # Both sets are sampled at the same patch positions (image i, patch j), which are independent of
        # the content, so that a set compared with itself gives exactly 0.
        gen = torch.Generator().manual_seed(seed)
        per_level = None
        for start in range(0, n, 256):
            levels = laplacian_pyramid(x[start:start + 256].float(), min_res)
            d = [_patches(lv, patches_per_image, patch_size, gen) for lv in levels]
            per_level = d if per_level is None else [torch.cat([p, q]) for p, q in zip(per_level, d)]
        descs[name] = [(_normalise(d), lv.shape[-1]) for d, lv in zip(per_level, levels)]
    gen = torch.Generator().manual_seed(seed + 1)
    out = {}
    for (dr, res), (df, _) in zip(descs["real"], descs["fake"]):
        out[str(res)] = 1e3 * sliced_wasserstein(dr, df, dir_repeats=dir_repeats, dirs_per_repeat=dirs_per_repeat,
                                                 gen=gen)
    out["avg"] = sum(out.values()) / len(out)
    return out


# ------------------------------------------------------------------ TV spectrum

def tv_spectrum(images: torch.Tensor, *, N: int = 5, lam: float = 7.0, tol: Optional[float] = None,
                batch_size: int = 256,
                device: str = "cpu", progress=None) -> torch.Tensor:
    """Spectrum S(t_n) = ||phi_n||_1 (pock.spectral) of every image, (B, N), divided by the pixel count so
    that it reads as the mean absolute band value per pixel on the [-1, 1] scale."""
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device=device, dtype=torch.float32)
        out.append(pock.spectral(x, N=N, lam=lam, tol=tol).S.cpu() / x[0].numel())
        if progress is not None:
            progress.update(len(x))
    return torch.cat(out)


def spectrum_distance(s_fake: torch.Tensor, s_real: torch.Tensor) -> float:
    """Relative L1 distance between mean spectra: sum_n |mean S_fake(t_n) - mean S_real(t_n)| / sum_n mean S_real(t_n).

    0 when every band carries on average as much energy in the generated images as in the real ones; 0.1
    means that 10 % of the real spectral mass is missing or in excess. ``s_*`` are (B, N) per-image spectra
    or (N,) means.
    """
    mf = s_fake.mean(0) if s_fake.dim() == 2 else s_fake
    mr = s_real.mean(0) if s_real.dim() == 2 else s_real
    if mf.shape != mr.shape:
        raise MetricError(f"spectra have different band counts: {tuple(mf.shape)} and {tuple(mr.shape)}")
    return float((mf - mr).abs().sum() / mr.abs().sum().clamp_min(1e-12))


# ------------------------------------------------------------------ FID / KID (torchmetrics)

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"


def fid_unavailable_reason(weights_path: Optional[str]) -> Optional[str]:
    """Why FID/KID cannot be computed here, or None when they can."""
    import importlib.util
    if weights_path is None:
        return (f"no --inception-weights given: torchmetrics' FID/KID need the FID Inception weights "
                f"({FID_WEIGHTS_NAME}) and would otherwise download them, which this machine cannot")
    # find_spec rather than torchmetrics' own flag: importing torchmetrics costs seconds.
    if importlib.util.find_spec("torch_fidelity") is None:
        return "the torch-fidelity package (torchmetrics' Inception network) is not installed: pip install torch-fidelity"
    if not Path(weights_path).is_file():
        return f"--inception-weights {weights_path} is not a file"
    return None


def _to_uint8_rgb(x: torch.Tensor) -> torch.Tensor:
    u8 = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return u8.expand(-1, 3, -1, -1) if u8.shape[1] == 1 else u8


def inception_from_weights(weights_path: str) -> torch.nn.Module:
    """torchmetrics' FID Inception network (torch-fidelity's port of the TF graph, 2048-d pool features),
    loaded from a local weights file instead of being downloaded."""
    from torchmetrics.image.fid import NoTrainInceptionV3
    return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                              feature_extractor_weights_path=str(weights_path))


def fid_kid(real: torch.Tensor, fakes: dict, feature_net: torch.nn.Module, *, device: str = "cpu",
            batch_size: int = 100) -> dict:
    """FID and KID (x1e3) of each fake set against ``real`` with torchmetrics, features from ``feature_net``
    (:func:`inception_from_weights` for the standard numbers), which takes uint8 RGB batches (B, 3, H, W).
    Grayscale images are repeated to three channels.
    Returns ``{name: {"fid": ..., "kid_x1e3": ..., "kid_std_x1e3": ...}}``."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    n_min = min([len(real)] + [len(f) for f in fakes.values()])
    fid = FrechetInceptionDistance(feature=feature_net, reset_real_features=False).to(device)
    with warnings.catch_warnings():
        # KID warns that it keeps all features in memory: 2048 floats per image, a few MB here.
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        kid = KernelInceptionDistance(feature=feature_net, reset_real_features=False,
                                      subset_size=min(1000, n_min)).to(device)
    for start in range(0, len(real), batch_size):
        x = _to_uint8_rgb(real[start:start + batch_size]).to(device)
        fid.update(x, real=True)
        kid.update(x, real=True)
    out = {}
    for name, fake in fakes.items():
        fid.reset()
        kid.reset()
        for start in range(0, len(fake), batch_size):
            x = _to_uint8_rgb(fake[start:start + batch_size]).to(device)
            fid.update(x, real=False)
            kid.update(x, real=False)
        kmean, kstd = kid.compute()
        out[name] = {"fid": float(fid.compute()), "kid_x1e3": 1e3 * float(kmean), "kid_std_x1e3": 1e3 * float(kstd)}
    return out
