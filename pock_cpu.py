"""The CPU kernel of :mod:`pock`: several Chambolle-Pock iterations fused into one pass per image.

The iteration is the one of ``pock._Slots.iterate_once`` (Chambolle & Pock 2011, Algorithm 2, on the
step ``z = u - f``); written as a sequence of torch operations it reads and writes every array of a
batch about twenty times per iteration, so on a CPU its speed is that of memory. Here each image
runs ``m`` iterations while its arrays stay in the core's caches: per iteration one pass updates the
dual field (row ``y`` needs ``zbar`` on rows ``y`` and ``y+1``) and projects it, and a second pass
the primal (row ``y`` needs the new dual on rows ``y`` and ``y-1``).

Work is shared among threads in two ways (:func:`split`): images go whole to the threads, as many to
each; the ones left over (fewer than the threads: one large image, say) have their rows cut into one
band per thread, when the bands are large enough to pay for the threads meeting at a barrier after each
pass, which is all the two passes' row dependencies need. Every pixel takes the same arithmetic either
way, and the gap's terms are summed over fixed blocks of rows and then over the blocks in order, so
results do not depend on the number of threads.

The threads are this module's own (one crew per calling thread, made again in a forked child); nothing
process-wide is changed, so concurrent calls from several Python threads run side by side.

The arithmetic is the same as the torch path's up to rounding (``tests/test_pock.py`` runs both in
lockstep), and every result is certified by the same float64 duality gap (``pock._certificate``), so
either path returns solutions with the same guarantee. The boundary rule is not written here: the
column weights (zero where a forward difference would straddle a row end) come from ``pock._grad_into``.

Requires numba; without it ``AVAILABLE`` is False, ``MISSING`` says why, and :mod:`pock` warns once
and uses its torch operations.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import threading
import weakref
from typing import Optional

import numpy as np
import torch

try:
    import numba
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic
except ImportError as exc:            # numba is in requirements.txt; pock warns once when it is missing
    numba, MISSING = None, f"{type(exc).__name__}: {exc}"
else:
    MISSING = None

__all__ = ["AVAILABLE", "MISSING", "iterate", "split", "torch_serial_in_this_thread"]

AVAILABLE = numba is not None

# Cutting an image into bands pays for waking the other threads (50-100 us per call of the kernel) and for
# their barriers (two per iteration) only when each band holds this many pixels or more: measured on 2
# cores at 10 iterations per call, one 128x128 image ran at 0.5-0.7x its speed on one thread, 256x256 at
# 1.1-1.8x and 512x512 at 1.6-2.2x.
ROW_SPLIT_MIN_PIXELS = 1 << 15
# The gap's terms are summed over blocks of whole rows of about this many pixels, then over the blocks: a
# block is long enough to vectorise well (summing per row of a 32x32 image made the kernel 20% slower).
ENERGY_BLOCK_PIXELS = 1 << 12
# Spins on a barrier before each yield of the core: a partner thread that lost its core (another process
# on a busy machine) then gets it back instead of waiting out our time slice.
_SPINS = 2000


def _dual_rows(i, r0, r1, py, px, zbar, gyf, gxf, sigma, vectorial, one, W, columns, scale):
    """Rows ``r0 <= y < r1`` of image i: p <- proj(p + sigma (grad f + grad zbar)); arrays (n, C, H*W) as in
    :func:`_kernel`. Reads ``zbar`` on rows r0..r1 (one below the band), writes ``p`` on the band only."""
    n, C, HW = py.shape
    a, b = r0 * W, r1 * W
    e = min(b, HW - W)                                 # the rows with a row below
    if vectorial:
        # Separate passes: fusing the ascent with the sum over channels (as the gray branch fuses it with
        # the projection) measured 3-8% slower for 3 channels at 32-128 px.
        for c in range(C):
            # shifted views rather than shifted indices: loops over plain 0..n-1 indices vectorise
            pyc, pxc, zb, gyc, gxc = py[i, c], px[i, c], zbar[i, c], gyf[i, c], gxf[i, c]
            pyh, zbh, zbl, gyh = pyc[a:e], zb[a:e], zb[a + W:e + W], gyc[a:e]
            for j in range(e - a):
                pyh[j] += sigma * (zbl[j] - zbh[j] + gyh[j])
            pxh, zbh, zbr, gxh, col = pxc[a:b - 1], zb[a:b - 1], zb[a + 1:b], gxc[a:b - 1], columns[a:b - 1]
            for j in range(b - 1 - a):
                pxh[j] += sigma * ((zbr[j] - zbh[j] + gxh[j]) * col[j])
        # p <- p / max(1, |p|), |p| over the channels
        sc = scale[:b - a]
        sc[:] = 0
        for c in range(C):
            pyh, pxh = py[i, c, a:b], px[i, c, a:b]
            for j in range(b - a):
                sc[j] += pyh[j] * pyh[j] + pxh[j] * pxh[j]
        for j in range(b - a):
            sc[j] = one / np.sqrt(max(sc[j], one))
        for c in range(C):
            pyh, pxh = py[i, c, a:b], px[i, c, a:b]
            for j in range(b - a):
                pyh[j] *= sc[j]
                pxh[j] *= sc[j]
    else:
        # the same ascent and projection in one loop; px and gxf are zero where columns[j] is
        for c in range(C):
            pyc, pxc, zb, gyc, gxc = py[i, c], px[i, c], zbar[i, c], gyf[i, c], gxf[i, c]
            pyh, pxh, zbh, zbl, zbr, gyh, gxh, col = (pyc[a:e], pxc[a:e], zb[a:e], zb[a + W:e + W],
                                                      zb[a + 1:e + 1], gyc[a:e], gxc[a:e], columns[a:e])
            for j in range(e - a):
                s_a = pyh[j] + sigma * (zbl[j] - zbh[j] + gyh[j])
                s_b = pxh[j] + sigma * ((zbr[j] - zbh[j] + gxh[j]) * col[j])
                s = one / np.sqrt(max(s_a * s_a + s_b * s_b, one))
                pyh[j] = s_a * s
                pxh[j] = s_b * s
            for j in range(max(a, HW - W), b - 1):      # the last row: py stays zero
                s_b = pxc[j] + sigma * ((zb[j + 1] - zb[j] + gxc[j]) * columns[j])
                s = one / np.sqrt(max(pyc[j] * pyc[j] + s_b * s_b, one))
                pyc[j] *= s
                pxc[j] = s_b * s


def _primal_rows(i, r0, r1, py, px, z, zbar, w, il, w_u, w_bar, one, W):
    """Rows ``r0 <= y < r1`` of image i: w = div(p) / lam and the primal update of z and zbar (see
    :func:`_kernel`). Reads ``p`` on rows r0-1..r1-1 (one above the band), writes the band only."""
    n, C, HW = py.shape
    a, b = r0 * W, r1 * W
    # in the order of pock._scaled_div_into, so that both paths round alike;
    # z <- z + w_u (w - z); zbar <- z_new - (1 - w_bar) (z_new - z_old), as torch.lerp for weights >= 0.5
    for c in range(C):
        pyc, pxc, zc, zbc, wc = py[i, c], px[i, c], z[i, c], zbar[i, c], w[i, c]
        s = a
        if a == 0:                                     # the first row: no dual entry above
            for j in range(W):
                wc[j] = pyc[j] * il
                wc[j] += pxc[j] * il
            for j in range(1, W):
                wc[j] -= pxc[j - 1] * il
            for j in range(W):
                z0 = zc[j]
                z1 = z0 + w_u * (wc[j] - z0)
                zc[j] = z1
                zbc[j] = z1 - (z1 - z0) * (one - w_bar)
            s = W
        pyl, pyu, pxl, pxd, wl, zl, zbl = pyc[s:b], pyc[s - W:b - W], pxc[s:b], pxc[s - 1:b - 1], wc[s:b], zc[s:b], zbc[s:b]
        for j in range(b - s):
            wv = pyl[j] * il
            wv -= pyu[j] * il
            wv += pxl[j] * il
            wv -= pxd[j] * il
            wl[j] = wv
            z0 = zl[j]
            z1 = z0 + w_u * (wv - z0)
            zl[j] = z1
            zbl[j] = z1 - (z1 - z0) * (one - w_bar)


def _energy_blocks(i, b0, b1, R, z, w, f, gyf, gxf, blend, vectorial, W, columns, sums, xs, g2):
    """Per block ``b0 <= k < b1`` of ``R`` rows of image i, into ``sums[k]``: (``TV(f + x)``, ``||x||^2``,
    ``<f, w> + ||w||^2 / 2``) in float64 at ``x = z + blend (w - z)``, the terms of the duality gap that
    ``pock._gap_terms`` computes (a screen: what is reported is certified again by ``pock._certificate``).
    Blocks are fixed by the image's shape, so the sums do not depend on which thread takes which block;
    each block reads ``z``, ``w`` on the row below it too. ``xs`` ((R+1) W) and ``g2`` (C, R W) are one block's
    scratch: small enough to stay in the caches (image-sized scratch, fresh at every call, cost a page fault per
    4 KiB and made the screen of a 512x512 image as slow as 8 iterations)."""
    n, C, HW = z.shape
    H = HW // W
    for k in range(b0, b1):
        a, b = k * R * W, min((k + 1) * R, H) * W
        bx, e = min(b + W, HW), min(b, HW - W)        # x on the row below; the rows with a row below
        sq = 0.0
        dual = 0.0
        tv = 0.0
        for c in range(C):
            zc, wc, fc, gyc, gxc, g2c = z[i, c], w[i, c], f[i, c], gyf[i, c], gxf[i, c], g2[c]
            zr, wr, xr = zc[a:bx], wc[a:bx], xs[:bx - a]
            for j in range(bx - a):
                xr[j] = zr[j] + blend * (wr[j] - zr[j])
            xr, fr, wr = xs[:b - a], fc[a:b], wc[a:b]
            for j in range(b - a):
                sq += xr[j] * xr[j]
                dual += fr[j] * wr[j] + 0.5 * wr[j] * wr[j]
            # grad(f + x) = grad f + grad x, with grad x zero across the last row and column (columns[j] = 0)
            xl, xh, xn, gyh, gxh, g2h, col = (xs[W:e - a + W], xs[:e - a], xs[1:e - a + 1], gyc[a:e], gxc[a:e],
                                              g2c[:e - a], columns[a:e])
            for j in range(e - a):
                gy = gyh[j] + (xl[j] - xh[j])
                gx = gxh[j] + (xn[j] - xh[j]) * col[j]
                g2h[j] = gy * gy + gx * gx
            for j in range(max(a, HW - W), b - 1):             # the last row
                gx = gxc[j] + (xs[j + 1 - a] - xs[j - a]) * columns[j]
                g2c[j - a] = gyc[j] * gyc[j] + gx * gx
            if b == HW:
                g2c[HW - 1 - a] = gyc[HW - 1] * gyc[HW - 1] + gxc[HW - 1] * gxc[HW - 1]
            if not vectorial:
                g2r = g2c[:b - a]
                for j in range(b - a):
                    tv += np.sqrt(g2r[j])
        if vectorial:
            for j in range(b - a):
                t = g2[0, j]
                for c in range(1, C):
                    t += g2[c, j]
                tv += np.sqrt(t)
        sums[k, 0] = tv
        sums[k, 1] = sq
        sums[k, 2] = dual


def _sum_blocks(i, sums, out):
    """``out[i] =`` the sum of the blocks' ``sums`` in block order (the same whatever the thread count)."""
    t0 = 0.0
    t1 = 0.0
    t2 = 0.0
    for k in range(sums.shape[0]):
        t0 += sums[k, 0]
        t1 += sums[k, 1]
        t2 += sums[k, 2]
    out[i, 0] = t0
    out[i, 1] = t1
    out[i, 2] = t2



