"""Total-variation engine: ROF denoising, TV flow and spectral TV decomposition.

Everything here is pure maths on batched tensors of shape ``(B, C, H, W)`` (inputs of
shape ``(H, W)`` or ``(C, H, W)`` are accepted and returned in kind), float32 or float64
(float16 and bfloat16 are computed in float32 and returned in their dtype), on any device.
Numbers may be Python or numpy scalars or 0-d tensors. Not differentiable. No file IO, no printing.

The ROF problem (Rudin, Osher & Fatemi 1992)

    min_u  TV(u) + lam/2 ||u - f||^2,     TV(u) = sum_pixels |grad u|

is solved by the accelerated primal-dual algorithm of Chambolle & Pock (2011,
Algorithm 2) on its saddle-point form ``min_u max_{|p| <= 1} <grad u, p> + lam/2 ||u - f||^2``.
Each image stops on its own certificate, the duality gap, and stops costing work then. On CPU the
iterations run in a fused kernel (:mod:`pock_cpu`, compiled by numba; the same arithmetic in one pass
per image), elsewhere as torch operations; both are certified the same way.

The TV flow ``u_t = -p(u)``, ``p in dTV(u)``, is integrated by implicit Euler steps, each an
ROF problem with ``lam = 1/dt``; Gilboa's spectral TV decomposition (Gilboa 2014; Burger,
Gilboa, Moeller, Eckardt & Cremers 2016) reads bands ``phi(t) = t u_tt`` off the flow.

References
----------
L. Rudin, S. Osher, E. Fatemi. Nonlinear total variation based noise removal algorithms.
    Physica D 60 (1992) 259-268.
A. Chambolle, T. Pock. A first-order primal-dual algorithm for convex problems with
    applications to imaging. J. Math. Imaging Vis. 40 (2011) 120-145.
G. Gilboa. A total variation spectral framework for scale and texture analysis.
    SIAM J. Imaging Sci. 7(4) (2014) 1937-1961.
M. Burger, G. Gilboa, M. Moeller, L. Eckardt, D. Cremers. Spectral decompositions using
    one-homogeneous functionals. SIAM J. Imaging Sci. 9(3) (2016) 1374-1408.
X. Bresson, T. Chan. Fast dual minimization of the vectorial total variation norm and
    applications to color image processing. Inverse Probl. Imaging 2(4) (2008) 455-484.
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
from torch import nn

import pock_cpu

__all__ = [
    "grad", "div", "tv", "rof_energy", "rof_dual_energy", "rof", "RofInfo",
    "spectral", "SpectralDecomposition", "flow_bands", "SPECTRAL_TOL", "flow_tolerances", "band_gains",
    "random_gains", "amplify_bands", "spectral_augment", "SpectralAugment",
]

# ||grad||^2 <= 8 for forward differences on a 2-D grid (Chambolle 2004, Thm. 3.1).
GRAD_NORM_SQ = 8.0

# CPU batches are solved in pieces of about this many pixels: with torch operations, all arrays of a
# piece then stay in the caches, which is faster than streaming a large batch through memory on every
# operation; with the kernel, a piece only bounds the memory in use.
_CPU_CHUNK_ELEMS = 1 << 18
_KERNEL_CHUNK_ELEMS = 1 << 21


# On CPU the iterations run in the fused kernel of pock_cpu (when numba is installed): the same
# arithmetic in one pass per image and iteration instead of about twenty passes over the batch.
USE_CPU_KERNEL = True


def _cpu_chunk_elems() -> int:
    # The kernel keeps one image at a time in the caches, so its batch in flight only bounds memory, and
    # many images in flight keep every thread busy to the end; the torch path's arrays must fit the caches.
    return _KERNEL_CHUNK_ELEMS if _kernel_on() else _CPU_CHUNK_ELEMS


def _kernel_on() -> bool:
    return USE_CPU_KERNEL and pock_cpu.AVAILABLE


# The point each solve tests and returns: x = u + BLEND (v - u), between the primal iterate u and
# the primal point v = f + div(p)/lam that the dual iterate implies. Both converge to u*, from
# sides that partly cancel: on CIFAR-10 the flow's bands reach a given accuracy with about 10%
# fewer iterations at BLEND = 0.4 than at 0 (0.25: 5%, 0.5 and 0.6: less). The duality gap is
# evaluated at x, so the certificate holds for what is returned.
_PRIMAL_BLEND = 0.4

# Default duality gap per pixel of the first TV-flow step of :func:`spectral` (later steps are
# tighter, see :func:`flow_tolerances`): the largest that keeps every band of real images within
# 2% of the exact decomposition (see :func:`spectral`).
SPECTRAL_TOL = 1e-3
# Exponents of k in the tolerance of flow step k: absolute tolerances (an explicit ``tol``) and the
# default, relative ones (see flow_tolerances).
_FLOW_POWER = {"absolute": 1.5, "relative": 0.5}
# A relative tolerance never asks for a gap below this many rounding units of the energies, nor
# for one below _FLAT_FLOW times that of the first flow step (where a nearly flat image stops).
_ROUNDING_UNITS = 8
_FLAT_FLOW = 0.05

Lam = Union[float, torch.Tensor]


# ----------------------------------------------------------------------------- checks

# float16 and bfloat16 cannot hold a certificate: their rounding unit (1e-3 to 1e-2) is far above
# any useful gap per pixel. Half-precision input is solved in float32 and returned in its dtype.
_WORKING_DTYPE = {torch.float16: torch.float32, torch.bfloat16: torch.float32,
                  torch.float32: torch.float32, torch.float64: torch.float64}


def _check_tensor(x: torch.Tensor, name: str) -> None:
    """A real float tensor of finite values that does not ask for gradients."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _WORKING_DTYPE:
        raise ValueError(f"{name} must be a real floating-point tensor (float16, bfloat16, float32 or float64), "
                         f"got dtype {x.dtype}; convert with .float()")
    if x.requires_grad and torch.is_grad_enabled():
        raise ValueError(f"{name} requires grad, but pock is not differentiable; call it on {name}.detach() "
                         f"or under torch.no_grad()")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf pixels; clean or mask them first")


def _as_batch(x: torch.Tensor, name: str = "f"):
    """Return ``x`` as (B, C, H, W) in its working dtype and a function that restores the caller's
    rank and dtype."""
    if isinstance(x, torch.Tensor) and x.dim() not in (2, 3, 4):
        raise ValueError(f"{name} must have shape (H, W), (C, H, W) or (B, C, H, W), "
                         f"got {x.dim()} dimensions {tuple(x.shape)}")
    _check_tensor(x, name)
    rank, dtype = x.dim(), x.dtype
    x = x.detach().to(_WORKING_DTYPE[dtype])
    while x.dim() < 4:
        x = x.unsqueeze(0)

    def restore(y: torch.Tensor) -> torch.Tensor:
        # y has batch-leading layout (B, ..., H, W); drop the dimensions the caller did not give.
        for _ in range(4 - rank):
            y = y.squeeze(0)
        return y.to(dtype)

    return x, restore


def _number(value, name: str):
    """``value`` as a Python int or float: numpy scalars and one-element 0-d tensors count as numbers."""
    if isinstance(value, torch.Tensor) and value.dim() == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def _check_positive(value, name: str) -> float:
    """``value`` as a float, which must be positive and finite."""
    try:
        v = _number(value, name)
    except ValueError:
        v = None
    if v is None or not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(v)


def _check_count(value, name: str, what: str) -> int:
    """``value`` as a positive Python int (numpy and 0-d tensor integers included)."""
    v = value.item() if isinstance(value, torch.Tensor) and value.dim() == 0 else value
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
        raise ValueError(f"{name} must be a positive integer {what}, got {value!r}")
    return int(v)


def _lam_per_image(lam: Lam, batch: int, like: torch.Tensor) -> torch.Tensor:
    """``lam`` as a (B,) tensor on ``like``'s device and dtype, validated."""
    if isinstance(lam, torch.Tensor) and lam.dim() > 0:
        lam_t = lam.detach().to(device=like.device, dtype=like.dtype).reshape(-1)
        if lam_t.numel() == 1:
            lam_t = lam_t.expand(batch)
        if lam_t.numel() != batch:
            raise ValueError(f"lam must be a number or a tensor of shape ({batch},), "
                             f"got shape {tuple(lam.shape)}")
        if not (torch.isfinite(lam_t).all() and (lam_t > 0).all()):
            raise ValueError("lam must be positive and finite for every image")
        return lam_t.contiguous()
    return torch.full((batch,), _check_positive(lam, "lam"), device=like.device, dtype=like.dtype)


