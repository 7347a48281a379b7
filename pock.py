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

import numpy as np
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


# On CPU the iterations run in the fused kernel of pock_cpu: the same arithmetic in one pass per image
# and iteration instead of about twenty passes over the batch. False runs them as torch operations (the
# path CUDA takes), which the tests and bench_pock.py compare with the kernel.
USE_CPU_KERNEL = True
_warned_no_numba = False


def _cpu_chunk_elems() -> int:
    # The kernel keeps one image at a time in the caches, so its batch in flight only bounds memory, and
    # many images in flight keep every thread busy to the end; the torch path's arrays must fit the caches.
    return _KERNEL_CHUNK_ELEMS if _kernel_on() else _CPU_CHUNK_ELEMS


def _serial_on_cpu(f):
    """The kernel's threads for a CPU batch (see :func:`_solve`), entered before anything else is done with it:
    torch's parallel operations on the input (its checks) would leave OpenMP workers spinning against the
    kernel's first iterations."""
    on = isinstance(f, torch.Tensor) and f.device.type == "cpu" and USE_CPU_KERNEL and pock_cpu.AVAILABLE
    return pock_cpu.torch_serial_in_this_thread() if on else contextlib.nullcontext()


def _kernel_on() -> bool:
    """Whether CPU work runs in the kernel; says once why not when numba is missing."""
    global _warned_no_numba
    if USE_CPU_KERNEL and not pock_cpu.AVAILABLE and not _warned_no_numba:
        _warned_no_numba = True
        warnings.warn(f"pock: numba could not be imported ({pock_cpu.MISSING}), so rof and spectral run on CPU "
                      f"as torch operations, 3-5x slower than numba's kernel (bench_pock.py measures it); "
                      f"pip install numba (requirements.txt)", RuntimeWarning, stacklevel=6)
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