def _steps(table, r, t):
    return table[r, t, 0], table[r, t, 1], table[r, t, 2]


def _screen_passes(out, i, screen, relative, flat, floor_units, npix):
    """Whether image i's gap terms ``out[i]`` pass the screen of ``pock._Slots.test``, with its arithmetic
    in its order (float64, no contraction, so both decide alike): ``screen[i]`` is (lam, tol, the first flow
    step's fidelity)."""
    lam, tol = screen[i, 0], screen[i, 1]
    fidelity = 0.5 * lam * out[i, 1]
    dual = -lam * out[i, 2]
    gap = (out[i, 0] + fidelity - dual) / npix
    if relative:
        size = max(fidelity, flat * screen[i, 2])
        floor = floor_units * (out[i, 0] + fidelity + abs(dual))
        tol = max(tol * size, floor) / npix
    return gap <= tol


def _kernel(images, py, px, z, zbar, w, gyf, gxf, f, columns, table, row, it, inv_lam, m, vectorial, one, W, blend, out,
            R, rounds, screen, relative, flat, floor_units):
    """Rounds of ``m`` iterations of each image in ``images`` (indices) with the steps ``table[row[i], it[i] + k]``
    (advancing ``it[i]`` by ``m`` a round), each round followed by the terms of the image's duality gap into
    ``out`` (skipped when ``out`` has no rows), summed over blocks of ``R`` rows, while the image is still in the
    caches. An image stops after ``rounds`` rounds, or before, at the first round after which it passes the
    screen (:func:`_screen_passes`).

    Arrays are (n, C, H*W), rows of width ``W`` laid end to end: the loops run over whole images, which
    the compiler vectorises; the shifts by 1 and by ``W`` that straddle a row end are the boundary
    entries, weighted by ``columns`` (or, in ``div``, met by zeros) as in ``pock._grad_into``."""
    n, C, HW = z.shape
    H = HW // W
    nb = (H + R - 1) // R
    rows = min(R, H)
    scale = np.empty(HW, dtype=z.dtype)
    xs, g2 = np.empty((rows + 1) * W, dtype=z.dtype), np.empty((C, rows * W), dtype=z.dtype)
    sums = np.empty((nb, 3), dtype=np.float64)
    for i in images:
        il = inv_lam[i]
        for r in range(rounds):
            for k in range(m):
                sigma, w_u, w_bar = _steps(table, row[i], it[i] + k)
                _dual_rows(i, 0, H, py, px, zbar, gyf, gxf, sigma, vectorial, one, W, columns, scale)
                _primal_rows(i, 0, H, py, px, z, zbar, w, il, w_u, w_bar, one, W)
            it[i] += m
            if out.shape[0]:
                _energy_blocks(i, 0, nb, R, z, w, f, gyf, gxf, blend, vectorial, W, columns, sums, xs, g2)
                _sum_blocks(i, sums, out)
                if r + 1 < rounds and _screen_passes(out, i, screen, relative, flat, floor_units, C * HW):
                    break