# ------------------------------------------------------------------ discrete operators

def _grad_into(u: torch.Tensor, gy: torch.Tensor, gx: torch.Tensor) -> None:
    """Forward differences of contiguous ``u`` into ``gy`` (along rows) and ``gx`` (along columns).

    Neumann boundary: the difference across the last row/column is zero. The differences are
    taken on the flattened arrays (one contiguous shift, much faster than a strided window on
    CPU); the entries that straddle a row or image boundary are the boundary ones, then zeroed.
    """
    W = u.shape[-1]
    uf, gyf, gxf = u.view(-1), gy.view(-1), gx.view(-1)
    torch.sub(uf[W:], uf[:-W], out=gyf[:-W])
    gy[..., -1, :] = 0
    torch.sub(uf[1:], uf[:-1], out=gxf[:-1])
    gx[..., :, -1] = 0


def _div_into(py: torch.Tensor, px: torch.Tensor, out: torch.Tensor) -> None:
    """Backward differences ``(div p)_i = p_i - p_{i-1}`` (with ``p_{-1} = 0``) into ``out``.

    This is ``-grad^T p`` for contiguous fields whose last row of ``py`` and last column of ``px``
    are zero -- the entries that ``grad`` never produces, and that the solver keeps at zero. Those
    zeros also make the flat shifts below exact across row and image boundaries.
    """
    W = out.shape[-1]
    pyf, pxf, of = py.view(-1), px.view(-1), out.view(-1)
    torch.sub(pyf[W:], pyf[:-W], out=of[W:])
    of[:W] = pyf[:W]
    of.add_(pxf)
    of[1:].sub_(pxf[:-1])


def _zero_boundary_(py: torch.Tensor, px: torch.Tensor) -> None:
    """Zero the dual entries that pair with the Neumann boundary (where ``grad`` is zero)."""
    py[..., -1, :] = 0
    px[..., :, -1] = 0


def grad(u: torch.Tensor) -> torch.Tensor:
    """Discrete gradient by forward differences with Neumann boundary.

    Parameters
    ----------
    u : Tensor, shape (B, C, H, W), (C, H, W) or (H, W)

    Returns
    -------
    Tensor, shape (..., 2, H, W)
        ``[..., 0, i, j] = u[i+1, j] - u[i, j]`` (zero on the last row) and
        ``[..., 1, i, j] = u[i, j+1] - u[i, j]`` (zero on the last column).
    """
    u4, restore = _as_batch(u, "u")
    u4 = u4.contiguous()
    gy, gx = torch.empty_like(u4), torch.empty_like(u4)
    _grad_into(u4, gy, gx)
    return restore(torch.stack((gy, gx), dim=2))


def div(p: torch.Tensor) -> torch.Tensor:
    """Discrete divergence, the negative adjoint of :func:`grad`: ``<grad u, p> = -<u, div p>``.

    Parameters
    ----------
    p : Tensor, shape (B, C, 2, H, W), (C, 2, H, W) or (2, H, W)
    """
    if not isinstance(p, torch.Tensor) or p.dim() not in (3, 4, 5) or p.shape[-3] != 2:
        shape = tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__
        raise ValueError(f"p must have shape (..., 2, H, W) with 3 to 5 dimensions, got {shape}")
    _check_tensor(p, "p")
    rank, dtype = p.dim(), p.dtype
    p = p.detach().to(_WORKING_DTYPE[dtype])
    while p.dim() < 5:
        p = p.unsqueeze(0)
    py = p[:, :, 0].clone(memory_format=torch.contiguous_format)
    px = p[:, :, 1].clone(memory_format=torch.contiguous_format)
    # Entries paired with the boundary are not part of the range of grad; dropping them makes
    # div the exact negative adjoint of grad for any p.
    _zero_boundary_(py, px)
    out = p.new_empty(p.shape[:2] + p.shape[3:])
    _div_into(py, px, out)
    for _ in range(5 - rank):
        out = out.squeeze(0)
    return out.to(dtype)


def _pointwise_norm(gy: torch.Tensor, gx: torch.Tensor, vectorial: bool) -> torch.Tensor:
    """|grad u| per pixel: per channel, or the Frobenius norm over channels when vectorial."""
    # mul/addcmul/sqrt rather than torch.hypot: hypot guards against overflow that cannot
    # happen here and is several times slower on CPU.
    sq = torch.mul(gy, gy).addcmul_(gx, gx)
    if vectorial:
        sq = sq.sum(dim=1, keepdim=True)
    return sq.sqrt_()


def _tv(u: torch.Tensor, vectorial: bool, gy=None, gx=None) -> torch.Tensor:
    """TV per image; ``gy``/``gx`` are optional contiguous scratch buffers shaped like ``u``."""
    u = u.contiguous()
    if gy is None:
        gy, gx = torch.empty_like(u), torch.empty_like(u)
    _grad_into(u, gy, gx)
    return _pointwise_norm(gy, gx, vectorial).sum(dim=(1, 2, 3))


def tv(u: torch.Tensor, vectorial: bool = False) -> torch.Tensor:
    """Isotropic total variation of each image, ``sum_pixels |grad u|``, shape (B,).

    Parameters
    ----------
    u : Tensor, shape (B, C, H, W), (C, H, W) or (H, W)
    vectorial : bool
        False: channels are independent, ``sum_c sum_x |grad u_c(x)|``.
        True: colour TV of Blomgren-Chan / Bresson-Chan, ``sum_x ||J u(x)||_F`` (the Frobenius norm
        of the colour Jacobian), which couples the channels so that edges align across colours.
    """
    u4, _ = _as_batch(u, "u")
    out = _tv(u4, vectorial)
    return out if u.dim() == 4 else out.squeeze(0)


def rof_energy(u: torch.Tensor, f: torch.Tensor, lam: Lam, vectorial: bool = False) -> torch.Tensor:
    """Primal ROF energy ``P(u) = TV(u) + lam/2 ||u - f||^2`` per image, shape (B,)."""
    if isinstance(u, torch.Tensor) and isinstance(f, torch.Tensor) and u.shape != f.shape:
        raise ValueError(f"u and f must have the same shape, got {tuple(u.shape)} and {tuple(f.shape)}")
    u4, _ = _as_batch(u, "u")
    f4, _ = _as_batch(f, "f")
    u4 = u4.to(torch.promote_types(u4.dtype, f4.dtype))
    f4 = f4.to(u4.dtype)
    lam_t = _lam_per_image(lam, f4.shape[0], f4)
    return _tv(u4, vectorial) + 0.5 * lam_t * (u4 - f4).square().sum(dim=(1, 2, 3))


def rof_dual_energy(p: torch.Tensor, f: torch.Tensor, lam: Lam) -> torch.Tensor:
    """Dual ROF energy per image, shape (B,).

    ``D(p) = -<f, div p> - ||div p||^2 / (2 lam)`` for ``|p(x)| <= 1``; the primal solution is
    recovered as ``u = f + div p / lam``. ``D(p) <= P(u)`` for every feasible pair, with equality
    at the saddle point, so ``P(u) - D(p)`` certifies the accuracy of ``u``:
    ``lam/2 ||u - u*||^2 <= P(u) - P(u*) <= P(u) - D(p)``.
    """
    if isinstance(p, torch.Tensor) and isinstance(f, torch.Tensor):
        want = tuple(f.shape[:-2]) + (2,) + tuple(f.shape[-2:])
        if tuple(p.shape) != want:
            raise ValueError(f"p must have shape {want} for f of shape {tuple(f.shape)}, got {tuple(p.shape)}")
    f4, _ = _as_batch(f, "f")
    d = div(p).reshape(f4.shape)
    dtype = torch.promote_types(f4.dtype, _WORKING_DTYPE[d.dtype])
    f4, d = f4.to(dtype), d.to(dtype)
    lam_t = _lam_per_image(lam, f4.shape[0], f4)
    return -(f4 * d).sum(dim=(1, 2, 3)) - d.square().sum(dim=(1, 2, 3)) / (2 * lam_t)


# ----------------------------------------------------------------------------- solver