def _lam_per_image(lam: Lam, batch: int, like: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """``lam`` as a (B,) tensor on ``like``'s device, in ``dtype`` (default ``like``'s), validated."""
    dtype = dtype or like.dtype
    if isinstance(lam, torch.Tensor) and lam.dim() > 0:
        lam_t = lam.detach().to(device=like.device, dtype=dtype).reshape(-1)
        if lam_t.numel() == 1:
            lam_t = lam_t.expand(batch)
        if lam_t.numel() != batch:
            raise ValueError(f"lam must be a number or a tensor of shape ({batch},), "
                             f"got shape {tuple(lam.shape)}")
        if not (torch.isfinite(lam_t).all() and (lam_t > 0).all()):
            raise ValueError("lam must be positive and finite for every image")
        return lam_t.contiguous()
    return torch.full((batch,), _check_positive(lam, "lam"), device=like.device, dtype=dtype)


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


@functools.lru_cache(maxsize=32)
def _column_weights(H: int, W: int, dtype: torch.dtype) -> torch.Tensor:
    """(H*W,): 1 where the difference along a row stays inside the image, 0 on the last column.

    Read off :func:`_grad_into` (the differences of ``0, 1, 2, ...`` along rows), so that the boundary
    rule is written once: the CPU kernel takes it as data.
    """
    u = torch.arange(H * W, dtype=dtype).view(1, 1, H, W)
    gy, gx = torch.empty_like(u), torch.empty_like(u)
    _grad_into(u, gy, gx)
    return gx.view(-1)


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


def _gap_sums(gy, gx, r, f, d, vectorial: bool, total):
    """The sums that every energy and duality gap here is assembled from, per image:
    ``TV = total(|(gy, gx)|)`` (with ``gy, gx = grad u``), ``total(r^2)`` (``r = u - f``), ``total(f d)`` and
    ``total(d^2)`` (``d = div p``), so that ``P(u) = TV + lam/2 total(r^2)`` and
    ``D(p) = -total(f d) - total(d^2) / (2 lam)``. Pieces given as None give None."""
    tv_ = None if gy is None else total(_pointwise_norm(gy, gx, vectorial))
    rr = None if r is None else total(r * r)
    fd = None if d is None else total(f * d)
    dd = None if d is None else total(d * d)
    return tv_, rr, fd, dd


def _sum4(x: torch.Tensor) -> torch.Tensor:
    return x.sum(dim=(1, 2, 3))


def _tv(u: torch.Tensor, vectorial: bool) -> torch.Tensor:
    """TV per image."""
    u = u.contiguous()
    gy, gx = torch.empty_like(u), torch.empty_like(u)
    _grad_into(u, gy, gx)
    return _gap_sums(gy, gx, None, None, None, vectorial, _sum4)[0]


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
    u4 = u4.to(torch.promote_types(u4.dtype, f4.dtype)).contiguous()
    f4 = f4.to(u4.dtype)
    lam_t = _lam_per_image(lam, f4.shape[0], f4)
    gy, gx = torch.empty_like(u4), torch.empty_like(u4)
    _grad_into(u4, gy, gx)
    tv_, rr, _, _ = _gap_sums(gy, gx, u4 - f4, None, None, vectorial, _sum4)
    return tv_ + 0.5 * lam_t * rr


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
    _, _, fd, dd = _gap_sums(None, None, None, f4, d, False, _sum4)
    return -fd - dd / (2 * lam_t)


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
    ``lam`` is a number or a (B,) float64 tensor; ``gy``, ``gx`` are scratch. A screen: what is
    reported is :func:`_certificate`'s.
    """
    _grad_into(z, gy, gx)
    gy.add_(gyf)
    gx.add_(gxf)
    tv_, zz, fw, ww = _gap_sums(gy, gx, z, f, w, vectorial, _sum64)
    return tv_, 0.5 * lam * zz, -lam * (fw + 0.5 * ww)


# Floor of the dimensionless primal step ``tau_k lam`` in float32 (reached after about 380
# iterations with the default schedule; Algorithm 1's constant steps from there on). Without it
# ``tau_k -> 0`` and ``sigma_k -> inf``, and the shrinking primal updates drown in float32 rounding:
# on 256x256 photos the gap stalled near 1e-7 per pixel and then grew again. With the floor it keeps
# falling (4e-8 after 3,200 iterations). float64 needs no floor, and the O(1/k^2) rate of the
# unfloored schedule matters for the very tight tolerances of reference solutions.
_MIN_STEP = {torch.float32: 0.01, torch.float64: 0.0}


@functools.lru_cache(maxsize=64)
def _dimensionless_steps(s0: float, g: float, n_steps: int, s_min: float) -> torch.Tensor:
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
    return torch.tensor(out, dtype=torch.float64)            # (cached: converting 2,000 rows costs 1.5 ms)


def _step_table(lam_all: torch.Tensor, tau, gamma, n_steps: int, dtype: torch.dtype):
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
    s_min = _MIN_STEP[dtype]
    lams, rows = torch.unique(lam_all.double().cpu(), return_inverse=True)
    table = torch.empty(len(lams), n_steps, 3, dtype=torch.float64)
    for r, lam in enumerate(lams.tolist()):
        s0 = 0.25 if tau is None else float(tau) * lam            # tau_0 lam
        g = 0.25 if gamma is None else float(gamma) / lam          # gamma / lam
        table[r] = _dimensionless_steps(s0, g, n_steps, s_min)
        table[r, :, 0] *= lam                                      # sigma_k = lam / (8 tau_k lam)
    return rows.to(lam_all.device), table.to(device=lam_all.device, dtype=dtype)


# Bounds on the rounding of the float64 certificate (see _certificate): on the absolute values summed, the
# error of torch's cascaded sums (about log2(terms) rounding units, 24 for 1.6e7 terms; 1e-13 is 450), and
# a few rounding units of each centred value that enters them.
_ROUNDING_ALLOWANCE = 1e-13
_CAST_UNITS = 64


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


# On CPU a certificate is computed in pieces of at most this many values per array (runs of whole images,
# as few as fit, or bands of rows of a large image), which stay in the caches: 2.5-3.5x faster than a whole
# batch of 512 32x32 images or a whole 512x512 image. (Sharing the pieces among threads measured slower:
# torch's calls then wait for each other's interpreter lock.)
_CERT_PIECE_ELEMS = 1 << 16


def _pieces(B: int, C: int, H: int, W: int, on_cpu: bool) -> list:
    """``(images, r0, r1)``: runs of whole images, or one image's rows ``r0 <= y < r1`` (the bands fixed by the
    image's shape, so that a large image's certificate does not depend on the batch it is in)."""
    per_image = C * H * W
    if not on_cpu or B * per_image <= _CERT_PIECE_ELEMS:
        return [(slice(0, B), 0, H)]
    if per_image <= _CERT_PIECE_ELEMS:
        k = -(-B * per_image // _CERT_PIECE_ELEMS)                   # as few runs as fit, of even length
        return [(slice(B * j // k, B * (j + 1) // k), 0, H) for j in range(k)]
    rows = max(1, _CERT_PIECE_ELEMS // (2 * C * W))
    return [(slice(i, i + 1), r, min(r + rows, H)) for i in range(B) for r in range(0, H, rows)]


def _certificate_sums(piece, u, z, py, px, f, c, vectorial):
    """(n, 5) float64 for the images of ``piece`` (see :func:`_pieces`) over its rows: TV, ``||u - f||^2``,
    ``<f, div p>``, ``||div p||^2`` and ``||f||^2``, all of ``u, f`` less ``c``.

    A band of rows takes the row below it for ``grad u`` and the row above it for ``div p``, and drops the
    boundary rows the operators give those (so the operators themselves are the ones of the whole image)."""
    sl, r0, r1 = piece
    H = f.shape[2]
    top, bottom = max(r0 - 1, 0), min(r1 + 1, H)
    if sl != slice(0, len(f)):
        u, z, py, px, f, c = (t if t is None else t[sl] for t in (u, z, py, px, f, c))
    if (r0, r1) != (0, H):                                       # a band: the rows it needs, then its own
        u, z, f = (t if t is None else t[:, :, r0:bottom] for t in (u, z, f))
        py, px = py[:, :, top:r1], px[:, :, top:r1]
    fc = torch.sub(f, c)                                         # float64: the casts are exact
    uc = (torch.add(fc, z) if z is not None else torch.sub(u, c)).contiguous()
    gy, gx = torch.empty_like(uc), torch.empty_like(uc)
    _grad_into(uc, gy, gx)
    d = torch.empty_like(fc) if (r0, r1) == (0, H) else torch.empty(py.shape, dtype=fc.dtype, device=fc.device)
    _div_into(py.double().contiguous(), px.double().contiguous(), d)
    if (r0, r1) != (0, H):
        n = r1 - r0
        uc, fc, d, gy, gx = uc[:, :, :n], fc[:, :, :n], d[:, :, r0 - top:], gy[:, :, :n], gx[:, :, :n]
    tv_, rr, fd, dd = _gap_sums(gy, gx, uc - fc, fc, d, vectorial, _sum4)
    return torch.stack((tv_, rr, fd, dd, _sum4(fc * fc)), dim=1)


def _certificate(u: Optional[torch.Tensor], py: torch.Tensor, px: torch.Tensor, f: torch.Tensor, lam,
                 vectorial: bool, z: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Duality gap per pixel ``(P(u) - D(p)) / (C H W)`` of the given pair, in float64, rounded up.

    Everything is recomputed from the tensors as they are given (``u``, ``p`` and ``f`` cast to float64;
    ``p`` must be feasible), or, with ``z`` instead of ``u``, for the point ``u = f + z`` without rounding
    it to ``f``'s dtype first. ``lam`` is a number or a (B,) tensor. On CPU the work is cut into pieces that
    fit the caches.

    The sums run on values less each image's (and channel's) mean ``c`` of ``f``: ``TV``, ``u - f`` and
    ``<f, div p>`` do not change under ``u, f -> u - c, f - c`` (``div p`` sums to zero), and rounding
    errors then scale with ``|u - c|``, not ``|u|`` (with ``f = 1000 + 1e-3 rand``, float64 sums of the
    uncentred terms reported a gap of 8.4e-14 per pixel for a true 9.5e-14). Added, so that the value is an
    upper bound on the true gap of the pair: ``1e-13`` of the absolute values summed (float64's
    rounding of the sums) and ``64 eps`` of each centred value entering them (``u - c`` is exact only near
    ``c``, and ``div p`` is rounded; each costs at most ``eps`` of the value in TV, ``<f, div p>``,
    ``||div p||^2`` and the fidelity). Sums of absolute values are bounded by norms (Cauchy-Schwarz), which
    the sums already give: ``sum |x| <= sqrt(n) ||x||``, ``sum |a b| <= ||a|| ||b||``.
    """
    B, C, H, W = f.shape
    c = f.mean(dim=(2, 3), keepdim=True, dtype=torch.float64)
    pieces = _pieces(B, C, H, W, f.device.type == "cpu")
    if len(pieces) == 1:
        sums = _certificate_sums(pieces[0], u, z, py, px, f, c, vectorial)
    else:
        sums = torch.zeros((B, 5), dtype=torch.float64, device=f.device)
        for piece in pieces:
            sums[piece[0]] += _certificate_sums(piece, u, z, py, px, f, c, vectorial)
    # the rest is arithmetic on a few numbers per image: numpy's float64 is the same, without torch's overhead
    tv_, rr, fd, dd, ff = sums.cpu().numpy().T
    nr, nd, nf = np.sqrt(rr), np.sqrt(dd), np.sqrt(ff)
    nu = nr + nf                                                      # >= ||u|| (triangle inequality)
    lam = lam.double().cpu().numpy().reshape(-1) if isinstance(lam, torch.Tensor) else float(lam)
    primal, dual = tv_ + 0.5 * lam * rr, fd + dd / (2 * lam)          # P(u) and -D(p)
    cast = math.sqrt(C * H * W) * (nu + nf + nd / lam) + lam * nr * (nu + nf)
    rounding = _ROUNDING_ALLOWANCE * (primal + nf * nd + dd / (2 * lam)) + _CAST_UNITS * np.finfo(np.float64).eps * cast
    return torch.from_numpy((primal + dual + rounding) / (C * H * W)).to(f.device)