def _barrier(sync, j, k, t):
    """Thread ``j`` of ``k`` has finished phase ``t``; wait until every thread has (``sync[8 l]``: the last phase
    thread ``l`` finished, one cache line each). Release/acquire order makes the other bands' writes visible."""
    _store_release(sync, 8 * j, t)
    for l in range(k):
        spins = 0
        while _load_acquire(sync, 8 * l) < t:
            spins += 1
            if spins >= _SPINS:
                _yield_core()
                spins = 0


def _kernel_rows(j, k, sync, images, py, px, z, zbar, w, gyf, gxf, f, columns, table, row, it, inv_lam, m, vectorial,
                 one, W, blend, out, R, rounds, screen, relative, flat, floor_units, sums):
    """Thread ``j`` of ``k``: the band of rows ``H j / k <= y < H (j+1) / k`` of each image in ``images`` in turn,
    the same arithmetic and rounds as :func:`_kernel`, with a barrier after each pass; the gap's terms of its
    share of the blocks go to the shared ``sums``, thread 0 adds them up in block order, decides whether the
    image stops and tells the others in ``sync[8 k]``."""
    n, C, HW = z.shape
    H = HW // W
    r0, r1 = H * j // k, H * (j + 1) // k
    nb = sums.shape[0]
    b0, b1 = nb * j // k, nb * (j + 1) // k
    scale = np.empty((r1 - r0) * W, dtype=z.dtype)
    rows = min(R, H)
    xs, g2 = np.empty((rows + 1) * W, dtype=z.dtype), np.empty((C, rows * W), dtype=z.dtype)
    t = 0
    for i in images:
        il = inv_lam[i]
        start = it[i]                                   # read by every thread before thread 0 writes it
        done = 0
        for r in range(rounds):
            for kk in range(m):
                sigma, w_u, w_bar = _steps(table, row[i], start + done + kk)
                _dual_rows(i, r0, r1, py, px, zbar, gyf, gxf, sigma, vectorial, one, W, columns, scale)
                t += 1
                _barrier(sync, j, k, t)                 # p of the band above is new before it is read
                _primal_rows(i, r0, r1, py, px, z, zbar, w, il, w_u, w_bar, one, W)
                t += 1
                _barrier(sync, j, k, t)                 # zbar of the band below is new before it is read
            done += m
            if out.shape[0]:
                _energy_blocks(i, b0, b1, R, z, w, f, gyf, gxf, blend, vectorial, W, columns, sums, xs, g2)
                t += 1
                _barrier(sync, j, k, t)
                if j == 0:                              # sums is not written again before 2 more barriers
                    _sum_blocks(i, sums, out)
                if r + 1 < rounds:
                    if j == 0:
                        sync[8 * k] = 1 if _screen_passes(out, i, screen, relative, flat, floor_units, C * HW) else 0
                    t += 1
                    _barrier(sync, j, k, t)             # the decision is written before it is read
                    if sync[8 * k]:
                        break
        if j == 0:
            it[i] = start + done