@dataclass
class RofInfo:
    """What :func:`rof` did, per image.

    iters : (B,) int64, iterations until the image's gap per pixel fell below ``tol``
    gap : (B,) float64, duality gap per pixel ``(P(u) - D(p)) / (C H W)`` of the returned pair,
        computed in float64 and rounded up: recomputing it from ``u`` and ``dual`` never gives more
    dual : (B, C, 2, H, W) the dual variable ``p``, feasible in its dtype; pass it back as ``warm=`` to warm-start a
        nearby problem (the next step of the TV flow, another ``lam``)
    """
    iters: torch.Tensor
    gap: torch.Tensor
    dual: torch.Tensor


def _project_unit_ball(py: torch.Tensor, px: torch.Tensor, vectorial: bool, tmp: torch.Tensor) -> None:
    """Project the dual field pointwise onto ``{|p(x)| <= 1}`` in place (``tmp`` is scratch).

    ``p / max(1, |p|) = p * max(1, |p|^2)^(-1/2)``; on CPU ``pow(-0.5)`` is about twice as fast
    as ``rsqrt`` and three times as fast as ``sqrt`` followed by a division.
    """
    torch.mul(py, py, out=tmp)
    tmp.addcmul_(px, px)
    scale = tmp.sum(dim=1, keepdim=True) if vectorial else tmp
    scale.clamp_min_(1.0).pow_(-0.5)
    py.mul_(scale)
    px.mul_(scale)


def _scaled_div_into(py: torch.Tensor, px: torch.Tensor, inv_lam, out: torch.Tensor) -> None:
    """``out = div(p) / lam`` (see :func:`_div_into`): the step ``u - f`` that the dual field implies.

    ``inv_lam`` is a Python number or a per-image (B, 1, 1, 1) tensor.
    """
    W = out.shape[-1]
    pyf, pxf, of = py.view(-1), px.view(-1), out.view(-1)
    if isinstance(inv_lam, torch.Tensor):
        c = inv_lam.expand_as(out).reshape(-1)
        torch.mul(pyf, c, out=of)
        of[W:].addcmul_(pyf[:-W], c[W:], value=-1)
        of.addcmul_(pxf, c)
        of[1:].addcmul_(pxf[:-1], c[1:], value=-1)
    else:
        torch.mul(pyf, inv_lam, out=of)
        of[W:].sub_(pyf[:-W], alpha=inv_lam)
        of.add_(pxf, alpha=inv_lam)
        of[1:].sub_(pxf[:-1], alpha=inv_lam)


def _sum64(x: torch.Tensor) -> torch.Tensor:
    """Per-image sum accumulated in float64: a float32 sum over 10^5 pixels loses the last digits
    that a gap of 1e-7 per pixel lives in. Rows are summed in the working precision first (a few
    hundred terms each), which keeps the cost near a float32 sum's."""
    return x.sum(dim=-1).sum(dim=(1, 2), dtype=torch.float64)


def _gap_terms(z, w, f, gyf, gxf, lam, vectorial, gy, gx):
    """TV, fidelity and dual energy of the pair ``u = f + z``, ``p`` with ``w = div(p)/lam``, in float64.

    ``P = TV(f + z) + lam/2 ||z||^2`` with ``grad(f + z) = grad f + grad z``, so that flat regions of
    ``u`` give gradients near zero without the rounding of ``f + z``;
    ``D = -<f, div p> - ||div p||^2 / (2 lam) = -lam (<f, w> + ||w||^2 / 2)``.
    ``lam`` is a number or a (B,) float64 tensor; ``gy``, ``gx`` are scratch.
    """
    _grad_into(z, gy, gx)
    gy.add_(gyf)
    gx.add_(gxf)
    tv_ = _sum64(_pointwise_norm(gy, gx, vectorial))
    fidelity = 0.5 * lam * _sum64(z * z)
    dual = -lam * (_sum64(f * w) + 0.5 * _sum64(w * w))
    return tv_, fidelity, dual


# Floor of the dimensionless primal step ``tau_k lam`` in float32 (reached after about 380
# iterations with the default schedule; Algorithm 1's constant steps from there on). Without it
# ``tau_k -> 0`` and ``sigma_k -> inf``, and the shrinking primal updates drown in float32 rounding:
# on 256x256 photos the gap stalled near 1e-7 per pixel and then grew again. With the floor it keeps
# falling (4e-8 after 3,200 iterations). float64 needs no floor, and the O(1/k^2) rate of the
# unfloored schedule matters for the very tight tolerances of reference solutions.
_MIN_STEP = {torch.float32: 0.01, torch.float64: 0.0}


@functools.lru_cache(maxsize=64)
def _dimensionless_steps(s0: float, g: float, n_steps: int, s_min: float) -> tuple:
    """``(1 / (8 s_k), s_k / (1 + s_k), 1 + theta_k)`` for ``k < n_steps``, where ``s_k = tau_k lam``,
    ``theta_k = (1 + 2 g s_k)^(-1/2)``, ``s_{k+1} = theta_k s_k`` and ``g = gamma / lam``; once
    ``s_k`` would fall below ``s_min``, ``theta_k = 1`` and the steps stay constant."""
    out, s = [], s0
    for _ in range(n_steps):
        theta = (1 + 2 * g * s) ** -0.5
        if s * theta < s_min:
            theta = 1.0
        out.append((1 / (GRAD_NORM_SQ * s), s / (1 + s), 1 + theta))
        s *= theta
    return tuple(out)


def _step_table(lam_all: torch.Tensor, tau, gamma, n_steps: int):
    """Step sizes of Algorithm 2 for every iteration, shared by the images that share them.

    Returns ``rows`` (B,) and ``table`` (R, max_iter, 3) holding, at iteration ``k`` of row ``r``,
    ``sigma_k``, the weight ``tau_k lam / (1 + tau_k lam)`` of the primal update and ``1 + theta_k``.
    With the default steps ``tau_0 lam`` and ``gamma / lam`` are the same for every ``lam``, so all
    images share the dimensionless schedule; only ``sigma`` (which scales with ``lam``) gets one row
    per distinct ``lam``. Reading the steps from a table keeps them per image (each image of a
    pipelined flow restarts them when it begins its next step) without per-iteration scalar work.
    """
    if tau is not None:
        tau = _check_positive(tau, "tau")
    lam_min = float(lam_all.min())
    if gamma is not None:
        try:
            g = float(_number(gamma, "gamma"))
        except ValueError:
            g = math.nan
        if not (math.isfinite(g) and g >= 0):
            raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
        gamma = g
        if gamma > lam_min:
            raise ValueError(f"gamma must not exceed lam (the strong convexity of the data term), "
                             f"got gamma={gamma} > min(lam)={lam_min:g}")
    s_min = _MIN_STEP[lam_all.dtype]
    lams, rows = torch.unique(lam_all.double().cpu(), return_inverse=True)
    table = torch.empty(len(lams), n_steps, 3, dtype=torch.float64)
    for r, lam in enumerate(lams.tolist()):
        s0 = 0.25 if tau is None else float(tau) * lam            # tau_0 lam
        g = 0.25 if gamma is None else float(gamma) / lam          # gamma / lam
        table[r] = torch.tensor(_dimensionless_steps(s0, g, n_steps, s_min))
        table[r, :, 0] *= lam                                      # sigma_k = lam / (8 tau_k lam)
    return rows.to(lam_all.device), table.to(device=lam_all.device, dtype=lam_all.dtype)


# Bound on the relative rounding error of the float64 energies behind a certificate (sums of up to
# millions of terms, each off by a few units of 1e-16).
_ROUNDING_ALLOWANCE = 1e-12


def _feasible_dual(py: torch.Tensor, px: torch.Tensor, vectorial: bool, dtype: torch.dtype):
    """``p`` in ``dtype`` with ``|p(x)| <= 1`` at every pixel.

    The solver's projection runs in the working precision and can leave ``|p|`` a rounding error
    above 1, where ``D(p)`` is no longer a lower bound. Pixels at ``|p| > 1 - 4 eps`` are scaled to
    ``1 - 4 eps``: the scale and the products are each off by at most a rounding unit, so no pixel
    ends outside. That lowers ``D(p)`` by about ``4 eps |grad f|`` on the boundary pixels, 1e-8 per
    pixel in float32, far below the tolerances float32 reaches.
    """
    eps = max(torch.finfo(dtype).eps, torch.finfo(py.dtype).eps)
    sq = py * py + px * px
    if vectorial:
        sq = sq.sum(dim=1, keepdim=True)
    c = sq.rsqrt_().mul_(1 - 4 * eps).clamp_(max=1.0)
    return (py * c).to(dtype), (px * c).to(dtype)