class _Problems:
    """The problems of :func:`_solve`: data, step schedule, tolerances and the results so far."""

    def __init__(self, f4, lam_all, per_image_lam, tols, max_iter, check_every, tau, gamma, warm, vectorial,
                 relative=False, out_dtype=None, dual_dtype=None):
        B, C, H, W = f4.shape
        self.f, self.warm, self.vectorial, self.max_iter = f4, warm, vectorial, max_iter
        # What is returned, and so certified: every solution rounded to out_dtype (the caller's; half
        # precision is solved in float32), the last dual field made feasible in dual_dtype (None: not returned).
        self.out_dtype, self.dual_dtype = out_dtype or f4.dtype, dual_dtype
        # relative: tols are multiples of each problem's own fidelity lam/2 ||u - f||^2 per pixel at
        # the tested point; `scale` records the factor each problem finished with.
        self.relative = relative
        self.S = tols.shape[1]
        self.scale = torch.ones((B, self.S), dtype=torch.float64, device=f4.device)
        self.first = torch.zeros(B, dtype=torch.float64, device=f4.device)     # first step's fidelity
        # lam_all is float64, as given: the iterations use it in the working dtype, the certificate exactly
        self.lam = lam_all.to(f4.dtype).view(-1, 1, 1, 1)
        self.lam64 = lam_all.double()
        self.per_image_lam = per_image_lam
        self.tol = tols.to(device=f4.device, dtype=torch.float64)             # (B, S)
        # Images are tested every check_every iterations, so one may run that much past max_iter.
        self.row, self.table = _step_table(lam_all, tau, gamma, max_iter + check_every, f4.dtype)
        self.x = torch.empty((B, self.S, C, H, W), dtype=f4.dtype, device=f4.device)
        self.py, self.px = torch.empty_like(f4), torch.empty_like(f4)
        self.iters = torch.zeros((B, self.S), dtype=torch.int64, device=f4.device)
        self.gap = torch.zeros((B, self.S), dtype=torch.float64, device=f4.device)
        # finished above tol because the returned dtype cannot hold the solution closer (see _Slots.test)
        self.rounding_limited = torch.zeros((B, self.S), dtype=torch.bool, device=f4.device)


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
        if isinstance(sl, slice) and sl == slice(None):           # every slot: straight into place
            self.f.copy_(f)
            _grad_into(self.f, self.gyf, self.gxf)
            return
        gyf, gxf = torch.empty_like(f), torch.empty_like(f)
        _grad_into(f, gyf, gxf)
        self.f[sl], self.gyf[sl], self.gxf[sl] = f, gyf, gxf

    def start(self, pr: _Problems, sl, images) -> None:
        """Begin the first problem of ``images`` in slots ``sl``: from ``pr.warm``, or p = 0, u = f."""
        self._set_data(sl, pr.f if len(images) == len(pr.f) else pr.f[images])
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

    def iterate(self, pr: _Problems, m: int, until_screened: bool = False) -> None:
        """``m`` iterations for every slot: on CPU (with numba) the fused kernel of :mod:`pock_cpu`,
        otherwise :meth:`iterate_once` ``m`` times; the two agree up to rounding.

        ``until_screened``, with one image left in the slots: the kernel goes on by rounds of ``m`` up to the
        first round that passes :meth:`test`'s screen (or reaches ``max_iter``), deciding as :meth:`test` does on
        the same numbers, so the iterations are the same, in one call instead of one per round (one 512x512 image:
        1.1x faster on 1 thread and on 2, results bitwise identical)."""
        if self.kernel_threads:
            n = len(self.idx)
            inv_lam = (self.inv_lam4.view(-1) if isinstance(self.inv_lam4, torch.Tensor)
                       else torch.full((n,), self.inv_lam4, dtype=self.z.dtype))
            H, W = self.f.shape[-2:]
            screen = None
            if until_screened and int(self.active.sum()) == 1:
                lam64 = self._lam64(pr)
                lam64 = lam64 if isinstance(lam64, torch.Tensor) else torch.full((n,), lam64, dtype=torch.float64)
                per_image = torch.stack((lam64, pr.tol[self.idx, self.step], pr.first[self.idx]), dim=1)
                screen = (per_image, pr.relative, _FLAT_FLOW, _ROUNDING_UNITS * torch.finfo(self.f.dtype).eps,
                          pr.max_iter)
            self.energies = pock_cpu.iterate(
                self.py, self.px, self.z, self.zbar, self.w, self.gyf, self.gxf, self.f,
                _column_weights(H, W, self.f.dtype), pr.table, self.row, self.it, inv_lam.contiguous(),
                self.active, m, pr.vectorial, _PRIMAL_BLEND, self.kernel_threads, screen=screen)
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

        The gap of every slot is screened in the working precision with float64 sums (by the CPU kernel or
        :func:`_gap_terms`); a slot that passes is certified by :func:`_certificate` from what is returned:
        ``x`` rounded to the caller's dtype, a dual field made feasible (in the caller's dtype if it is
        returned), and the data as returned (``f``, or the previous flow state as returned). Only that
        certificate finishes a slot, and it is what is reported.

        When rounding to the returned dtype alone costs more than half the tolerance (half precision, or
        a large offset such as ``1000 + f`` in float32), no iteration can bring the returned pair to
        ``tol``: the slot finishes once the unrounded point is certified to ``tol`` (half precision is thus
        solved as in float32), and reports the larger gap of what it returns.
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
        # (views, not copies, when every slot is a candidate: one large image, or the last check of max_iter)
        take = (lambda t: t) if len(cand) == len(self.idx) else (lambda t: t[cand])
        lam_c = take(lam64) if isinstance(lam64, torch.Tensor) else lam64
        step, f = torch.lerp(take(self.z), take(self.w), _PRIMAL_BLEND), take(self.f)
        x = (f + step).to(pr.out_dtype).to(f.dtype)
        py, px = _feasible_dual(take(self.py), take(self.px), pr.vectorial, self.py.dtype)
        if pr.dual_dtype is None or pr.dual_dtype == py.dtype:
            py_out, px_out = py, px
        else:
            py_out, px_out = _feasible_dual(py, px, pr.vectorial, pr.dual_dtype)
            py_out, px_out = py_out.to(py.dtype), px_out.to(py.dtype)
        cert = _certificate(x, py_out, px_out, f, lam_c, pr.vectorial)
        tol_c = tol[cand]
        ok = (cert <= tol_c) | capped[cand]
        limited = None
        late = (~ok).nonzero().view(-1)
        half = pr.out_dtype != f.dtype
        if len(late) and not half:
            # Rounding x costs at most TV(x_out - x) <= 2 eps sum|x| (and a little fidelity): where that is far
            # below tol, iterating on is what helps, and the unrounded point need not be certified.
            bound = 2 * torch.finfo(pr.out_dtype).eps * x[late].abs().sum(dim=(1, 2, 3)) / npix
            late = late[bound > 0.25 * tol_c[late]]
        if len(late):
            cert_w = _certificate(None, py[late], px[late], f[late],
                                  lam_c[late] if isinstance(lam_c, torch.Tensor) else lam_c, pr.vectorial,
                                  z=step[late])
            rounding = cert[late] - cert_w
            limited = torch.zeros_like(ok)
            limited[late] = (cert_w <= tol_c[late]) & ((rounding > 0.5 * tol_c[late]) | half)
            ok |= limited
        if not bool(ok.any()):
            return None, None
        sel = cand[ok]
        kept = (lambda t: t) if bool(ok.all()) else (lambda t: t[ok])
        i, s = self.idx[sel], self.step[sel]
        pr.x[i, s], pr.iters[i, s], pr.gap[i, s] = kept(x), self.it[sel], kept(cert)
        if limited is not None:
            pr.rounding_limited[i, s] = kept(limited)
        if pr.relative:
            pr.scale[i, s] = tol[sel] / pr.tol[i, s]
            pr.first[i] = torch.where(s == 0, fidelity[sel], pr.first[i])
        last = s == pr.S - 1
        n_last = int(last.sum())
        if n_last < len(sel):                              # the next flow step's data and warm start
            on = sel[~last]
            self.f[on], self.py[on], self.px[on] = (kept(t)[~last] for t in (x, py, px))
        if n_last:
            pr.py[i[last]], pr.px[i[last]] = kept(py_out)[last], kept(px_out)[last]
        done, last_slots = torch.zeros_like(capped), torch.zeros_like(capped)
        done[sel] = True
        last_slots[sel] = last
        return done & ~last_slots, last_slots

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
           relative=False, out_dtype=None, dual_dtype=None) -> _Problems:
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

    Returns the problems: solutions ``x`` (B, S, C, H, W) as returned (rounded to ``out_dtype``), the last
    dual field ``py``, ``px`` (feasible in ``dual_dtype``), ``iters`` (B, S), the certified gaps per pixel
    ``gap`` (B, S, float64), ``scale`` and ``rounding_limited`` (see :meth:`_Slots.test`).
    """
    pr = _Problems(f4, lam_all, per_image_lam, tols, max_iter, check_every, tau, gamma, warm, vectorial, relative,
                   out_dtype, dual_dtype)
    B = f4.shape[0]
    kernel = f4.device.type == "cpu" and _kernel_on()
    # The kernel runs on as many threads of its own as torch may use here, and torch's operations in this
    # thread on one meanwhile; torch's setting is left alone (see pock_cpu.torch_serial_in_this_thread).
    with pock_cpu.torch_serial_in_this_thread() if kernel else contextlib.nullcontext() as threads:
        w = _Slots(pr, min(B, slots), threads)
        waiting = len(w.idx)                              # the next image to take a slot
        while True:
            w.iterate(pr, check_every, until_screened=True)
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
    return pr


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

    Precision. The reported gap is a true upper bound for what is returned, in every dtype: an image
    that passes the test is certified again in float64 (:func:`_certificate`) from ``u`` as returned
    (rounded to the input's dtype), the dual ``p`` as returned (kept feasible, ``|p| <= 1``, after
    rounding) and ``f``, on values less the image's mean (so that an offset such as ``1000 + f`` does not
    enter the rounding), plus a bound on float64's own rounding; only that certificate finishes it and
    is reported. The iterates are kept as ``z = u - f`` and every sum is accumulated in float64, so
    float32 reaches gaps of about 1e-7 per pixel on 256x256 photos (where iterating on ``u`` itself
    stalled near 5e-7, and float32 sums over 262k pixels reported gaps 4% below the true ones). Past
    about 380 iterations the float32 steps stop shrinking (Algorithm 1 from there on), since ever
    smaller primal steps drown in rounding. Rounding the result to its dtype costs a gap of its own
    (about ``eps |u|`` per pixel in the flat regions): float16 and bfloat16 inputs are solved in
    float32 to ``tol`` and their ``info.gap`` is that of the rounded result (about 1e-4 per pixel for
    float16 images in [-1, 1], more for bfloat16), which may exceed ``tol``; a float32 or float64 result
    that its rounding alone keeps above ``tol`` (``1000 + f`` in float32 at 1e-5) is returned once the
    unrounded point is certified, with its larger gap and a warning.

    On CPU the iterations run in :mod:`pock_cpu`'s kernel on ``torch.get_num_threads()`` threads of its
    own, whole images per thread or, with fewer images than threads, bands of each image's rows; torch's
    own operations in the calling thread run on one thread meanwhile, and no process-wide setting is
    changed. At most about 2^21 pixels are iterated at a time (2^18 as torch operations, whose arrays
    then stay in the caches); further images wait and take the place of finished ones. Between gap
    checks the loop makes no host-device synchronisation: the step sizes of every iteration are
    tabulated up front.

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
        Iterations between gap evaluations (each costs half an iteration to one and a half on CPU,
        measured at 32-512 px).
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
    with _serial_on_cpu(f):
        return _rof(f, lam, tol, max_iter, vectorial, warm, return_info, check_every, tau, gamma)


def _rof(f, lam, tol, max_iter, vectorial, warm, return_info, check_every, tau, gamma):
    """:func:`rof`, in its thread settings."""
    f4, restore = _as_batch(f, "f")
    tol, max_iter, check_every = _check_solver_args(tol, max_iter, check_every)
    B, C, H, W = f4.shape
    lam_all = _lam_per_image(lam, B, f4, torch.float64)
    if warm is not None and (not isinstance(warm, torch.Tensor) or tuple(warm.shape) != (B, C, 2, H, W)):
        shape = tuple(warm.shape) if isinstance(warm, torch.Tensor) else type(warm).__name__
        raise ValueError(f"warm must be a dual field of shape {(B, C, 2, H, W)}, got {shape}")
    if warm is not None:
        _check_tensor(warm, "warm")

    tols = torch.full((B, 1), tol, dtype=torch.float64)
    per_image_lam = isinstance(lam, torch.Tensor) and lam.numel() > 1
    pr = _solve_batch(f4, lam_all, per_image_lam, tols, max_iter, vectorial, warm, check_every, tau, gamma,
                      out_dtype=f.dtype, dual_dtype=f.dtype)
    _warn_unconverged("rof", pr, tols, max_iter)
    u_res = restore(pr.x[:, 0])
    if not return_info:
        return u_res
    dual = torch.stack((pr.py, pr.px), dim=2).to(f.dtype)
    return u_res, RofInfo(iters=pr.iters[:, 0], gap=pr.gap[:, 0], dual=dual)


def _check_solver_args(tol, max_iter, check_every) -> tuple:
    return (_check_positive(tol, "tol"), _check_count(max_iter, "max_iter", "of iterations"),
            _check_count(check_every, "check_every", "of iterations"))


def _solve_batch(f4, lam_all, per_image_lam, tols, max_iter, vectorial, warm, check_every, tau, gamma,
                 relative=False, out_dtype=None, dual_dtype=None) -> _Problems:
    """:func:`_solve` on contiguous input; on CPU with a working batch that fits in the caches."""
    f4 = f4.contiguous()
    B, C, H, W = f4.shape
    slots = max(1, _cpu_chunk_elems() // (C * H * W)) if f4.device.type == "cpu" else B
    return _solve(f4, lam_all, per_image_lam, tols, max_iter, vectorial, warm, check_every, tau, gamma, slots,
                  relative, out_dtype, dual_dtype)


def _warn_unconverged(who: str, pr: _Problems, tols, max_iter: int) -> None:
    """One warning for images stopped by ``max_iter`` above ``tol``, one for float32/float64 results whose
    rounding alone keeps them above (half precision says so in the docstrings: it is the rule there)."""
    over = pr.gap > tols.to(pr.gap.device)
    capped = over & ~pr.rounding_limited
    if capped.any():
        warnings.warn(f"{who}: {int(capped.any(dim=1).sum())} of {pr.gap.shape[0]} images did not reach gap/pixel "
                      f"<= {float(tols.min()):g} in {max_iter} iterations "
                      f"(worst gap {float(pr.gap[capped].max()):.3g}); raise max_iter", RuntimeWarning, stacklevel=4)
    limited = over & pr.rounding_limited
    if limited.any() and pr.out_dtype in (torch.float32, torch.float64):
        name = str(pr.out_dtype).replace("torch.", "")
        warnings.warn(f"{who}: {int(limited.any(dim=1).sum())} of {pr.gap.shape[0]} images have gap/pixel above "
                      f"{float(tols.min()):g} as returned (worst {float(pr.gap[limited].max()):.3g}): rounding the "
                      f"solution to {name} (values up to {float(pr.x.abs().max()):.3g}) costs more than that; "
                      f"pass float64, or subtract the images' offset and add it back", RuntimeWarning, stacklevel=4)


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
    float32 and every field returned in the input's dtype. Every flow state is rounded to the returned
    dtype before it is certified and becomes the next step's data, so ``gap[:, k]`` is the certified gap
    of step ``k`` as returned: ROF with data ``u[:, k]`` solved by ``u[:, k+1]``.

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
    with _serial_on_cpu(f):
        return _spectral(f, N, lam, tol, vectorial, max_iter)


def _spectral(f, N, lam, tol, vectorial, max_iter) -> SpectralDecomposition:
    """:func:`spectral`, in its thread settings."""
    f4, restore = _as_batch(f, "f")
    N = _check_count(N, "N", "number of bands")
    lam = _check_positive(lam, "lam")
    relative = tol is None
    tol, max_iter, _ = _check_solver_args(SPECTRAL_TOL if relative else tol, max_iter, 10)
    tols = torch.tensor(flow_tolerances(tol, N + 1, relative), dtype=torch.float64).expand(f4.shape[0], -1)
    # Each flow step is warm-started from the previous step's dual field (see _solve); each state is
    # rounded to the caller's dtype (half precision is solved in float32) before it is certified and
    # becomes the next step's data, so every gap is that of the states returned.
    dtype = f.dtype
    pr = _solve_batch(f4, _lam_per_image(lam, f4.shape[0], f4, torch.float64), False, tols, max_iter, vectorial, None, 10, None,
                      None, relative, out_dtype=dtype)
    x, iters, gap = pr.x, pr.iters, pr.gap
    if relative:
        tols = tols * pr.scale.cpu()
    _warn_unconverged("spectral", pr, tols, max_iter)
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