if AVAILABLE:
    @intrinsic
    def _load_acquire(typingctx, arr, idx):
        sig = types.int64(arr, idx)

        def codegen(context, builder, sig, args):
            ary = context.make_array(sig.args[0])(context, builder, args[0])
            ptr = cgutils.get_item_pointer(context, builder, sig.args[0], ary, [args[1]], wraparound=False)
            return builder.load_atomic(ptr, "acquire", 8)
        return sig, codegen

    @intrinsic
    def _store_release(typingctx, arr, idx, val):
        sig = types.void(arr, idx, types.int64)

        def codegen(context, builder, sig, args):
            ary = context.make_array(sig.args[0])(context, builder, args[0])
            ptr = cgutils.get_item_pointer(context, builder, sig.args[0], ary, [args[1]], wraparound=False)
            val = context.cast(builder, args[2], sig.args[2], types.int64)
            builder.store_atomic(val, ptr, "release", 8)
            return context.get_dummy_value()
        return sig, codegen

    @intrinsic
    def _yield_core(typingctx):
        sig = types.int32()

        def codegen(context, builder, sig, args):
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
            return builder.call(fn, [])
        return sig, codegen

    # Compiled without numba's own threading (its OpenMP layer spins against torch's threads and is not
    # fork-safe, its workqueue layer refuses concurrent callers); nogil lets this module's threads run the
    # pieces at once. The energies' sums may be reassociated within a row (partial sums, which vectorise):
    # they only screen which images to certify, and pock certifies those again in float64 from scratch; the
    # iterations themselves keep their order.
    _jit = dict(nogil=True, error_model="numpy", fastmath={"contract"})
    _energy_blocks = numba.njit(nogil=True, error_model="numpy", fastmath={"contract", "reassoc"})(_energy_blocks)
    _sum_blocks, _steps, _barrier = (numba.njit(nogil=True)(fn) for fn in (_sum_blocks, _steps, _barrier))
    # no fastmath: the screen must decide exactly as pock._Slots.test does on the same numbers
    _screen_passes = numba.njit(nogil=True)(_screen_passes)
    _dual_rows, _primal_rows = numba.njit(**_jit)(_dual_rows), numba.njit(**_jit)(_primal_rows)
    _kernel_images = numba.njit(cache=True, **_jit)(_kernel)
    _kernel_bands = numba.njit(cache=True, **_jit)(_kernel_rows)


