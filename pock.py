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

import math
import warnings
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
from torch import nn

__all__ = [
    "grad", "div", "tv", "rof_energy", "rof_dual_energy", "rof", "RofInfo",
    "spectral", "SpectralDecomposition", "band_gains",
    "random_gains", "amplify_bands", "spectral_augment", "SpectralAugment",
]

# ||grad||^2 <= 8 for forward differences on a 2-D grid (Chambolle 2004, Thm. 3.1).
GRAD_NORM_SQ = 8.0

# CPU batches are solved in pieces of about this many pixels: each array then stays in cache,
# about 20% faster than one pass over a large batch on a 2-core machine.
_CPU_CHUNK_ELEMS = 1 << 18

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
    """Forward differences of ``u`` into ``gy`` (along rows) and ``gx`` (along columns).

    Neumann boundary: the difference across the last row/column is zero. Those entries of
    ``gy``/``gx`` are never written here; callers allocate them zeroed and they stay zero.
    """
    torch.sub(u[..., 1:, :], u[..., :-1, :], out=gy[..., :-1, :])
    torch.sub(u[..., :, 1:], u[..., :, :-1], out=gx[..., :, :-1])


def _div_into(py: torch.Tensor, px: torch.Tensor, out: torch.Tensor) -> None:
    """Backward differences ``(div p)_i = p_i - p_{i-1}`` (with ``p_{-1} = 0``) into ``out``.

    This is ``-grad^T p`` for fields whose last row of ``py`` and last column of ``px`` are
    zero -- the entries that ``grad`` never produces, and that the solver keeps at zero.
    """
    torch.sub(py[..., 1:, :], py[..., :-1, :], out=out[..., 1:, :])
    out[..., 0, :] = py[..., 0, :]
    out.add_(px)
    out[..., :, 1:].sub_(px[..., :, :-1])


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
    g = u4.new_zeros(u4.shape[:2] + (2,) + u4.shape[2:])
    _grad_into(u4, g[:, :, 0], g[:, :, 1])
    return restore(g)


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
    py, px = p[:, :, 0].clone(), p[:, :, 1].clone()
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
    """TV per image; ``gy``/``gx`` are optional scratch buffers with zero Neumann row/column."""
    if gy is None:
        gy, gx = torch.zeros_like(u), torch.zeros_like(u)
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


def _primal_dual_energies(u, f, div_p, lam4, vectorial, gy=None, gx=None):
    """Primal and dual ROF energies per image (see :func:`rof_energy`, :func:`rof_dual_energy`)."""
    lam = lam4.view(-1)
    primal = _tv(u, vectorial, gy, gx) + 0.5 * lam * _sum_sq(u - f)
    dual = -torch.einsum("bchw,bchw->b", f, div_p) - _sum_sq(div_p) / (2 * lam)
    return primal, dual


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


def _axpy_(y: torch.Tensor, x: torch.Tensor, c) -> None:
    """``y += c x`` in place, ``c`` a Python number or a per-image (B, 1, 1, 1) tensor."""
    if isinstance(c, torch.Tensor):
        y.addcmul_(x, c)
    else:
        y.add_(x, alpha=c)


def _project_unit_ball(py: torch.Tensor, px: torch.Tensor, vectorial: bool, tmp: torch.Tensor) -> None:
    """Project the dual field pointwise onto ``{|p(x)| <= 1}`` in place (``tmp`` is scratch).

    ``p / max(1, |p|) = p * rsqrt(max(1, |p|^2))``: one rsqrt instead of a sqrt and a division,
    which is measurably cheaper on CPU.
    """
    torch.mul(py, py, out=tmp)
    tmp.addcmul_(px, px)
    scale = tmp.sum(dim=1, keepdim=True) if vectorial else tmp
    scale.clamp_(min=1.0).rsqrt_()
    py.mul_(scale)
    px.mul_(scale)


