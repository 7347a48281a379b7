"""Total-variation engine: ROF denoising, TV flow and spectral TV decomposition.

Everything here is pure maths on batched tensors of shape ``(B, C, H, W)`` (inputs of
shape ``(H, W)`` or ``(C, H, W)`` are accepted and returned in kind), float32 or
float64, on any device. No file IO, no printing.

The ROF problem (Rudin, Osher & Fatemi 1992)

    min_u  TV(u) + lam/2 ||u - f||^2,     TV(u) = sum_pixels |grad u|

is solved by the accelerated primal-dual algorithm of Chambolle & Pock (2011,
Algorithm 2) on its saddle-point form ``min_u max_{|p| <= 1} <grad u, p> + lam/2 ||u - f||^2``.
Each image stops on its own certificate, the duality gap, and stops costing work then.

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

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
from torch import nn

__all__ = [
    "grad", "div", "tv", "rof_energy", "rof_dual_energy", "rof", "RofInfo",
    "spectral", "SpectralDecomposition", "SPECTRAL_TOL", "flow_tolerances", "band_gains",
    "random_gains", "amplify_bands", "spectral_augment", "SpectralAugment",
]

# ||grad||^2 <= 8 for forward differences on a 2-D grid (Chambolle 2004, Thm. 3.1).
GRAD_NORM_SQ = 8.0

# CPU batches are solved in pieces of about this many pixels: all arrays of a piece then stay in
# the caches, which is faster than streaming a large batch through memory on every operation.
_CPU_CHUNK_ELEMS = 1 << 18


def _cpu_chunk_elems() -> int:
    return _CPU_CHUNK_ELEMS


# The point each solve tests and returns: x = u + BLEND (v - u), between the primal iterate u and
# the primal point v = f + div(p)/lam that the dual iterate implies. Both converge to u*, from
# sides that partly cancel: on CIFAR-10 the flow's bands reach a given accuracy with about 10%
# fewer iterations at BLEND = 0.4 than at 0 (0.25: 5%, 0.5 and 0.6: less). The duality gap is
# evaluated at x, so the certificate holds for what is returned.
_PRIMAL_BLEND = 0.4

# Default duality gap per pixel of the first TV-flow step of :func:`spectral` (later steps are
# tighter, see :func:`flow_tolerances`): the largest that keeps every band of real images within
# 2% of the exact decomposition (see :func:`spectral`).
SPECTRAL_TOL = 4.5e-5

Lam = Union[float, torch.Tensor]


# ----------------------------------------------------------------------------- checks

def _as_batch(x: torch.Tensor, name: str = "f"):
    """Return ``x`` as (B, C, H, W) and a function that restores the caller's rank."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_complex() or not x.is_floating_point():
        raise ValueError(f"{name} must be a real floating-point tensor (float32 or float64), "
                         f"got dtype {x.dtype}; convert with .float()")
    if x.dim() not in (2, 3, 4):
        raise ValueError(f"{name} must have shape (H, W), (C, H, W) or (B, C, H, W), "
                         f"got {x.dim()} dimensions {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf pixels; clean or mask them first")
    rank = x.dim()
    while x.dim() < 4:
        x = x.unsqueeze(0)

    def restore(y: torch.Tensor) -> torch.Tensor:
        # y has batch-leading layout (B, ..., H, W); drop the dimensions the caller did not give.
        for _ in range(4 - rank):
            y = y.squeeze(0)
        return y

    return x, restore


def _check_positive(value: float, name: str) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def _lam_per_image(lam: Lam, batch: int, like: torch.Tensor) -> torch.Tensor:
    """``lam`` as a (B,) tensor on ``like``'s device and dtype, validated."""
    if isinstance(lam, torch.Tensor):
        lam_t = lam.detach().to(device=like.device, dtype=like.dtype).reshape(-1)
        if lam_t.numel() == 1:
            lam_t = lam_t.expand(batch)
        if lam_t.numel() != batch:
            raise ValueError(f"lam must be a number or a tensor of shape ({batch},), "
                             f"got shape {tuple(lam.shape)}")
        if not (torch.isfinite(lam_t).all() and (lam_t > 0).all()):
            raise ValueError("lam must be positive and finite for every image")
        return lam_t.contiguous()
    _check_positive(lam, "lam")
    return torch.full((batch,), float(lam), device=like.device, dtype=like.dtype)


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
    rank = p.dim()
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
    return out


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