class _Crew:
    """``size`` worker threads, each with its own queue, so that the pieces of one call all run at once
    (the bands of :func:`_kernel_rows` wait for each other). One crew per calling thread: concurrent
    callers never queue behind each other's pieces."""

    def __init__(self, size: int):
        self.pid, self.size = os.getpid(), size
        self.inboxes = [queue.SimpleQueue() for _ in range(size)]
        for box in self.inboxes:
            threading.Thread(target=_serve, args=(box,), daemon=True, name="pock_cpu").start()
        # the workers end with the crew (when its calling thread ends or it is replaced by a larger one); at
        # interpreter exit they are left waiting (ending threads during finalisation aborted the process)
        weakref.finalize(self, lambda boxes: [b.put(None) for b in boxes], self.inboxes).atexit = False

    def run(self, jobs) -> None:
        """Call ``jobs[0]`` here and the others on the workers at once; re-raise the first error."""
        done = queue.SimpleQueue()
        for box, job in zip(self.inboxes, jobs[1:]):
            box.put((job, done))
        errors = []
        try:
            jobs[0]()
        except BaseException as e:         # noqa: BLE001 - re-raised below, after the workers are done
            errors.append(e)
        for _ in jobs[1:]:
            e = done.get()
            if e is not None:
                errors.append(e)
        if errors:
            raise errors[0]