def _certificate(u: torch.Tensor, py: torch.Tensor, px: torch.Tensor, f: torch.Tensor, lam,
                 vectorial: bool) -> torch.Tensor:
    """Duality gap per pixel ``(P(u) - D(p)) / (C H W)`` of the given pair, in float64, rounded up.

    Everything is recomputed from the tensors as they are returned (``u``, ``p`` and ``f`` cast to
    float64; ``p`` must be feasible), and a bound on float64's own rounding of the sums (far below
    any tolerance) is added, so the value is an upper bound on the true gap of that pair.
    ``lam`` is a number or a (B,) tensor.
    """
    u, py, px, f = (t.double().contiguous() for t in (u, py, px, f))
    lam = lam.double().view(-1) if isinstance(lam, torch.Tensor) else float(lam)
    gy, gx = torch.empty_like(u), torch.empty_like(u)
    _grad_into(u, gy, gx)
    tv_ = _pointwise_norm(gy, gx, vectorial).sum(dim=(1, 2, 3))
    d = torch.empty_like(u)
    _div_into(py, px, d)
    fid = 0.5 * lam * (u - f).square().sum(dim=(1, 2, 3))
    fd, dd = (f * d).sum(dim=(1, 2, 3)), 0.5 / lam * d.square().sum(dim=(1, 2, 3))
    gap = tv_ + fid + fd + dd
    rounding = _ROUNDING_ALLOWANCE * (tv_ + fid + fd.abs() + dd)
    return (gap + rounding) / u[0].numel()


class _Problems:
    """The problems of :func:`_solve`: data, step schedule, tolerances and the results so far."""

    def __init__(self, f4, lam_all, per_image_lam, tols, max_iter, check_every, tau, gamma, warm, vectorial,
                 relative=False):
        B, C, H, W = f4.shape
        self.f, self.warm, self.vectorial, self.max_iter = f4, warm, vectorial, max_iter
        # relative: tols are multiples of each problem's own fidelity lam/2 ||u - f||^2 per pixel at
        # the tested point; `scale` records the factor each problem finished with.
        self.relative = relative
        self.S = tols.shape[1]
        self.scale = torch.ones((B, self.S), dtype=torch.float64, device=f4.device)
        self.first = torch.zeros(B, dtype=torch.float64, device=f4.device)     # first step's fidelity
        self.lam = lam_all.view(-1, 1, 1, 1)
        self.lam64 = lam_all.double()
        self.per_image_lam = per_image_lam
        self.tol = tols.to(device=f4.device, dtype=torch.float64)             # (B, S)
        # Images are tested every check_every iterations, so one may run that much past max_iter.
        self.row, self.table = _step_table(lam_all, tau, gamma, max_iter + check_every)
        self.x = torch.empty((B, self.S, C, H, W), dtype=f4.dtype, device=f4.device)
        self.py, self.px = torch.empty_like(f4), torch.empty_like(f4)
        self.iters = torch.zeros((B, self.S), dtype=torch.int64, device=f4.device)
        self.gap = torch.zeros((B, self.S), dtype=torch.float64, device=f4.device)