def _solve(f4, lam, lam_all, tol, max_iter, vectorial, warm, check_every, tau, gamma):
    """The solver loop of :func:`rof` on validated (B, C, H, W) input; returns u, p_y, p_x, iters, gap."""
    B, C, H, W = f4.shape
    f4 = f4.contiguous()
    u_out = torch.empty_like(f4)
    py_out = torch.empty_like(f4)
    px_out = torch.empty_like(f4)
    iters_out = torch.zeros(B, dtype=torch.int64, device=f4.device)
    gap_out = torch.empty(B, dtype=f4.dtype, device=f4.device)

    # With one lam for the batch every image follows the same step-size schedule, which is then
    # kept in Python floats; a per-image lam needs (B, 1, 1, 1) tensors of steps.
    per_image = isinstance(lam, torch.Tensor) and lam.numel() > 1
    lam4 = lam_all.view(-1, 1, 1, 1) if per_image else float(lam_all[0])
    if warm is not None:
        py = warm[:, :, 0].to(f4).contiguous().clone()
        px = warm[:, :, 1].to(f4).contiguous().clone()
        _zero_boundary_(py, px)
        _project_unit_ball(py, px, vectorial, torch.empty_like(f4))
        div_p = torch.empty_like(f4)
        _div_into(py, px, div_p)
        u = f4 + div_p / lam4
    else:
        py = torch.zeros_like(f4)
        px = torch.zeros_like(f4)
        u = f4.clone()
    f_run = f4

    # Step sizes (Chambolle & Pock 2011, Sec. 5.1): tau*sigma*||grad||^2 = 1 at the start and
    # Algorithm 2 keeps tau*sigma constant, so the convergence condition holds at every step.
    if tau is not None:
        _check_positive(tau, "tau")
    tau_n = 1.0 / math.sqrt(GRAD_NORM_SQ) if tau is None else float(tau)
    if gamma is None:
        gamma_n = 0.35 * lam4
    else:
        if not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma >= 0):
            raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
        if gamma > float(lam_all.min()):
            raise ValueError(f"gamma must not exceed lam (the strong convexity of the data term), "
                             f"got gamma={gamma} > min(lam)={float(lam_all.min()):g}")
        gamma_n = float(gamma)
    if per_image:
        tau_n = torch.full_like(lam4, tau_n)
        gamma_n = gamma_n * torch.ones_like(lam4)
    sigma_n = 1.0 / (GRAD_NORM_SQ * tau_n)

    idx = torch.arange(B, device=f4.device)
    ubar = u.clone()
    # Scratch buffers; the running images use their first rows. The Neumann row/column of
    # gy and gx is zero and stays zero (see _grad_into).
    gy_buf, gx_buf = torch.zeros_like(f4), torch.zeros_like(f4)
    div_buf, tmp_buf = torch.empty_like(f4), torch.empty_like(f4)
    gy, gx, div_p, tmp = gy_buf, gx_buf, div_buf, tmp_buf
    n_pix = C * H * W

    it = 0
    while True:
        # p^{n+1} = proj(p^n + sigma grad ubar^n)
        _grad_into(ubar, gy, gx)
        _axpy_(py, gy, sigma_n)
        _axpy_(px, gx, sigma_n)
        _project_unit_ball(py, px, vectorial, tmp)
        _div_into(py, px, div_p)
        # u^{n+1} = a u^n + b div p^{n+1} + c f and ubar^{n+1} = (1 + theta) u^{n+1} - theta u^n,
        # arranged so that no copy of u^n is needed.
        tl = tau_n * lam4
        a = 1 / (1 + tl)
        theta = (1 + 2 * gamma_n * tau_n) ** -0.5
        torch.mul(u, -theta, out=ubar)
        u.mul_(a)
        _axpy_(u, div_p, tau_n * a)
        _axpy_(u, f_run, tl * a)
        _axpy_(ubar, u, 1 + theta)
        tau_n = tau_n * theta
        sigma_n = sigma_n / theta
        it += 1

        if it % check_every and it < max_iter:
            continue
        # Gap at (u^{n+1}, p^{n+1}); div p^{n+1} is already in div_p.
        primal, dual = _primal_dual_energies(u, f_run, div_p, lam4 if per_image else
                                             torch.tensor(lam4, dtype=u.dtype, device=u.device),
                                             vectorial, gy, gx)
        gap = (primal - dual) / n_pix
        done = gap <= tol
        if it >= max_iter:
            done = torch.ones_like(done)
        if done.any():
            sel = idx[done]
            u_out[sel] = u[done]
            py_out[sel] = py[done]
            px_out[sel] = px[done]
            iters_out[sel] = it
            gap_out[sel] = gap[done]
            keep = ~done
            n_keep = int(keep.sum())
            if n_keep == 0:
                break
            idx = idx[keep]
            u, ubar, py, px, f_run = u[keep], ubar[keep], py[keep], px[keep], f_run[keep]
            if per_image:
                lam4, tau_n, sigma_n, gamma_n = lam4[keep], tau_n[keep], sigma_n[keep], gamma_n[keep]
            gy, gx, div_p, tmp = gy_buf[:n_keep], gx_buf[:n_keep], div_buf[:n_keep], tmp_buf[:n_keep]

    return u_out, py_out, px_out, iters_out, gap_out


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

    Every ``check_every`` iterations each image's duality gap ``P(u) - D(p)`` is evaluated; an
    image whose gap per pixel is ``<= tol`` is finished and removed from the working batch.

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
        Iterations between gap evaluations (each costs about one iteration).
    tau : float, optional
        Initial primal step ``tau_0`` (default ``1/sqrt(8)``); ``sigma_0 = 1/(8 tau_0)``.
    gamma : float, optional
        Acceleration parameter, at most ``lam``; ``gamma = 0`` gives constant steps and
        ``theta = 1``, i.e. Chambolle & Pock's Algorithm 1. Default ``0.35 lam``: on CIFAR-10 images in [-1, 1]
        it needs about 25% fewer iterations to a gap of 1e-6 than Chambolle & Pock's ``0.7 lam``,
        and warm starts profit from it most.

    Returns
    -------
    u : Tensor, same shape as ``f``
    info : RofInfo, only if ``return_info``
    """
    f4, restore = _as_batch(f, "f")
    if not (isinstance(max_iter, int) and max_iter > 0):
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not (isinstance(check_every, int) and check_every > 0):
        raise ValueError(f"check_every must be a positive integer, got {check_every!r}")
    _check_positive(tol, "tol")
    B, C, H, W = f4.shape
    lam_all = _lam_per_image(lam, B, f4)

    if warm is not None and (not isinstance(warm, torch.Tensor) or tuple(warm.shape) != (B, C, 2, H, W)):
        shape = tuple(warm.shape) if isinstance(warm, torch.Tensor) else type(warm).__name__
        raise ValueError(f"warm must be a dual field of shape {(B, C, 2, H, W)}, got {shape}")

    # On CPU a batch is solved in pieces that fit in cache; each piece stops on its own anyway.
    chunk = max(1, _CPU_CHUNK_ELEMS // (C * H * W))
    if f4.device.type == "cpu" and B > chunk:
        parts = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # warned about once, below
            for i in range(0, B, chunk):
                lam_i = lam_all[i:i + chunk] if isinstance(lam, torch.Tensor) else lam
                warm_i = warm[i:i + chunk] if warm is not None else None
                u_i, info_i = rof(f4[i:i + chunk], lam_i, tol=tol, max_iter=max_iter, vectorial=vectorial,
                                  warm=warm_i, return_info=True, check_every=check_every, tau=tau, gamma=gamma)
                parts.append((u_i, info_i.dual[:, :, 0], info_i.dual[:, :, 1], info_i.iters, info_i.gap))
        u_out, py_out, px_out, iters_out, gap_out = (torch.cat(p) for p in zip(*parts))
    else:
        u_out, py_out, px_out, iters_out, gap_out = _solve(f4.contiguous(), lam, lam_all, tol, max_iter,
                                                           vectorial, warm, check_every, tau, gamma)

    unconverged = gap_out > tol
    if unconverged.any():
        warnings.warn(f"rof: {int(unconverged.sum())} of {B} images did not reach gap/pixel <= {tol:g} "
                      f"in {max_iter} iterations (worst {float(gap_out.max()):.3g}); raise max_iter",
                      RuntimeWarning, stacklevel=2)
    u_res = restore(u_out)
    if not return_info:
        return u_res
    dual = torch.stack((py_out, px_out), dim=2)
    return u_res, RofInfo(iters=iters_out, gap=gap_out, dual=dual)


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


def _flow(f4: torch.Tensor, n_steps: int, lam: float, tol: float, vectorial: bool, max_iter: int):
    """States u_0..u_{n_steps} of the TV flow, each step warm-started from the previous dual."""
    states = [f4]
    iters = []
    warm = None
    for _ in range(n_steps):
        u_next, info = rof(states[-1], lam, tol=tol, max_iter=max_iter, vectorial=vectorial,
                           warm=warm, return_info=True)
        states.append(u_next)
        iters.append(info.iters)
        # Consecutive flow steps solve nearby problems, so the last dual field is a close start.
        warm = info.dual
    return states, torch.stack(iters, dim=1)


def _check_N(N) -> None:
    if not (isinstance(N, int) and N > 0):
        raise ValueError(f"N must be a positive integer number of bands, got {N!r}")


def spectral(f: torch.Tensor, N: int = 5, lam: float = 7.0, *, tol: float = 1e-4,
             vectorial: bool = False, max_iter: int = 2000) -> SpectralDecomposition:
    """Spectral TV decomposition of a batch into ``N`` bands and a residual.

    The TV flow is integrated by implicit Euler, ``u_{n+1} = argmin_u TV(u) + lam/2 ||u - u_n||^2``
    (one :func:`rof` solve per step, ``dt = 1/lam``), then (Gilboa 2014, Burger et al. 2016)

        phi_n    = n (u_{n-1} - 2 u_n + u_{n+1}),      n = 1..N
        residual = (N+1) u_N - N u_{N+1}
        S(t_n)   = ||phi_n||_1

    and ``f = sum_n phi_n + residual``. Needs ``N+1`` ROF solves.

    Parameters
    ----------
    f : Tensor, shape (B, C, H, W), (C, H, W) or (H, W)
    N : int
        Number of bands.
    lam : float
        ``1/dt`` of the flow; the dissertation uses 7 for images in [-1, 1].
    tol : float
        Duality gap per pixel of each ROF step.
    vectorial : bool
        Colour TV coupling the channels (see :func:`tv`).

    Returns
    -------
    SpectralDecomposition
        Batched fields; a single image of shape (C, H, W) or (H, W) gives batch size 1.
    """
    f4, _ = _as_batch(f, "f")
    _check_N(N)
    _check_positive(lam, "lam")
    states, iters = _flow(f4, N + 1, float(lam), tol, vectorial, max_iter)
    u = torch.stack(states, dim=1)
    n = torch.arange(1, N + 1, dtype=f4.dtype, device=f4.device).view(1, N, 1, 1, 1)
    phi = n * (u[:, :N] - 2 * u[:, 1:N + 1] + u[:, 2:N + 2])
    residual = (N + 1) * u[:, N] - N * u[:, N + 1]
    t = torch.arange(1, N + 1, dtype=f4.dtype, device=f4.device) / lam
    S = phi.abs().sum(dim=(2, 3, 4))
    return SpectralDecomposition(u=u, phi=phi, residual=residual, t=t, S=S, iters=iters, lam=float(lam))


# --------------------------------------------------------------------------- augmentation

def random_gains(batch: int, n_bands: int, gains=(3, 5), *, per_image: bool = True,
                 generator: Optional[torch.Generator] = None, device=None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Integer gains ``k`` drawn uniformly from ``[gains[0], gains[1])``, shape (batch, n_bands).

    ``per_image=False`` draws one row and repeats it for the whole batch, as the dissertation did.
    A ``generator`` makes the draw reproducible; it must live on ``device`` (default: CPU).
    """
    lo, hi = int(gains[0]), int(gains[1])
    if hi <= lo:
        raise ValueError(f"gains must be an integer range [lo, hi) with hi > lo, got {tuple(gains)}")
    gen_device = generator.device if generator is not None else torch.device("cpu")
    rows = batch if per_image else 1
    k = torch.randint(lo, hi, (rows, n_bands), generator=generator, device=gen_device)
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
                     tol: float = 1e-4, vectorial: bool = False) -> torch.Tensor:
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
                 per_image: bool = True, tol: float = 1e-4, vectorial: bool = False,
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        self.bands = _check_bands(bands)
        _check_positive(lam, "lam")
        _check_positive(tol, "tol")
        if int(gains[1]) <= int(gains[0]):
            raise ValueError(f"gains must be an integer range [lo, hi) with hi > lo, got {tuple(gains)}")
        self.gains, self.lam, self.per_image = tuple(gains), float(lam), per_image
        self.tol, self.vectorial, self.generator = tol, vectorial, generator

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return spectral_augment(f, self.bands, self.gains, self.lam, per_image=self.per_image,
                                generator=self.generator, tol=self.tol, vectorial=self.vectorial)

    def extra_repr(self) -> str:
        return f"bands={self.bands}, gains={self.gains}, lam={self.lam}, per_image={self.per_image}"