def _serve(box) -> None:
    while True:
        item = box.get()
        if item is None:
            return
        job, done = item
        try:
            job()
        except BaseException as e:         # noqa: BLE001 - handed to the caller
            done.put(e)
        else:
            done.put(None)


def _thread_settings():
    """Per-thread setters of the thread counts torch's CPU operations use, where torch runs on OpenMP:
    OpenMP's own (``omp_set_num_threads`` sets the calling thread's count) and that of the MKL bundled with
    torch (``MKL_Set_Num_Threads_Local``, used by its vector maths such as ``sqrt``; returns the previous
    value, 0 for none); None each where absent."""
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None, None
    try:
        omp = ctypes.CDLL(None)
        omp.omp_set_num_threads.argtypes, omp.omp_get_max_threads.restype = [ctypes.c_int], ctypes.c_int
        omp = omp if omp.omp_get_max_threads() == torch.get_num_threads() else None
    except (AttributeError, OSError):
        return None, None
    try:
        # the C entry point (its lower-case name is the Fortran one, which takes a pointer)
        mkl = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")).MKL_Set_Num_Threads_Local
        mkl.argtypes, mkl.restype = [ctypes.c_int], ctypes.c_int
    except (AttributeError, OSError):
        mkl = None
    return omp, mkl


_omp, _mkl = _thread_settings()


@contextlib.contextmanager
def torch_serial_in_this_thread():
    """Yields torch's thread count here and runs torch's operations of the calling thread on one thread
    meanwhile; torch's setting, other threads and threads started meanwhile are untouched.

    torch's OpenMP workers spin for a while after each parallel operation; between the kernel's calls
    (the solver's bookkeeping) they would take the cores from the kernel's threads: measured on 2 cores,
    32x32 batches on 2 threads then ran 5-10x slower than on one. ``torch.set_num_threads(1)`` would change
    the setting of the whole process (and of every thread started meanwhile); the thread counts of OpenMP and
    MKL that torch's operations read are also per thread, and those are what is set here, and restored. (In a
    forked child, where OpenMP's workers are gone, this also keeps the bookkeeping from waiting on them.)
    Without an OpenMP runtime to set, nothing is changed."""
    outer = getattr(_serial, "threads", None)
    if outer is not None:                         # nested: the count from before the outer one
        yield outer
        return
    threads = torch.get_num_threads()             # also gives this thread torch's setting if it had none yet
    if _omp is None or threads == 1:
        yield threads
        return
    _omp.omp_set_num_threads(1)
    mkl_before = _mkl(1) if _mkl is not None else None
    _serial.threads = threads
    try:
        yield threads
    finally:
        _serial.threads = None
        if _mkl is not None:
            _mkl(mkl_before)
        _omp.omp_set_num_threads(threads)


_serial = threading.local()


_local = threading.local()


def _crew(size: int) -> _Crew:
    crew = getattr(_local, "crew", None)
    if crew is None or crew.pid != os.getpid() or crew.size < size:     # a forked child has no workers
        crew = _local.crew = _Crew(size)
    return crew