class _Slots:
    """The images being iterated, one per slot, with their Chambolle-Pock state.

    The primal variable is kept as the step ``z = u - f`` from the data, not as ``u``: late in a
    solve the primal update ``tau lam / (1 + tau lam) (v - u)`` falls below the rounding unit of
    ``u`` (about 6e-8 for float32 values near 1) and float32 iterates stop improving at a gap near
    5e-7 per pixel; ``z`` is an order of magnitude smaller than ``u``, and so is its rounding.
    Gradients of ``u`` are ``grad f + grad z`` with ``grad f`` computed once per problem.

    ``idx`` is the image in each slot, ``step`` its current problem (flow step), ``it`` its
    iteration within that problem; ``lam4`` is a number, or (n, 1, 1, 1) with a per-image lam.
    """

    _FIELDS = ("f", "gyf", "gxf", "py", "px", "z", "zbar", "w")

    def __init__(self, pr: _Problems, n: int, kernel_threads: Optional[int] = None):
        dev = pr.f.device
        self.kernel_threads = kernel_threads         # None: torch operations; else the CPU kernel's threads
        self.idx = torch.arange(n, device=dev)
        self.active = torch.ones(n, dtype=torch.bool, device=dev)   # False: finished, awaiting a new image
        self.step = torch.zeros(n, dtype=torch.int64, device=dev)
        self.it = torch.zeros(n, dtype=torch.int64, device=dev)
        self.row = pr.row[:n].clone()
        self.lam4 = pr.lam[:n].clone() if pr.per_image_lam else float(pr.lam[0])
        self.inv_lam4 = 1 / self.lam4
        for name in self._FIELDS:
            setattr(self, name, torch.empty_like(pr.f[:n]))
        # scratch: gy, gx (the gap's terms) and, for the torch path's iterations, tmp and z_next
        self._scratch = [torch.empty_like(self.z) for _ in range(2 if kernel_threads else 3)]
        self._bind_scratch()
        self.start(pr, slice(None), self.idx)

    def _bind_scratch(self) -> None:
        n = len(self.idx)
        self.gy, self.gx = self._scratch[0][:n], self._scratch[1][:n]
        if not self.kernel_threads:
            self.tmp = self._scratch[2][:n]
            self.z_next = torch.empty_like(self.z)     # swapped with z at every iteration

    def _lam64(self, pr: _Problems):
        return pr.lam64[self.idx] if pr.per_image_lam else float(pr.lam64[0])

    def _set_data(self, sl, f: torch.Tensor) -> None:
        """Data ``f`` (contiguous, for the slots ``sl``) and its gradient."""
        gyf, gxf = torch.empty_like(f), torch.empty_like(f)
        _grad_into(f, gyf, gxf)
        self.f[sl], self.gyf[sl], self.gxf[sl] = f, gyf, gxf

    def start(self, pr: _Problems, sl, images) -> None:
        """Begin the first problem of ``images`` in slots ``sl``: from ``pr.warm``, or p = 0, u = f."""
        self._set_data(sl, pr.f[images])
        if pr.warm is None:
            self.py[sl], self.px[sl], self.z[sl] = 0, 0, 0
        else:
            py = pr.warm[images, :, 0].to(pr.f).contiguous()
            px = pr.warm[images, :, 1].to(pr.f).contiguous()
            _zero_boundary_(py, px)
            _project_unit_ball(py, px, pr.vectorial, torch.empty_like(py))
            z = torch.empty_like(py)
            _scaled_div_into(py, px, 1 / pr.lam[images] if pr.per_image_lam else self.inv_lam4, z)
            self.py[sl], self.px[sl], self.z[sl] = py, px, z
        self.zbar[sl] = self.z[sl]

    def iterate(self, pr: _Problems, m: int) -> None:
        """``m`` iterations for every slot: on CPU (with numba) the fused kernel of :mod:`pock_cpu`,
        otherwise :meth:`iterate_once` ``m`` times; the two agree up to rounding."""
        if self.kernel_threads:
            n = len(self.idx)
            inv_lam = (self.inv_lam4.view(-1) if isinstance(self.inv_lam4, torch.Tensor)
                       else torch.full((n,), self.inv_lam4, dtype=self.z.dtype))
            # float32 gets the gap's terms from the kernel; float64 results are certified by the sums of
            # _gap_terms themselves, which keep their order
            self.energies = pock_cpu.iterate(
                self.py, self.px, self.z, self.zbar, self.w, self.gyf, self.gxf, self.f, pr.table, self.row,
                self.it, inv_lam.contiguous(), self.active, m, pr.vectorial,
                _PRIMAL_BLEND if self.f.dtype == torch.float32 else None, self.kernel_threads)
            self.it += m
        else:
            self.energies = None
            for _ in range(m):
                self.iterate_once(pr)

    def iterate_once(self, pr: _Problems) -> None:
        """One iteration of Algorithm 2 for every slot, with the step sizes of each slot's iteration."""
        c = pr.table[self.row, self.it]              # (n, 3): sigma, primal weight, 1 + theta
        sigma, w_u, w_bar = (c[:, j].view(-1, 1, 1, 1) for j in range(3))
        # p^{k+1} = proj(p^k + sigma_k grad ubar^k), grad ubar = grad f + grad zbar
        _grad_into(self.zbar, self.gy, self.gx)
        self.gy.add_(self.gyf)
        self.gx.add_(self.gxf)
        self.py.addcmul_(self.gy, sigma)
        self.px.addcmul_(self.gx, sigma)
        _project_unit_ball(self.py, self.px, pr.vectorial, self.tmp)
        # u^{k+1} = (u^k + tau div p^{k+1} + tau lam f) / (1 + tau lam) is the lerp from u^k to
        # f + div(p^{k+1})/lam with weight tau lam / (1 + tau lam); in z = u - f the same lerp runs
        # from z^k to w = div(p^{k+1})/lam. The extrapolation zbar = z^{k+1} + theta (z^{k+1} - z^k)
        # is a lerp with weight 1 + theta.
        _scaled_div_into(self.py, self.px, self.inv_lam4, self.w)
        torch.lerp(self.z, self.w, w_u, out=self.z_next)
        torch.lerp(self.z, self.z_next, w_bar, out=self.zbar)
        self.z, self.z_next = self.z_next, self.z
        self.it += 1

    def test(self, pr: _Problems):
        """Gap at ``x = u + BLEND (v - u)``; record and return the slots whose problem is done.

        The gap of every slot is evaluated in the working precision with float64 sums; a slot that
        passes is certified again in float64 from what would be returned (``f + z`` rounded, and a
        feasible ``p``), and only that certificate finishes it and is reported.
        """
        lam64 = self._lam64(pr)
        if self.energies is not None:
            e = self.energies
            tv_, fidelity, dual = e[:, 0], 0.5 * lam64 * e[:, 1], -lam64 * e[:, 2]
        else:
            tv_, fidelity, dual = _gap_terms(torch.lerp(self.z, self.w, _PRIMAL_BLEND), self.w, self.f, self.gyf,
                                             self.gxf, lam64, pr.vectorial, self.gy, self.gx)
        npix = self.f[0].numel()
        gap = (tv_ + fidelity - dual) / npix
        tol = pr.tol[self.idx, self.step]
        if pr.relative:
            # Relative to the step's own size; once the flow has all but stopped (a nearly flat
            # image), relative to the first step's; never below what the dtype's rounding can certify.
            size = torch.maximum(fidelity, _FLAT_FLOW * pr.first[self.idx])
            floor = _ROUNDING_UNITS * torch.finfo(self.f.dtype).eps * (tv_ + fidelity + dual.abs())
            tol = torch.maximum(tol * size, floor) / npix
        capped = self.it >= pr.max_iter
        cand = (((gap <= tol) | capped) & self.active).nonzero().view(-1)
        if len(cand) == 0:
            return None, None
        x = self.f[cand] + torch.lerp(self.z[cand], self.w[cand], _PRIMAL_BLEND)
        py, px = _feasible_dual(self.py[cand], self.px[cand], pr.vectorial, self.py.dtype)
        if self.f.dtype == torch.float64:
            # Already float64 throughout: rounding f + z and shrinking p change the gap by a few
            # rounding units of the energies, which the allowance of _certificate covers.
            cert = gap[cand] + _ROUNDING_ALLOWANCE * (tv_ + fidelity + dual.abs())[cand] / npix
        else:
            cert = _certificate(x, py, px, self.f[cand], lam64[cand] if isinstance(lam64, torch.Tensor) else lam64,
                                pr.vectorial)
        ok = (cert <= tol[cand]) | capped[cand]
        if not bool(ok.any()):
            return None, None
        sel = cand[ok]
        done = torch.zeros_like(capped)
        done[sel] = True
        i, s = self.idx[sel], self.step[sel]
        pr.x[i, s], pr.iters[i, s], pr.gap[i, s] = x[ok], self.it[sel], cert[ok]
        if pr.relative:
            pr.scale[i, s] = tol[sel] / pr.tol[i, s]
            pr.first[i] = torch.where(s == 0, fidelity[sel], pr.first[i])
        self.f[sel], self.py[sel], self.px[sel] = x[ok], py[ok], px[ok]
        last = done & (self.step == pr.S - 1)
        pr.py[self.idx[last]], pr.px[self.idx[last]] = self.py[last], self.px[last]
        return done & ~last, last

    def advance(self, pr: _Problems, mask) -> None:
        """The next flow step for slots ``mask``: data = the solution (already in ``f``), warm dual,
        the primal it implies, fresh step sizes."""
        self.step[mask] += 1
        self.it[mask] = 0
        self._set_data(mask, self.f[mask])
        z = torch.empty_like(self.z[mask])
        _scaled_div_into(self.py[mask], self.px[mask], self.inv_lam4[mask] if pr.per_image_lam else self.inv_lam4, z)
        self.z[mask] = z
        self.zbar[mask] = z

    def refill(self, pr: _Problems, free: torch.Tensor, images: torch.Tensor) -> None:
        """Slots ``free`` take the waiting ``images``."""
        self.idx[free], self.step[free], self.it[free], self.row[free] = images, 0, 0, pr.row[images]
        self.active[free] = True
        if pr.per_image_lam:
            self.lam4[free] = pr.lam[images]
            self.inv_lam4[free] = 1 / pr.lam[images]
        self.start(pr, free, images)

    def keep(self, mask) -> None:
        """Drop the slots outside ``mask`` (no image waits to take them)."""
        for name in ("idx", "active", "step", "it", "row") + self._FIELDS:
            setattr(self, name, getattr(self, name)[mask])
        if isinstance(self.lam4, torch.Tensor):
            self.lam4, self.inv_lam4 = self.lam4[mask], self.inv_lam4[mask]
        self._bind_scratch()