def _sum_sq(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(x, dim=(1, 2, 3)).square()


def rof_energy(u: torch.Tensor, f: torch.Tensor, lam: Lam, vectorial: bool = False) -> torch.Tensor:
    """Primal ROF energy ``P(u) = TV(u) + lam/2 ||u - f||^2`` per image, shape (B,)."""
    u4, _ = _as_batch(u, "u")
    f4, _ = _as_batch(f, "f")
    lam_t = _lam_per_image(lam, f4.shape[0], f4)
    return _tv(u4, vectorial) + 0.5 * lam_t * (u4 - f4).square().sum(dim=(1, 2, 3))


def rof_dual_energy(p: torch.Tensor, f: torch.Tensor, lam: Lam) -> torch.Tensor:
    """Dual ROF energy per image, shape (B,).

    ``D(p) = -<f, div p> - ||div p||^2 / (2 lam)`` for ``|p(x)| <= 1``; the primal solution is
    recovered as ``u = f + div p / lam``. ``D(p) <= P(u)`` for every feasible pair, with equality
    at the saddle point, so ``P(u) - D(p)`` certifies the accuracy of ``u``:
    ``lam/2 ||u - u*||^2 <= P(u) - P(u*) <= P(u) - D(p)``.
    """
    f4, _ = _as_batch(f, "f")
    lam_t = _lam_per_image(lam, f4.shape[0], f4)
    d = div(p).reshape(f4.shape)
    return -(f4 * d).sum(dim=(1, 2, 3)) - d.square().sum(dim=(1, 2, 3)) / (2 * lam_t)


# ----------------------------------------------------------------------------- solver

@dataclass
class RofInfo:
    """What :func:`rof` did, per image.

    iters : (B,) int64, iterations until the image's gap per pixel fell below ``tol``
    gap : (B,) duality gap per pixel ``(P(u) - D(p)) / (C H W)`` at the returned pair
    dual : (B, C, 2, H, W) the dual variable ``p``; pass it back as ``warm=`` to warm-start a
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


def _implied_primal_into(py: torch.Tensor, px: torch.Tensor, f: torch.Tensor, inv_lam, out: torch.Tensor) -> None:
    """``out = f + div(p) / lam``, the primal point that the dual field implies (see :func:`_div_into`).

    ``inv_lam`` is a Python number or a per-image (B, 1, 1, 1) tensor.
    """
    W = out.shape[-1]
    pyf, pxf, of = py.view(-1), px.view(-1), out.view(-1)
    if isinstance(inv_lam, torch.Tensor):
        c = inv_lam.expand_as(out).reshape(-1)
        torch.addcmul(f.view(-1), pyf, c, out=of)
        of[W:].addcmul_(pyf[:-W], c[W:], value=-1)
        of.addcmul_(pxf, c)
        of[1:].addcmul_(pxf[:-1], c[1:], value=-1)
    else:
        torch.add(f.view(-1), pyf, alpha=inv_lam, out=of)
        of[W:].sub_(pyf[:-W], alpha=inv_lam)
        of.add_(pxf, alpha=inv_lam)
        of[1:].sub_(pxf[:-1], alpha=inv_lam)


def _gap_per_pixel(u, v, f, lam4, vectorial, gy, gx, tmp) -> torch.Tensor:
    """Duality gap ``P(u) - D(p)`` per pixel of each image, from ``v = f + div(p)/lam``.

    ``D(p) = -<f, div p> - ||div p||^2 / (2 lam) = -lam (<f, w> + ||w||^2 / 2)`` with ``w = v - f``;
    ``lam4`` is a number or a per-image (B, 1, 1, 1) tensor.
    """
    lam = lam4.view(-1) if isinstance(lam4, torch.Tensor) else lam4
    torch.sub(v, f, out=tmp)
    dual = -lam * (torch.einsum("bchw,bchw->b", f, tmp) + 0.5 * _sum_sq(tmp))
    primal = _tv(u, vectorial, gy, gx) + 0.5 * lam * _sum_sq(torch.sub(u, f, out=tmp))
    return (primal - dual) / u[0].numel()


@functools.lru_cache(maxsize=64)
def _dimensionless_steps(s0: float, g: float, n_steps: int) -> tuple:
    """``(1 / (8 s_k), s_k / (1 + s_k), 1 + theta_k)`` for ``k < n_steps``, where ``s_k = tau_k lam``,
    ``theta_k = (1 + 2 g s_k)^(-1/2)``, ``s_{k+1} = theta_k s_k`` and ``g = gamma / lam``."""
    out, s = [], s0
    for _ in range(n_steps):
        theta = (1 + 2 * g * s) ** -0.5
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
        _check_positive(tau, "tau")
    lam_min = float(lam_all.min())
    if gamma is not None:
        if not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma >= 0):
            raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
        if gamma > lam_min:
            raise ValueError(f"gamma must not exceed lam (the strong convexity of the data term), "
                             f"got gamma={gamma} > min(lam)={lam_min:g}")
    lams, rows = torch.unique(lam_all.double().cpu(), return_inverse=True)
    table = torch.empty(len(lams), n_steps, 3, dtype=torch.float64)
    for r, lam in enumerate(lams.tolist()):
        s0 = 0.25 if tau is None else float(tau) * lam            # tau_0 lam
        g = 0.25 if gamma is None else float(gamma) / lam          # gamma / lam
        table[r] = torch.tensor(_dimensionless_steps(s0, g, n_steps))
        table[r, :, 0] *= lam                                      # sigma_k = lam / (8 tau_k lam)
    return rows.to(lam_all.device), table.to(device=lam_all.device, dtype=lam_all.dtype)


class _Problems:
    """The problems of :func:`_solve`: data, step schedule, tolerances and the results so far."""

    def __init__(self, f4, lam_all, per_image_lam, tols, max_iter, check_every, tau, gamma, warm, vectorial):
        B, C, H, W = f4.shape
        self.f, self.warm, self.vectorial, self.max_iter = f4, warm, vectorial, max_iter
        self.S = len(tols)
        self.lam = lam_all.view(-1, 1, 1, 1)
        self.per_image_lam = per_image_lam
        self.tol_of_step = torch.tensor(tols, dtype=f4.dtype, device=f4.device)
        # Images are tested every check_every iterations, so one may run that much past max_iter.
        self.row, self.table = _step_table(lam_all, tau, gamma, max_iter + check_every)
        self.x = torch.empty((B, self.S, C, H, W), dtype=f4.dtype, device=f4.device)
        self.py, self.px = torch.empty_like(f4), torch.empty_like(f4)
        self.iters = torch.zeros((B, self.S), dtype=torch.int64, device=f4.device)
        self.gap = torch.zeros((B, self.S), dtype=f4.dtype, device=f4.device)


class _Slots:
    """The images being iterated, one per slot, with their Chambolle-Pock state.

    ``idx`` is the image in each slot, ``step`` its current problem (flow step), ``it`` its
    iteration within that problem; ``lam4`` is a number, or (n, 1, 1, 1) with a per-image lam.
    """

    def __init__(self, pr: _Problems, n: int):
        C, H, W = pr.f.shape[1:]
        dev = pr.f.device
        self.idx = torch.arange(n, device=dev)
        self.step = torch.zeros(n, dtype=torch.int64, device=dev)
        self.it = torch.zeros(n, dtype=torch.int64, device=dev)
        self.row = pr.row[:n].clone()
        self.lam4 = pr.lam[:n].clone() if pr.per_image_lam else float(pr.lam[0])
        self.inv_lam4 = 1 / self.lam4
        self.f, self.py, self.px, self.u, self.ubar, self.v = (torch.empty_like(pr.f[:n]) for _ in range(6))
        self.u_next = torch.empty_like(self.u)
        self._scratch = [torch.empty_like(self.u) for _ in range(3)]
        self.gy, self.gx, self.tmp = self._scratch
        self.start(pr, slice(None), self.idx)

    def start(self, pr: _Problems, sl, images) -> None:
        """Begin the first problem of ``images`` in slots ``sl``: from ``pr.warm``, or p = 0, u = f."""
        self.f[sl] = pr.f[images]
        if pr.warm is None:
            self.py[sl], self.px[sl], self.u[sl] = 0, 0, pr.f[images]
        else:
            py = pr.warm[images, :, 0].to(pr.f).contiguous()
            px = pr.warm[images, :, 1].to(pr.f).contiguous()
            _zero_boundary_(py, px)
            _project_unit_ball(py, px, pr.vectorial, torch.empty_like(py))
            v = torch.empty_like(py)
            _implied_primal_into(py, px, pr.f[images], 1 / pr.lam[images] if pr.per_image_lam else self.inv_lam4, v)
            self.py[sl], self.px[sl], self.u[sl] = py, px, v
        self.ubar[sl] = self.u[sl]

    def iterate(self, pr: _Problems) -> None:
        """One iteration of Algorithm 2 for every slot, with the step sizes of each slot's iteration."""
        c = pr.table[self.row, self.it]              # (n, 3): sigma, primal weight, 1 + theta
        sigma, w_u, w_bar = (c[:, j].view(-1, 1, 1, 1) for j in range(3))
        # p^{k+1} = proj(p^k + sigma_k grad ubar^k)
        _grad_into(self.ubar, self.gy, self.gx)
        self.py.addcmul_(self.gy, sigma)
        self.px.addcmul_(self.gx, sigma)
        _project_unit_ball(self.py, self.px, pr.vectorial, self.tmp)
        # u^{k+1} = (u^k + tau div p^{k+1} + tau lam f) / (1 + tau lam) is the lerp from u^k to
        # v = f + div(p^{k+1})/lam with weight tau lam / (1 + tau lam); the extrapolation
        # ubar^{k+1} = u^{k+1} + theta (u^{k+1} - u^k) is a lerp with weight 1 + theta.
        _implied_primal_into(self.py, self.px, self.f, self.inv_lam4, self.v)
        torch.lerp(self.u, self.v, w_u, out=self.u_next)
        torch.lerp(self.u, self.u_next, w_bar, out=self.ubar)
        self.u, self.u_next = self.u_next, self.u
        self.it += 1

    def test(self, pr: _Problems):
        """Gap at ``x = u + BLEND (v - u)``; record and return the slots whose problem is done."""
        x = torch.lerp(self.u, self.v, _PRIMAL_BLEND)
        gap = _gap_per_pixel(x, self.v, self.f, self.lam4, pr.vectorial, self.gy, self.gx, self.tmp)
        done = (gap <= pr.tol_of_step[self.step]) | (self.it >= pr.max_iter)
        if not bool(done.any()):
            return None, None
        self.u[done] = x[done]
        i, s = self.idx[done], self.step[done]
        pr.x[i, s], pr.iters[i, s], pr.gap[i, s] = self.u[done], self.it[done], gap[done]
        last = done & (self.step == pr.S - 1)
        pr.py[self.idx[last]], pr.px[self.idx[last]] = self.py[last], self.px[last]
        return done & ~last, last

    def advance(self, pr: _Problems, mask) -> None:
        """The next flow step for slots ``mask``: data = the solution, warm dual, fresh step sizes."""
        self.step[mask] += 1
        self.it[mask] = 0
        self.f[mask] = self.u[mask]
        v = torch.empty_like(self.u[mask])
        _implied_primal_into(self.py[mask], self.px[mask], self.f[mask],
                             self.inv_lam4[mask] if pr.per_image_lam else self.inv_lam4, v)
        self.u[mask] = v
        self.ubar[mask] = v

    def refill(self, pr: _Problems, free: torch.Tensor, images: torch.Tensor) -> None:
        """Slots ``free`` take the waiting ``images``."""
        self.idx[free], self.step[free], self.it[free], self.row[free] = images, 0, 0, pr.row[images]
        if pr.per_image_lam:
            self.lam4[free] = pr.lam[images]
            self.inv_lam4[free] = 1 / pr.lam[images]
        self.start(pr, free, images)

    def keep(self, mask) -> None:
        """Drop the slots outside ``mask`` (no image waits to take them)."""
        for name in ("idx", "step", "it", "row", "f", "py", "px", "u", "ubar", "v"):
            setattr(self, name, getattr(self, name)[mask])
        if isinstance(self.lam4, torch.Tensor):
            self.lam4, self.inv_lam4 = self.lam4[mask], self.inv_lam4[mask]
        self.u_next = torch.empty_like(self.u)
        n = len(self.idx)
        self.gy, self.gx, self.tmp = (t[:n] for t in self._scratch)


def _solve(f4, lam_all, per_image_lam, tols, max_iter, vectorial, warm, check_every, tau, gamma, slots):
    """Chambolle-Pock iterations for ``S = len(tols)`` consecutive problems per image.

    Problem ``s`` of image ``i`` is ROF with data ``x_{s-1}``, the solution of problem ``s-1``
    (``x_{-1} = f``), solved to a gap per pixel ``tols[s]``: one ROF solve for ``S = 1``, the
    implicit TV flow for ``S > 1``.

    At most ``slots`` images are iterated at a time, and the work is streamed: an image that
    finishes a flow step starts the next one at once, warm from its dual field, and an image that
    finishes its last step hands its slot to the next waiting image. So the working batch stays
    full, the slow last iterations of a few images are paid once per call (not once per step and
    piece), and the working arrays stay small enough for the CPU caches. Every image follows the
    same iterations as it would alone.

    Returns the solutions (B, S, C, H, W), the last dual field (p_y, p_x), iterations (B, S) and
    the gaps per pixel (B, S).
    """
    pr = _Problems(f4, lam_all, per_image_lam, tols, max_iter, check_every, tau, gamma, warm, vectorial)
    B = f4.shape[0]
    w = _Slots(pr, min(B, slots))
    waiting = len(w.idx)                              # the next image to take a slot
    n_iter = 0
    while True:
        w.iterate(pr)
        n_iter += 1
        if n_iter % check_every:
            continue
        advance, last = w.test(pr)
        if advance is None:
            continue
        if advance.any():
            w.advance(pr, advance)
        free = last.nonzero().view(-1)
        n_new = min(len(free), B - waiting)
        if n_new:
            w.refill(pr, free[:n_new], torch.arange(waiting, waiting + n_new, device=f4.device))
            waiting += n_new
            last[free[:n_new]] = False
        if bool(last.all()):
            break
        if last.any():
            w.keep(~last)
    return pr.x, pr.py, pr.px, pr.iters, pr.gap


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

    On CPU at most about 2^18 pixels are iterated at a time (the arrays then stay in the caches);
    further images wait and take the place of finished ones. Between gap checks the loop makes
    no host-device synchronisation: the step sizes of every iteration are tabulated up front.

    Parameters
    ----------
    f : Tensor, shape (B, C, H, W), (C, H, W) or (H, W), float32 or float64
        Images to denoise (any range; the toolkit uses [-1, 1]).
    lam : float or Tensor of shape (B,)
        Fidelity weight, per image if a tensor. Larger ``lam`` removes less. Equals
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
    _check_solver_args(tol, max_iter, check_every)
    B, C, H, W = f4.shape
    lam_all = _lam_per_image(lam, B, f4)
    if warm is not None and (not isinstance(warm, torch.Tensor) or tuple(warm.shape) != (B, C, 2, H, W)):
        shape = tuple(warm.shape) if isinstance(warm, torch.Tensor) else type(warm).__name__
        raise ValueError(f"warm must be a dual field of shape {(B, C, 2, H, W)}, got {shape}")

    x, py, px, iters, gap = _solve_batch(f4, lam_all, isinstance(lam, torch.Tensor) and lam.numel() > 1, [tol],
                                         max_iter, vectorial, warm, check_every, tau, gamma)
    _warn_unconverged("rof", gap, [tol], max_iter)
    u_res = restore(x[:, 0])
    if not return_info:
        return u_res
    return u_res, RofInfo(iters=iters[:, 0], gap=gap[:, 0], dual=torch.stack((py, px), dim=2))


def _check_solver_args(tol, max_iter, check_every) -> None:
    _check_positive(tol, "tol")
    if not (isinstance(max_iter, int) and max_iter > 0):
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not (isinstance(check_every, int) and check_every > 0):
        raise ValueError(f"check_every must be a positive integer, got {check_every!r}")


def _solve_batch(f4, lam_all, per_image_lam, tols, max_iter, vectorial, warm, check_every, tau, gamma):
    """:func:`_solve` on contiguous input; on CPU with a working batch that fits in the caches."""
    f4 = f4.contiguous()
    B, C, H, W = f4.shape
    slots = max(1, _cpu_chunk_elems() // (C * H * W)) if f4.device.type == "cpu" else B
    return _solve(f4, lam_all, per_image_lam, tols, max_iter, vectorial, warm, check_every, tau, gamma, slots)


def _warn_unconverged(who: str, gap: torch.Tensor, tols, max_iter: int) -> None:
    over = gap > torch.tensor(tols, dtype=gap.dtype, device=gap.device)
    if over.any():
        warnings.warn(f"{who}: {int(over.any(dim=1).sum())} of {gap.shape[0]} images did not reach gap/pixel "
                      f"<= {min(tols):g} in {max_iter} iterations "
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
    lam : float
    """
    u: torch.Tensor
    phi: torch.Tensor
    residual: torch.Tensor
    t: torch.Tensor
    S: torch.Tensor
    iters: torch.Tensor
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


def flow_tolerances(tol: float, n_steps: int) -> list:
    """Duality gap per pixel of each TV-flow step: ``tol * k**(-3/2)`` for step ``k = 1..n_steps``.

    Band ``n`` is ``n`` times a second difference of flow states, so an error in state ``k``
    reaches bands ``k-1..k+1`` amplified about ``k`` times. A state error is at most
    ``sqrt(2 gap / lam)`` per pixel, so a gap that shrinks like ``k**-2`` would hold every band's
    worst case at one level; errors of consecutive warm-started steps are correlated and partly
    cancel in the difference, and on real images ``k**(-3/2)`` gives the most even band errors
    (measured: ``k**-1`` leaves the coarse bands 2x worse, ``k**-2`` the fine ones).
    """
    return [tol * k ** -1.5 for k in range(1, n_steps + 1)]


def _check_N(N) -> None:
    if not (isinstance(N, int) and N > 0):
        raise ValueError(f"N must be a positive integer number of bands, got {N!r}")


def spectral(f: torch.Tensor, N: int = 5, lam: float = 7.0, *, tol: float = SPECTRAL_TOL,
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
    dissertation's scheme, and this module's before) the bands of CIFAR-10 images at a gap of
    1e-4 per pixel were off by 3% (phi_1) to 19% (phi_5). Step ``k`` is therefore solved to
    ``tol k^(-3/2)`` (:func:`flow_tolerances`). With the default ``tol`` every band phi_1..phi_5
    of 32x32 CIFAR-10 images in [-1, 1] at ``lam = 7`` lies within 2% relative L2 error (over the
    batch) of a float64 decomposition whose every step is solved to a gap of 1e-10 per pixel
    (measured: at most 1.8%; ``tests/test_pock.py`` checks the 2% on scikit-image's sample
    photographs). The error scales roughly like ``sqrt(tol)``: pass a smaller ``tol`` for tighter
    bands, a larger one for speed. The tolerance is per pixel, and larger images of the same scene
    are smoother per pixel, with weaker bands: ``bench_pock.py`` measured a worst band error of
    2.9% at 64x64 and 6.9% at 256x256 (Imagenette) with the default, so about ``tol / 2`` keeps
    64x64 bands within 2%, ``tol / 12`` 256x256 ones.

    Parameters
    ----------
    f : Tensor, shape (B, C, H, W), (C, H, W) or (H, W)
    N : int
        Number of bands.
    lam : float
        ``1/dt`` of the flow; the dissertation uses 7 for images in [-1, 1].
    tol : float
        Duality gap per pixel of the first flow step; step ``k`` is solved to ``tol k^(-3/2)``.
    vectorial : bool
        Colour TV coupling the channels (see :func:`tv`).
    max_iter : int
        Iteration cap of each flow step.

    Returns
    -------
    SpectralDecomposition
        Batched fields; a single image of shape (C, H, W) or (H, W) gives batch size 1.
    """
    f4, _ = _as_batch(f, "f")
    _check_N(N)
    _check_positive(lam, "lam")
    _check_solver_args(tol, max_iter, 10)
    tols = flow_tolerances(tol, N + 1)
    # Each flow step is warm-started from the previous step's dual field (see _solve).
    x, _, _, iters, gap = _solve_batch(f4, _lam_per_image(float(lam), f4.shape[0], f4), False, tols,
                                       max_iter, vectorial, None, 10, None, None)
    _warn_unconverged("spectral", gap, tols, max_iter)
    u = torch.cat((f4.unsqueeze(1), x), dim=1)
    n = torch.arange(1, N + 1, dtype=f4.dtype, device=f4.device).view(1, N, 1, 1, 1)
    phi = n * (u[:, :N] - 2 * u[:, 1:N + 1] + u[:, 2:N + 2])
    residual = (N + 1) * u[:, N] - N * u[:, N + 1]
    t = torch.arange(1, N + 1, dtype=f4.dtype, device=f4.device) / lam
    S = phi.abs().sum(dim=(2, 3, 4))
    return SpectralDecomposition(u=u, phi=phi, residual=residual, t=t, S=S, iters=iters, lam=float(lam))


# --------------------------------------------------------------------------- augmentation

def _check_gains(gains) -> tuple:
    """``gains`` as ``(lo, hi)``; both Python ints selects the integer draw (see :func:`random_gains`)."""
    try:
        lo, hi = gains
    except (TypeError, ValueError):
        raise ValueError(f"gains must be a pair (lo, hi), got {gains!r}") from None
    ok = all(isinstance(g, (int, float)) and not isinstance(g, bool) and math.isfinite(g) for g in (lo, hi))
    if not ok or hi <= lo or lo < 0:
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
    bands = tuple(int(b) for b in bands)
    if not bands or min(bands) < 1:
        raise ValueError(f"bands must be a non-empty list of 1-based band indices, got {bands}")
    return bands


def spectral_augment(f: torch.Tensor, bands: Sequence[int] = (1, 2), gains=(3, 5), lam: float = 7.0, *,
                     per_image: bool = True, generator: Optional[torch.Generator] = None,
                     tol: float = SPECTRAL_TOL, vectorial: bool = False) -> torch.Tensor:
    """Spectral TV augmentation: ``w = f + sum_{j in bands} (k_j - 1) phi_j``.

    The chosen bands (1-based; band 1 is the finest scale) are amplified by integer gains ``k_j``
    drawn uniformly from ``[gains[0], gains[1])`` -- per image by default, or one draw for the
    whole batch with ``per_image=False`` (the dissertation's behaviour). Only the
    ``max(bands) + 1`` flow steps these bands need are computed.

    For training, decompose once and cache the bands, then call :func:`random_gains` and
    :func:`amplify_bands` per batch (see ``bandcache.py``).
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
                 per_image: bool = True, tol: float = SPECTRAL_TOL, vectorial: bool = False,
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        self.bands = _check_bands(bands)
        _check_positive(lam, "lam")
        _check_positive(tol, "tol")
        _check_gains(gains)
        self.gains, self.lam, self.per_image = tuple(gains), float(lam), per_image
        self.tol, self.vectorial, self.generator = tol, vectorial, generator

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return spectral_augment(f, self.bands, self.gains, self.lam, per_image=self.per_image,
                                generator=self.generator, tol=self.tol, vectorial=self.vectorial)

    def extra_repr(self) -> str:
        return f"bands={self.bands}, gains={self.gains}, lam={self.lam}, per_image={self.per_image}"
