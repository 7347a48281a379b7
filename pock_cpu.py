"""The CPU kernel of :mod:`pock`: several Chambolle-Pock iterations fused into one pass per image.

The iteration is the one of ``pock._Slots.iterate`` (Chambolle & Pock 2011, Algorithm 2, on the
step ``z = u - f``); written as a sequence of torch operations it reads and writes every array of a
batch about twenty times per iteration, so on a CPU its speed is that of memory. Here each image
runs ``m`` iterations while its arrays stay in the core's caches, and each iteration is one sweep
over the rows: row ``y`` of the dual field is updated (it needs ``zbar`` on rows ``y`` and ``y+1``,
not yet overwritten), projected, and then row ``y`` of the primal (it needs the new dual on rows
``y`` and ``y-1``, both done). The images are split among torch's number of threads, while torch's own
operations run on one (:func:`torch_on_one_thread`).

The arithmetic is the same as the torch path's up to rounding (one iteration agrees to a few units
in the last place; ``tests/test_pock.py`` checks it), and every result is certified by the same
float64 duality gap, so either path returns solutions with the same guarantee.

Requires numba; without it ``AVAILABLE`` is False and :mod:`pock` uses its torch operations.
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import numpy as np
import torch

try:
    import numba
except ImportError:                   # pragma: no cover - numba is in requirements.txt
    numba = None

__all__ = ["AVAILABLE", "iterate", "torch_on_one_thread"]

AVAILABLE = numba is not None


def _dual_step(i, py, px, zbar, gyf, gxf, sigma, vectorial, one, W, columns, scale):
    """p <- proj(p + sigma (grad f + grad zbar)) for image i; arrays (n, C, H*W) as in :func:`_kernel`."""
    n, C, HW = py.shape
    H = HW // W
    if vectorial:
        # Separate passes: fusing the ascent with the sum over channels (as the gray branch fuses it with
        # the projection) measured 3-8% slower for 3 channels at 32-128 px.
        # p <- p + sigma (grad f + grad zbar); zero across the last row (untouched) and column (reset)
        for c in range(C):
            # shifted views rather than shifted indices: loops over plain 0..n-1 indices vectorise
            pyc, pxc, zb, gyc, gxc = py[i, c], px[i, c], zbar[i, c], gyf[i, c], gxf[i, c]
            pyh, zbh, zbl, gyh = pyc[:HW - W], zb[:HW - W], zb[W:], gyc[:HW - W]
            for j in range(HW - W):
                pyh[j] += sigma * (zbl[j] - zbh[j] + gyh[j])
            pxh, zbh, zbr, gxh = pxc[:HW - 1], zb[:HW - 1], zb[1:], gxc[:HW - 1]
            for j in range(HW - 1):
                pxh[j] += sigma * (zbr[j] - zbh[j] + gxh[j])
            for y in range(H):
                pxc[y * W + W - 1] = 0
        # p <- p / max(1, |p|), |p| over the channels
        scale[:] = 0
        for c in range(C):
            pyc, pxc = py[i, c], px[i, c]
            for j in range(HW):
                scale[j] += pyc[j] * pyc[j] + pxc[j] * pxc[j]
        for j in range(HW):
            scale[j] = one / np.sqrt(max(scale[j], one))
        for c in range(C):
            pyc, pxc = py[i, c], px[i, c]
            for j in range(HW):
                pyc[j] *= scale[j]
                pxc[j] *= scale[j]
    else:
        # the same ascent and projection in one loop: columns[j] is 0 on the last column, where the
        # difference straddles a row end and grad is zero (as are px and gxf there)
        for c in range(C):
            pyc, pxc, zb, gyc, gxc = py[i, c], px[i, c], zbar[i, c], gyf[i, c], gxf[i, c]
            pyh, pxh, zbh, zbl, zbr, gyh, gxh = (pyc[:HW - W], pxc[:HW - W], zb[:HW - W], zb[W:],
                                                 zb[1:HW - W + 1], gyc[:HW - W], gxc[:HW - W])
            for j in range(HW - W):
                a = pyh[j] + sigma * (zbl[j] - zbh[j] + gyh[j])
                b = pxh[j] + sigma * ((zbr[j] - zbh[j] + gxh[j]) * columns[j])
                s = one / np.sqrt(max(a * a + b * b, one))
                pyh[j] = a * s
                pxh[j] = b * s
            for j in range(HW - W, HW - 1):            # the last row: py stays zero
                b = pxc[j] + sigma * ((zb[j + 1] - zb[j] + gxc[j]) * columns[j])
                s = one / np.sqrt(max(pyc[j] * pyc[j] + b * b, one))
                pyc[j] *= s
                pxc[j] = b * s


def _primal_step(i, py, px, z, zbar, w, il, w_u, w_bar, one, W):
    """w = div(p) / lam and the primal update of z and zbar for image i (see :func:`_kernel`)."""
    n, C, HW = py.shape
    # w = div(p) / lam (in the order of pock._scaled_div_into, so that both paths round alike);
    # z <- z + w_u (w - z); zbar <- z_new - (1 - w_bar) (z_new - z_old), as torch.lerp for weights >= 0.5
    for c in range(C):
        pyc, pxc, zc, zbc, wc = py[i, c], px[i, c], z[i, c], zbar[i, c], w[i, c]
        for j in range(W):                             # the first row: no dual entry above
            wc[j] = pyc[j] * il
            wc[j] += pxc[j] * il
        for j in range(1, W):
            wc[j] -= pxc[j - 1] * il
        for j in range(W):
            z0 = zc[j]
            z1 = z0 + w_u * (wc[j] - z0)
            zc[j] = z1
            zbc[j] = z1 - (z1 - z0) * (one - w_bar)
        pyl, pyu, pxl, pxd, wl, zl, zbl = pyc[W:], pyc[:HW - W], pxc[W:], pxc[W - 1:HW - 1], wc[W:], zc[W:], zbc[W:]
        for j in range(HW - W):
            wv = pyl[j] * il
            wv -= pyu[j] * il
            wv += pxl[j] * il
            wv -= pxd[j] * il
            wl[j] = wv
            z0 = zl[j]
            z1 = z0 + w_u * (wv - z0)
            zl[j] = z1
            zbl[j] = z1 - (z1 - z0) * (one - w_bar)


def _kernel(lo, hi, py, px, z, zbar, w, gyf, gxf, f, table, row, it, inv_lam, active, m, vectorial, one, W, blend,
            out):
    """``m`` iterations of images ``lo <= i < hi`` with the steps ``table[row[i], it[i] + k]``, then the
    terms of each image's duality gap into ``out`` (:func:`_image_energies`; skipped when ``out`` has no rows),
    while the image is still in the caches.

    Arrays are (n, C, H*W), rows of width ``W`` laid end to end: the loops run over whole images, which
    the compiler vectorises; the shifts by 1 and by ``W`` that straddle a row end are the boundary
    entries, reset (or, in ``div``, met by zeros) as in ``pock._grad_into``."""
    n, C, HW = z.shape
    H = HW // W
    scale = np.empty(HW, dtype=z.dtype)
    xs, g2 = np.empty(HW, dtype=z.dtype), np.empty((C, HW), dtype=z.dtype)
    columns = np.ones(HW, dtype=z.dtype)
    for y in range(H):
        columns[y * W + W - 1] = 0
    for i in range(lo, hi):
        if not active[i]:
            continue
        r, il = row[i], inv_lam[i]
        for k in range(m):
            sigma, w_u, w_bar = table[r, it[i] + k, 0], table[r, it[i] + k, 1], table[r, it[i] + k, 2]
            _dual_step(i, py, px, zbar, gyf, gxf, sigma, vectorial, one, W, columns, scale)
            _primal_step(i, py, px, z, zbar, w, il, w_u, w_bar, one, W)
        if out.shape[0]:
            _image_energies(i, z, w, f, gyf, gxf, blend, vectorial, out, W, xs, columns, g2)


def _image_energies(i, z, w, f, gyf, gxf, blend, vectorial, out, W, xs, columns, g2):
    """``out[i] =`` (``TV(f + x)``, ``||x||^2``, ``<f, w> + ||w||^2 / 2``) in float64 at ``x = z + blend (w - z)``,
    the terms of the duality gap that ``pock._gap_terms`` computes; arrays (n, C, H*W) as in :func:`_kernel`,
    ``columns`` as there, ``xs`` (H*W) and ``g2`` (C, H*W) scratch."""
    n, C, HW = z.shape
    sq = 0.0
    dual = 0.0
    tv = 0.0
    for c in range(C):
        zc, wc, fc, gyc, gxc, g2c = z[i, c], w[i, c], f[i, c], gyf[i, c], gxf[i, c], g2[c]
        for j in range(HW):
            xs[j] = zc[j] + blend * (wc[j] - zc[j])
            sq += xs[j] * xs[j]
            dual += fc[j] * wc[j] + 0.5 * wc[j] * wc[j]
        # grad(f + x) = grad f + grad x, with grad x zero across the last row and column (columns[j] = 0)
        xl, xh, xr, gyh, gxh, g2h = xs[W:], xs[:HW - W], xs[1:HW - W + 1], gyc[:HW - W], gxc[:HW - W], g2c[:HW - W]
        for j in range(HW - W):
            gy = gyh[j] + (xl[j] - xh[j])
            gx = gxh[j] + (xr[j] - xh[j]) * columns[j]
            g2h[j] = gy * gy + gx * gx
        for j in range(HW - W, HW - 1):                        # the last row
            gx = gxc[j] + (xs[j + 1] - xs[j]) * columns[j]
            g2c[j] = gyc[j] * gyc[j] + gx * gx
        g2c[HW - 1] = gyc[HW - 1] * gyc[HW - 1] + gxc[HW - 1] * gxc[HW - 1]
        if not vectorial:
            for j in range(HW):
                tv += np.sqrt(g2c[j])
    if vectorial:
        for j in range(HW):
            t = g2[0, j]
            for c in range(1, C):
                t += g2[c, j]
            tv += np.sqrt(t)
    out[i, 0] = tv
    out[i, 1] = sq
    out[i, 2] = dual


if AVAILABLE:
    # Compiled without numba's own threading (its OpenMP layer spins against torch's threads and is not
    # fork-safe); nogil lets the pool's Python threads run the pieces at once. The energies' sums may be
    # reassociated (partial sums, which vectorise): they only screen which images to certify, and pock
    # certifies those again in float64 from scratch; the iterations themselves keep their order.
    _image_energies = numba.njit(nogil=True, error_model="numpy", fastmath={"contract", "reassoc"})(_image_energies)
    _dual_step = numba.njit(nogil=True, error_model="numpy", fastmath={"contract"})(_dual_step)
    _primal_step = numba.njit(nogil=True, error_model="numpy", fastmath={"contract"})(_primal_step)
    _iterate_kernel = numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})(_kernel)


_pool, _pool_pid = None, None


@contextlib.contextmanager
def torch_on_one_thread():
    """Yields torch's thread count and keeps torch's own operations on one thread meanwhile.

    torch's OpenMP workers spin for a while after each parallel operation; between the kernel's calls
    (the solver's bookkeeping, on small tensors) they would take the cores from the kernel's threads:
    measured, two threads then ran slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield threads
    finally:
        torch.set_num_threads(threads)


def _run(kernel, n: int, threads: int, *args) -> None:
    """``kernel(lo, hi, *args)`` on ``threads`` contiguous pieces of the n images at once."""
    global _pool, _pool_pid
    k = max(1, min(threads, n))
    if k == 1:
        kernel(0, n, *args)
        return
    if _pool is None or _pool_pid != os.getpid() or _pool._max_workers < k:     # a forked child makes its own
        _pool, _pool_pid = ThreadPoolExecutor(max_workers=k, thread_name_prefix="pock_cpu"), os.getpid()
    bounds = [n * j // k for j in range(k + 1)]
    for f in [_pool.submit(kernel, bounds[j], bounds[j + 1], *args) for j in range(k)]:
        f.result()


def iterate(py, px, z, zbar, w, gyf, gxf, f, table, row, it, inv_lam, active, m: int, vectorial: bool,
            blend: Optional[float], threads: int) -> Optional[torch.Tensor]:
    """``m`` iterations in place on contiguous CPU tensors (n, C, H, W) of one float dtype, on ``threads``
    threads (see :func:`torch_on_one_thread`).

    ``table`` (R, T, 3): sigma, primal weight and ``1 + theta`` per row and iteration; ``row``, ``it``
    (n,) int64; ``inv_lam`` (n,) in the arrays' dtype; ``active`` (n,) bool, the images to iterate (the others are
    left as they are). With a ``blend``, returns (n, 3) float64: per image
    ``TV(f + x)``, ``||x||^2`` and ``<f, w> + ||w||^2 / 2`` at ``x = z + blend (w - z)`` after the iterations.
    """
    n, C, H, W = z.shape
    out = torch.empty((n if blend is not None else 0, 3), dtype=torch.float64)
    fields = [t.view(n, C, H * W).numpy() for t in (py, px, z, zbar, w, gyf, gxf, f)]
    dtype = z.numpy().dtype.type
    _run(_iterate_kernel, n, threads, *fields, *[t.numpy() for t in (table, row, it, inv_lam, active)], m, vectorial, dtype(1), W,
         dtype(blend or 0), out.numpy())
    return out if blend is not None else None