def _solve(f4, lam_all, per_image_lam, tols, max_iter, vectorial, warm, check_every, tau, gamma, slots,
           relative=False):
    """Chambolle-Pock iterations for ``S = tols.shape[1]`` consecutive problems per image.

    Problem ``s`` of image ``i`` is ROF with data ``x_{s-1}``, the solution of problem ``s-1``
    (``x_{-1} = f``), solved to a gap per pixel ``tols[i, s]``: one ROF solve for ``S = 1``, the
    implicit TV flow for ``S > 1``.

    At most ``slots`` images are iterated at a time, and the work is streamed: an image that
    finishes a flow step starts the next one at once, warm from its dual field, and an image that
    finishes its last step hands its slot to the next waiting image. So the working batch stays
    full, the slow last iterations of a few images are paid once per call (not once per step and
    piece), and the torch path's working arrays stay small enough for the CPU caches (the CPU kernel
    of :mod:`pock_cpu` keeps one image in the caches at a time whatever ``slots`` is). Every image
    follows the same iterations as it would alone.

    Returns the solutions (B, S, C, H, W), the last (feasible) dual field (p_y, p_x), iterations
    (B, S) and the certified gaps per pixel (B, S, float64).
    """
    pr = _Problems(f4, lam_all, per_image_lam, tols, max_iter, check_every, tau, gamma, warm, vectorial, relative)
    B = f4.shape[0]
    kernel = f4.device.type == "cpu" and _kernel_on()
    with pock_cpu.torch_on_one_thread() if kernel else contextlib.nullcontext() as threads:
        w = _Slots(pr, min(B, slots), threads)
        waiting = len(w.idx)                              # the next image to take a slot
        while True:
            w.iterate(pr, check_every)
            advance, last = w.test(pr)
            if advance is None:
                continue
            if advance.any():
                w.advance(pr, advance)
            w.active &= ~last
            free = (~w.active).nonzero().view(-1)
            n_new = min(len(free), B - waiting)
            if n_new:
                w.refill(pr, free[:n_new], torch.arange(waiting, waiting + n_new, device=f4.device))
                waiting += n_new
            n_idle = len(free) - n_new
            if n_idle == len(w.idx):
                break
            # Idle slots are dropped at once by the torch path (it would iterate them); the kernel skips
            # them, and the arrays are compacted only once a quarter of the slots is idle.
            if n_idle > (len(w.idx) // 4 if kernel else 0):
                w.keep(w.active)
    return pr.x, pr.py, pr.px, pr.iters, pr.gap, pr.scale


def rof(f: torch.Tensor, lam: Lam, *, tol: float = 1e-4, max_iter: int = 2000,
        vectorial: bool = False, warm: Optional[torch.Tensor] = None,
        return_info: bool = False, check_every: int = 10, tau: Optional[float] = None,
        gamma: Optional[float] = None):
    r"""Solve the ROF problem ``min_u TV(u) + lam/2 ||u - f||^2`` for a batch of images.

    Accelerated primal-dual algorithm (Chambolle & Pock 2011, Algorithm 2) on the saddle-point
    problem ``min_u max_{|p| <= 1} <grad u, p> + lam/2 ||u - f||^2``:

    .. math::

        p^{n+1} &= \Pi_{|p| \le 1}(p^n + \sigma_n \nabla \bar u^n) \\
        u^{n+1} &= (u^n + \tau_n \operatorname{div} p^{n+1} + \tau_n \lambda f) / (1 + \tau_n \lambda) \\
        \theta_n &= 1/\sqrt{1 + 2\gamma\tau_n},\quad \tau_{n+1} = \theta_n\tau_n,\quad
        \sigma_{n+1} = \sigma_n/\theta_n \\
        \bar u^{n+1} &= u^{n+1} + \theta_n (u^{n+1} - u^n)

    The data term is ``lam``-strongly convex, which is what the acceleration uses
    (``gamma <= lam``); ``tau_n sigma_n`` stays constant at ``1/||grad||^2 = 1/8``, so the
    convergence condition ``tau sigma L^2 <= 1`` holds at every step (the dissertation's fixed
    ``tau = 0.08, sigma = 1/(lam tau)`` gives ``8/7 > 1`` for ``lam = 7``).

    Every ``check_every`` iterations each image's duality gap ``P(x) - D(p)`` is evaluated at
    ``x = u + 0.4 (v - u)``, a point between the primal iterate ``u`` and the primal point
    ``v = f + div(p)/lam`` that the dual iterate implies (their errors partly cancel); an image
    whose gap per pixel is ``<= tol`` is finished, ``x`` is returned, and the image leaves the
    working batch. The gap certifies the result: ``lam/2 ||x - u*||^2 <= P(x) - D(p)``.

    Precision. The reported gap is a true upper bound for what is returned: an image that passes
    the test is certified again in float64 from the returned ``u`` and a dual ``p`` kept feasible
    (``|p| <= 1`` after rounding), plus a bound on float64's own rounding; only that certificate
    finishes it and is reported. The iterates are kept as ``z = u - f`` and every sum is
    accumulated in float64, so float32 reaches gaps of about 1e-7 per pixel on 256x256 photos
    (where iterating on ``u`` itself stalled near 5e-7, and float32 sums over 262k pixels
    reported gaps 4% below the true ones). Past about 380 iterations the float32 steps stop
    shrinking (Algorithm 1 from there on), since ever smaller primal steps drown in rounding.
    float16 and bfloat16 inputs are solved in float32 to ``tol`` and returned in their dtype; their
    ``info.gap`` is that of the rounded result (about 1e-4 per pixel for float16 images in
    [-1, 1], more for bfloat16), which may exceed ``tol``.

    On CPU at most about 2^18 pixels are iterated at a time (the arrays then stay in the caches);
    further images wait and take the place of finished ones. Between gap checks the loop makes
    no host-device synchronisation: the step sizes of every iteration are tabulated up front.

    Parameters
    ----------
    f : Tensor, shape (B, C, H, W), (C, H, W) or (H, W), float16, bfloat16, float32 or float64
        Images to denoise (any range; the toolkit uses [-1, 1]). Not differentiable: a tensor that
        requires grad is refused outside ``torch.no_grad()``.
    lam : float or Tensor of shape (B,)
        Fidelity weight (a Python or numpy number, a 0-d tensor), per image if a (B,) tensor. Larger ``lam`` removes less. Equals
        ``1/weight`` of scikit-image's ``denoise_tv_chambolle`` and ``1/dt`` of a TV-flow step.
    tol : float
        Stopping tolerance on the duality gap per pixel, ``(P(u) - D(p)) / (C H W)``.
    max_iter : int
        Iteration cap; images still above ``tol`` then are returned with a warning.
    vectorial : bool
        Couple channels with the colour TV (Frobenius norm of the Jacobian, see :func:`tv`).
    warm : Tensor, shape (B, C, 2, H, W), optional
        A dual field to start from (``info.dual`` of a previous, similar solve). The primal
        starts at ``u = f + div(warm)/lam``, the solution that dual field implies.
    return_info : bool
        Also return a :class:`RofInfo`.
    check_every : int
        Iterations between gap evaluations (each costs about half an iteration).
    tau : float, optional
        Initial primal step ``tau_0`` (default ``0.25 / lam``); ``sigma_0 = 1/(8 tau_0)``.
    gamma : float, optional
        Acceleration parameter, at most ``lam``; ``gamma = 0`` gives constant steps and
        ``theta = 1``, i.e. Chambolle & Pock's Algorithm 1. Default ``0.25 lam``. With
        ``tau_0 lam`` and ``gamma / lam`` fixed, the step schedule does not depend on ``lam``.
        Measured on CIFAR-10 images in [-1, 1] at ``lam = 7``, these defaults need about 14% fewer
        iterations to a gap of 5e-4 per pixel, and 11% fewer for the spectral flow's bands at 2%,
        than ``tau_0 = 1/sqrt(8), gamma = 0.35 lam``; ``gamma = 0.5 lam`` or more is slower.

    Returns
    -------
    u : Tensor, same shape as ``f``
    info : RofInfo, only if ``return_info``
    """
    f4, restore = _as_batch(f, "f")
    tol, max_iter, check_every = _check_solver_args(tol, max_iter, check_every)
    B, C, H, W = f4.shape
    lam_all = _lam_per_image(lam, B, f4)
    if warm is not None and (not isinstance(warm, torch.Tensor) or tuple(warm.shape) != (B, C, 2, H, W)):
        shape = tuple(warm.shape) if isinstance(warm, torch.Tensor) else type(warm).__name__
        raise ValueError(f"warm must be a dual field of shape {(B, C, 2, H, W)}, got {shape}")
    if warm is not None:
        _check_tensor(warm, "warm")

    tols = torch.full((B, 1), tol, dtype=torch.float64)
    per_image_lam = isinstance(lam, torch.Tensor) and lam.numel() > 1
    x, py, px, iters, gap, _ = _solve_batch(f4, lam_all, per_image_lam, tols, max_iter, vectorial, warm,
                                            check_every, tau, gamma)
    _warn_unconverged("rof", gap, tols, max_iter)
    u_res = restore(x[:, 0])
    if u_res.dtype != f4.dtype:
        # Half precision: certify what is returned, the rounded solution and a dual kept feasible.
        py, px = _feasible_dual(py, px, vectorial, u_res.dtype)
        gap[:, 0] = _certificate(u_res.reshape(f4.shape), py, px, f.reshape(f4.shape), lam_all.double(), vectorial)
    if not return_info:
        return u_res
    return u_res, RofInfo(iters=iters[:, 0], gap=gap[:, 0], dual=torch.stack((py, px), dim=2))


def _check_solver_args(tol, max_iter, check_every) -> tuple:
    return (_check_positive(tol, "tol"), _check_count(max_iter, "max_iter", "of iterations"),
            _check_count(check_every, "check_every", "of iterations"))


def _solve_batch(f4, lam_all, per_image_lam, tols, max_iter, vectorial, warm, check_every, tau, gamma,
                 relative=False):
    """:func:`_solve` on contiguous input; on CPU with a working batch that fits in the caches."""
    f4 = f4.contiguous()
    B, C, H, W = f4.shape
    slots = max(1, _cpu_chunk_elems() // (C * H * W)) if f4.device.type == "cpu" else B
    return _solve(f4, lam_all, per_image_lam, tols, max_iter, vectorial, warm, check_every, tau, gamma, slots,
                  relative)


def _warn_unconverged(who: str, gap: torch.Tensor, tols, max_iter: int) -> None:
    over = gap > tols.to(gap.device)
    if over.any():
        warnings.warn(f"{who}: {int(over.any(dim=1).sum())} of {gap.shape[0]} images did not reach gap/pixel "
                      f"<= {float(tols.min()):g} in {max_iter} iterations "
                      f"(worst gap {float(gap.max()):.3g}); raise max_iter", RuntimeWarning, stacklevel=3)


# ------------------------------------------------------------------ spectral TV framework

@dataclass
class SpectralDecomposition:
    """Gilboa's spectral TV decomposition of a batch, from the TV flow with time step ``dt = 1/lam``.

    Attributes
    ----------
    u : (B, N+2, C, H, W)
        TV-flow states ``u_0 = f``, ``u_{n+1} = rof(u_n, lam)``, ``n = 0..N``.
    phi : (B, N, C, H, W)
        Bands ``phi_n = n (u_{n-1} - 2 u_n + u_{n+1})``, ``n = 1..N``: the discrete
        ``phi(t_n) dt = t_n u_tt(t_n) dt`` (Gilboa 2014, eq. 2.9) at ``t_n = n dt``. Small ``n`` holds
        fine scales (small structures, texture, noise), large ``n`` coarse ones.
    residual : (B, C, H, W)
        ``(N+1) u_N - N u_{N+1}``, what the first ``N`` bands do not hold (the large scales and the
        mean), so that ``sum_n phi_n + residual == f`` (the sum telescopes).
    t : (N,)
        Band times ``t_n = n / lam``.
    S : (B, N)
        Spectrum ``S(t_n) = ||phi_n||_1`` per image.
    iters : (B, N+1)
        Chambolle-Pock iterations of each flow step.
    gap : (B, N+1) float64
        Certified duality gap per pixel of each flow step (see :class:`RofInfo`).
    lam : float
    """
    u: torch.Tensor
    phi: torch.Tensor
    residual: torch.Tensor
    t: torch.Tensor
    S: torch.Tensor
    iters: torch.Tensor
    gap: torch.Tensor
    lam: float

    @property
    def N(self) -> int:
        return self.phi.shape[1]

    def reconstruct(self, gains) -> torch.Tensor:
        """Filtered image ``sum_n H_n phi_n + residual`` for a transfer function ``H``.

        ``gains`` is a sequence of N numbers (one filter for the batch) or a (B, N) tensor (one per
        image). All ones gives back ``f`` exactly (to float rounding).
        """
        B, N = self.phi.shape[:2]
        g = torch.as_tensor(gains, dtype=self.phi.dtype, device=self.phi.device)
        if g.dim() == 1:
            g = g.expand(B, -1)
        if tuple(g.shape) != (B, N):
            raise ValueError(f"gains must have {N} entries or shape ({B}, {N}), got shape {tuple(g.shape)}")
        return torch.einsum("bn,bnchw->bchw", g, self.phi) + self.residual


def flow_bands(u: torch.Tensor):
    """Bands and residual from TV-flow states ``u`` of shape (B, N+2, C, H, W), ``u[:, 0] = f``.

    ``phi_n = n (u_{n-1} - 2 u_n + u_{n+1})`` for ``n = 1..N`` and ``residual = (N+1) u_N - N u_{N+1}``,
    the discrete ``phi(t) = t u_tt`` of Gilboa (2014) at ``t_n = n dt`` and what the first ``N``
    bands leave of ``f``. Any flow (another solver's, a reference's) gives its bands this way.
    """
    if not isinstance(u, torch.Tensor) or u.dim() != 5 or u.shape[1] < 3:
        shape = tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__
        raise ValueError(f"u must hold flow states of shape (B, N+2, C, H, W) with N >= 1, got {shape}")
    N = u.shape[1] - 2
    n = torch.arange(1, N + 1, dtype=u.dtype, device=u.device).view(1, N, 1, 1, 1)
    phi = n * (u[:, :N] - 2 * u[:, 1:N + 1] + u[:, 2:N + 2])
    residual = (N + 1) * u[:, N] - N * u[:, N + 1]
    return phi, residual


def band_gains(N: int, keep: Sequence[int], gain: float = 1.0, other: float = 0.0) -> list:
    """Gains for :meth:`SpectralDecomposition.reconstruct` that keep bands ``keep`` (1-based).

    ``band_gains(N, range(1, k+1), 0.0, 1.0)`` removes the ``k`` finest bands (a low-pass filter:
    fine texture and noise go), ``band_gains(N, range(1, k+1))`` keeps only them (a high-pass filter
    without the residual, add ``residual`` back for a band-stop), and ``gain > 1`` amplifies them.
    """
    keep = set(int(k) for k in keep)
    bad = [k for k in keep if not 1 <= k <= N]
    if bad:
        raise ValueError(f"band indices must lie in 1..{N}, got {sorted(bad)}")
    return [gain if n in keep else other for n in range(1, N + 1)]


def flow_tolerances(tol: float, n_steps: int, relative: bool = False) -> list:
    """Tolerance of each TV-flow step ``k = 1..n_steps``: ``tol * k**(-3/2)``, or ``tol * k**(-1/2)``
    for the relative tolerances of :func:`spectral`'s default.

    Band ``n`` is ``n`` times a second difference of flow states, so an error in state ``k``
    reaches bands ``k-1..k+1`` amplified about ``k`` times. A state error is at most
    ``sqrt(2 gap / lam)`` per pixel. With absolute gaps, ``k**(-3/2)`` gives the most even band
    errors on real images (measured: ``k**-1`` leaves the coarse bands 2x worse, ``k**-2`` the fine
    ones). Relative gaps are multiples of the step's own fidelity ``lam/2 ||u_k - u_{k-1}||^2``,
    which already falls with ``k`` (about like ``k**-1.6`` on CIFAR-10), so ``k**(-1/2)`` is enough
    (measured: ``k**0`` leaves the coarse bands 2x worse, ``k**-1`` costs 30% more iterations).
    """
    power = _FLOW_POWER["relative" if relative else "absolute"]
    return [tol * k ** -power for k in range(1, n_steps + 1)]


def spectral(f: torch.Tensor, N: int = 5, lam: float = 7.0, *, tol: Optional[float] = None,
             vectorial: bool = False, max_iter: int = 2000) -> SpectralDecomposition:
    """Spectral TV decomposition of a batch into ``N`` bands and a residual.

    The TV flow is integrated by implicit Euler, ``u_{n+1} = argmin_u TV(u) + lam/2 ||u - u_n||^2``
    (one :func:`rof` solve per step, ``dt = 1/lam``), then (Gilboa 2014, Burger et al. 2016)

        phi_n    = n (u_{n-1} - 2 u_n + u_{n+1}),      n = 1..N
        residual = (N+1) u_N - N u_{N+1}
        S(t_n)   = ||phi_n||_1

    and ``f = sum_n phi_n + residual``. Needs ``N+1`` ROF solves, each warm-started from the dual
    field of the previous one and streamed through one working batch (see :func:`rof` for the
    solver).

    Accuracy. A band is ``n`` times a second difference of flow states, so it amplifies the
    error of each solve, more for the coarser bands: with one tolerance for every step (the
    dissertation's scheme) the bands of CIFAR-10 images at a gap of 1e-4 per pixel were off by 3%
    (phi_1) to 19% (phi_5). And a tolerance per pixel does not carry across image sizes: larger
    images of a scene are smoother per pixel and their bands weaker, so one absolute tolerance
    that kept 32x32 bands within 1.5% left 64x64 ones at 3% and 256x256 ones at 7%.

    So by default (``tol=None``) the tolerance is scale-aware: step ``k`` of each image stops when
    its certified gap is at most ``SPECTRAL_TOL k^(-1/2)`` times the step's own fidelity
    ``lam/2 ||u_k - u_{k-1}||^2`` (both per pixel, measured at the returned point), i.e. each flow
    step's increment is known to a fixed relative accuracy (:func:`flow_tolerances`). Two floors
    keep it reachable: a step whose fidelity fell below 5% of the first step's (a nearly flat
    image whose flow has all but stopped) is held relative to that, and no gap below eight
    rounding units of the energies is asked for. With
    it every band phi_1..phi_5 of real photographs in [-1, 1] at ``lam = 7`` lies within 2%
    relative L2 error (over a batch) of a float64 decomposition solved to a gap of 1e-9 per pixel
    (1e-8 at 256x256), at every size measured: at most 1.0% at 32x32 (CIFAR-10 test), 1.3% at 64x64
    (Imagenette val; 1.2% on scikit-image's photographs), 1.7% at 128x128, and 1.6% (Imagenette,
    upsampled) and 1.9% (scikit-image's photographs) at 256x256; ``bench_pock.py`` reports it per
    size and ``tests/test_pock.py`` checks the 2% at 32, 64 and 128. The band error scales roughly
    like the square root of the tolerance. The price of holding it at every size is iterations:
    about 1,000 per image at 32x32 and 2,000 at 256x256 (six flow steps together), where the old
    absolute default spent 700 and 900 for bands 1.5% and 7% off.

    An explicit ``tol`` is an absolute duality gap per pixel for the first step, ``tol k^(-3/2)``
    for step ``k``, as in :func:`rof`.

    Precision. float32 certifies gaps down to about 1e-7 per pixel (the solver iterates on
    ``u - f`` with float64 sums, see :func:`rof`); float16 and bfloat16 input is decomposed in
    float32 and every field returned in the input's dtype.

    Parameters
    ----------
    f : Tensor, shape (B, C, H, W), (C, H, W) or (H, W)
    N : int
        Number of bands.
    lam : float
        ``1/dt`` of the flow; the dissertation uses 7 for images in [-1, 1].
    tol : float, optional
        None: the scale-aware default above. A number: the absolute duality gap per pixel of the
        first flow step; step ``k`` is solved to ``tol k^(-3/2)``.
    vectorial : bool
        Colour TV coupling the channels (see :func:`tv`).
    max_iter : int
        Iteration cap of each flow step.

    Returns
    -------
    SpectralDecomposition
        Batched fields; a single image of shape (C, H, W) or (H, W) gives batch size 1.
    """
    f4, restore = _as_batch(f, "f")
    N = _check_count(N, "N", "number of bands")
    lam = _check_positive(lam, "lam")
    relative = tol is None
    tol, max_iter, _ = _check_solver_args(SPECTRAL_TOL if relative else tol, max_iter, 10)
    tols = torch.tensor(flow_tolerances(tol, N + 1, relative), dtype=torch.float64).expand(f4.shape[0], -1)
    # Each flow step is warm-started from the previous step's dual field (see _solve).
    x, _, _, iters, gap, scale = _solve_batch(f4, _lam_per_image(lam, f4.shape[0], f4), False, tols, max_iter,
                                              vectorial, None, 10, None, None, relative)
    if relative:
        tols = tols * scale.cpu()
    _warn_unconverged("spectral", gap, tols, max_iter)
    dtype = f.dtype                                  # the caller's (half precision is solved in float32)
    u = torch.cat((f4.unsqueeze(1), x), dim=1)
    phi, residual = flow_bands(u)
    t = torch.arange(1, N + 1, dtype=f4.dtype, device=f4.device) / lam
    S = phi.abs().sum(dim=(2, 3, 4))
    u, phi, residual, t, S = (v.to(dtype) for v in (u, phi, residual, t, S))
    return SpectralDecomposition(u=u, phi=phi, residual=residual, t=t, S=S, iters=iters, gap=gap, lam=lam)


# --------------------------------------------------------------------------- augmentation

def _check_gains(gains) -> tuple:
    """``gains`` as ``(lo, hi)`` of Python numbers; two integers (Python, numpy or 0-d tensor) select
    the integer draw (see :func:`random_gains`)."""
    try:
        lo, hi = gains
        lo, hi = _number(lo, "gains"), _number(hi, "gains")
    except (TypeError, ValueError):
        raise ValueError(f"gains must be a pair of numbers (lo, hi), got {gains!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo or lo < 0:
        raise ValueError(f"gains must be a range [lo, hi) with 0 <= lo < hi, got {tuple(gains)}")
    return lo, hi


def random_gains(batch: int, n_bands: int, gains=(3, 5), *, per_image: bool = True,
                 generator: Optional[torch.Generator] = None, device=None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Gains ``k`` drawn uniformly from ``[gains[0], gains[1])``, shape (batch, n_bands).

    Two Python ints draw integers, as the dissertation did: ``(3, 5)`` gives ``k`` in {3, 4}. Any
    float draws from the continuous interval: ``(1.5, 2.5)`` gives milder amplification,
    ``(0.0, 1.0)`` attenuates the bands (``k = 0`` removes them). ``per_image=False`` draws one row
    and repeats it for the whole batch, as the dissertation did. A ``generator`` makes the draw
    reproducible; it must live on ``device`` (default: CPU).
    """
    lo, hi = _check_gains(gains)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    rows = batch if per_image else 1
    if isinstance(lo, int) and isinstance(hi, int):
        k = torch.randint(lo, hi, (rows, n_bands), generator=generator, device=gen_device)
    else:
        k = lo + (hi - lo) * torch.rand((rows, n_bands), generator=generator, device=gen_device,
                                        dtype=torch.float64)
    k = k.to(device=device if device is not None else gen_device, dtype=dtype)
    return k.expand(batch, n_bands) if not per_image else k


def amplify_bands(f: torch.Tensor, phi_sel: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``f + sum_j (k_j - 1) phi_j``: ``f`` with the selected bands scaled by ``k_j``.

    Parameters
    ----------
    f : (B, C, H, W)
    phi_sel : (B, K, C, H, W), the selected bands of ``f`` (any float dtype, e.g. a float16 cache)
    k : (B, K) gains
    """
    if phi_sel.dim() != 5 or phi_sel.shape[0] != f.shape[0] or phi_sel.shape[2:] != f.shape[1:]:
        raise ValueError(f"phi_sel must have shape (B, K, C, H, W) matching f {tuple(f.shape)}, "
                         f"got {tuple(phi_sel.shape)}")
    if tuple(k.shape) != tuple(phi_sel.shape[:2]):
        raise ValueError(f"k must have shape {tuple(phi_sel.shape[:2])}, got {tuple(k.shape)}")
    w = (k.to(f.dtype) - 1).view(*k.shape, 1, 1, 1)
    return f + (w * phi_sel.to(f.dtype)).sum(dim=1)


def _check_bands(bands) -> tuple:
    try:
        out = tuple(_check_count(b, "band", "index") for b in bands)
    except (TypeError, ValueError):
        out = ()
    if not out:
        raise ValueError(f"bands must be a non-empty list of 1-based band indices, got {bands!r}")
    return out


def spectral_augment(f: torch.Tensor, bands: Sequence[int] = (1, 2), gains=(3, 5), lam: float = 7.0, *,
                     per_image: bool = True, generator: Optional[torch.Generator] = None,
                     tol: Optional[float] = None, vectorial: bool = False) -> torch.Tensor:
    """Spectral TV augmentation: ``w = f + sum_{j in bands} (k_j - 1) phi_j``.

    The chosen bands (1-based; band 1 is the finest scale) are amplified by integer gains ``k_j``
    drawn uniformly from ``[gains[0], gains[1])`` -- per image by default, or one draw for the
    whole batch with ``per_image=False`` (the dissertation's behaviour). Only the
    ``max(bands) + 1`` flow steps these bands need are computed.

    For training, decompose once and cache the bands, then call :func:`random_gains` and
    :func:`amplify_bands` per batch (see ``toolkit/bandcache.py``).
    """
    f4, restore = _as_batch(f, "f")
    bands = _check_bands(bands)
    dec = spectral(f4, N=max(bands), lam=lam, tol=tol, vectorial=vectorial)
    phi_sel = dec.phi[:, [b - 1 for b in bands]]
    k = random_gains(f4.shape[0], len(bands), gains, per_image=per_image, generator=generator,
                     device=f4.device, dtype=f4.dtype)
    return restore(amplify_bands(f4, phi_sel, k))


class SpectralAugment(nn.Module):
    """Batched spectral TV augmentation as a module; see :func:`spectral_augment`.

    Works on any device: the decomposition runs where the batch is. A ``generator`` (on the
    batch's device) makes the gains reproducible.
    """

    def __init__(self, bands: Sequence[int] = (1, 2), gains=(3, 5), lam: float = 7.0, *,
                 per_image: bool = True, tol: Optional[float] = None, vectorial: bool = False,
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        self.bands = _check_bands(bands)
        lam = _check_positive(lam, "lam")
        if tol is not None:
            tol = _check_positive(tol, "tol")
        self.gains, self.lam, self.per_image = _check_gains(gains), lam, per_image
        self.tol, self.vectorial, self.generator = tol, vectorial, generator

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return spectral_augment(f, self.bands, self.gains, self.lam, per_image=self.per_image,
                                generator=self.generator, tol=self.tol, vectorial=self.vectorial)

    def extra_repr(self) -> str:
        return f"bands={self.bands}, gains={self.gains}, lam={self.lam}, per_image={self.per_image}"