def split(n_images: int, H: int, W: int, threads: int) -> tuple:
    """``(whole, bands)``: the first ``whole`` images go whole to the threads (as many to each), and the
    rows of each of the others are cut into ``bands`` bands, one per thread, when each band keeps at least
    ``ROW_SPLIT_MIN_PIXELS`` pixels and two rows (else every image goes whole, ``bands = 1``)."""
    bands = max(1, min(threads, H // 2, H * W // ROW_SPLIT_MIN_PIXELS))
    if bands == 1:
        return n_images, 1
    return n_images - n_images % threads, bands


def iterate(py, px, z, zbar, w, gyf, gxf, f, columns, table, row, it, inv_lam, active, m: int, vectorial: bool,
            blend: Optional[float], threads: int, screen=None) -> Optional[torch.Tensor]:
    """``m`` iterations in place on contiguous CPU tensors (n, C, H, W) of one float dtype, on up to ``threads``
    threads of this module's own (torch's thread count is not touched).

    ``columns`` (H*W,): the weight of the difference along a row, 0 where it would straddle a row end;
    ``table`` (R, T, 3): sigma, primal weight and ``1 + theta`` per row and iteration; ``row``, ``it``
    (n,) int64, ``it`` advanced here for the images iterated; ``inv_lam`` (n,) in the arrays' dtype; ``active``
    (n,) bool, the images to iterate (the others are left as they are). With a ``blend``, returns (n, 3)
    float64: per image ``TV(f + x)``, ``||x||^2`` and ``<f, w> + ||w||^2 / 2`` at ``x = z + blend (w - z)``
    after the iterations.

    With a ``screen`` (and a ``blend``), ``(per_image, relative, flat, floor_units, max_iter)`` as
    ``pock._Slots.test`` screens (``per_image`` (n, 3) float64: lam, tol, first fidelity), each image runs rounds
    of ``m`` iterations until it passes that screen or the image furthest on reaches ``max_iter`` (so that none runs
    past the step table): one call instead of one per round (each call costs the wake-up of the threads and a
    round of Python).
    The result does not depend on ``threads``.
    """
    if not AVAILABLE:
        raise RuntimeError(f"pock_cpu.iterate needs numba, which could not be imported ({MISSING}); "
                           f"pip install numba")
    n, C, H, W = z.shape
    out = torch.zeros((n if blend is not None else 0, 3), dtype=torch.float64)
    fields = [t.view(n, C, H * W).numpy() for t in (py, px, z, zbar, w, gyf, gxf, f)]
    dtype = z.numpy().dtype.type
    images = active.nonzero().view(-1).numpy()
    R = max(1, ENERGY_BLOCK_PIXELS // W)
    if screen is None or blend is None:
        rounds, screen = 1, (np.zeros((n, 3)), False, 0.0, 0.0)
    else:
        per_image, relative, flat, floor_units, max_iter = screen
        rounds = max(1, -(-(max_iter - int(it[active].max())) // m)) if len(images) else 1
        screen = (per_image.numpy(), bool(relative), float(flat), float(floor_units))
    args = (*fields, columns.numpy(), *[t.numpy() for t in (table, row, it, inv_lam)], m, vectorial, dtype(1), W,
            dtype(blend or 0), out.numpy(), R, rounds, *screen)
    whole, bands = split(len(images), H, W, threads)
    k = max(1, min(threads, whole))
    if k == 1 and whole:
        _kernel_images(images[:whole], *args)
    elif whole:
        pieces = [images[whole * j // k:whole * (j + 1) // k] for j in range(k)]
        _crew(k - 1).run([lambda p=p: _kernel_images(p, *args) for p in pieces])
    if whole < len(images):
        sync = np.zeros(8 * (bands + 1), dtype=np.int64)         # a cache line per thread, and the decision
        sums = np.empty(((H + R - 1) // R, 3), dtype=np.float64)
        rest = images[whole:]
        _crew(bands - 1).run([lambda j=j: _kernel_bands(j, bands, sync, rest, *args, sums) for j in range(bands)])
    return out if blend is not None else None
