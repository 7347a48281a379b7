"""Properties of the TV engine: operators, ROF solver, spectral decomposition, augmentation."""

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage.restoration import denoise_tv_chambolle

import pock
import pock_cpu


def real_gray(size=48, n=4, dtype=torch.float64):
    """Crops of scikit-image's sample photographs, gray, scaled to [-1, 1]."""
    cam = skdata.camera().astype(np.float64)
    ast = skdata.astronaut().mean(axis=2)
    cof = skdata.coffee().mean(axis=2)
    che = skdata.chelsea().mean(axis=2)
    crops = [cam[200:200 + size, 220:220 + size], ast[80:80 + size, 180:180 + size],
             cof[150:150 + size, 250:250 + size], che[100:100 + size, 200:200 + size]]
    x = np.stack(crops[:n]) / 127.5 - 1
    return torch.from_numpy(x).to(dtype).unsqueeze(1)


def real_rgb(size=40, dtype=torch.float64):
    ast = skdata.astronaut()[60:60 + size, 170:170 + size].astype(np.float64)
    return torch.from_numpy(ast / 127.5 - 1).permute(2, 0, 1).unsqueeze(0).to(dtype)


# ------------------------------------------------------------------ an independent reference

# What the engine computes is checked against this: numpy's np.diff and its adjoint written out, the
# energies summed in extended precision (80-bit long double on x86, else float64); nothing from pock.
EXT = np.longdouble


def ext(t):
    """A tensor (any float dtype, any device) as an array of EXT, exactly."""
    return t.detach().cpu().double().numpy().astype(EXT)


def np_grad(u):
    """Forward differences of (..., H, W) along rows (gy) and columns (gx), zero past the last row / column."""
    gy, gx = np.zeros_like(u), np.zeros_like(u)
    gy[..., :-1, :] = np.diff(u, axis=-2)
    gx[..., :, :-1] = np.diff(u, axis=-1)
    return gy, gx


def np_div(py, px):
    """The negative adjoint of np_grad: sum(np_grad(u) . p) = -sum(u np_div(p)) for every u and p."""
    d = np.zeros_like(py)
    d[..., :-1, :] += py[..., :-1, :]
    d[..., 1:, :] -= py[..., :-1, :]
    d[..., :, :-1] += px[..., :, :-1]
    d[..., :, 1:] -= px[..., :, :-1]
    return d


def per_image(lam, B):
    lam = lam.detach().cpu().double().numpy() if isinstance(lam, torch.Tensor) else np.full(B, float(lam))
    return lam.astype(EXT).reshape(-1)


def primal_energy(u, f, lam, vectorial=False):
    """TV(u) + lam/2 ||u - f||^2 per image of (B, C, H, W) tensors."""
    u, f = ext(u), ext(f)
    gy, gx = np_grad(u)
    sq = gy * gy + gx * gx
    tv = np.sqrt(sq.sum(axis=1)).sum(axis=(1, 2)) if vectorial else np.sqrt(sq).sum(axis=(1, 2, 3))
    return tv + per_image(lam, len(u)) / 2 * ((u - f) ** 2).sum(axis=(1, 2, 3))


def dual_energy(p, f, lam):
    """-<f, div p> - ||div p||^2 / (2 lam) per image, for a dual field p of shape (B, C, 2, H, W)."""
    p, f = ext(p), ext(f)
    d = np_div(p[:, :, 0], p[:, :, 1])
    return -(f * d).sum(axis=(1, 2, 3)) - (d * d).sum(axis=(1, 2, 3)) / (2 * per_image(lam, len(f)))


def reference_gap(u, p, f, lam, vectorial=False):
    """P(u) - D(p) per pixel of the tensors as returned, after checking that p is feasible (D a lower bound)."""
    pe = ext(p)
    norm_sq = (pe * pe).sum(axis=2)
    assert (norm_sq.sum(axis=1) if vectorial else norm_sq).max() <= 1
    return (primal_energy(u, f, lam, vectorial) - dual_energy(p, f, lam)) / f[0].numel()


# ----------------------------------------------------------------------------- operators

def test_div_is_negative_adjoint_of_grad():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(3, 2, 7, 9, generator=g, dtype=torch.float64)
    p = torch.randn(3, 2, 2, 7, 9, generator=g, dtype=torch.float64)
    lhs = (pock.grad(u) * p).sum()
    rhs = -(u * pock.div(p)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-12, atol=1e-12)


def test_operators_and_energies_match_the_numpy_reference():
    g = torch.Generator().manual_seed(1)
    u, f = (torch.randn(3, 2, 7, 9, generator=g, dtype=torch.float64) for _ in range(2))
    p = torch.randn(3, 2, 2, 7, 9, generator=g, dtype=torch.float64)           # boundary entries too
    lam = torch.tensor([0.5, 3.0, 20.0], dtype=torch.float64)
    gy, gx = np_grad(u.numpy())
    assert np.array_equal(pock.grad(u)[:, :, 0].numpy(), gy) and np.array_equal(pock.grad(u)[:, :, 1].numpy(), gx)
    assert np.allclose(pock.div(p).numpy(), np_div(p[:, :, 0].numpy(), p[:, :, 1].numpy()), rtol=0, atol=1e-14)
    for vectorial in (False, True):
        assert np.allclose(pock.rof_energy(u, f, lam, vectorial).numpy(), primal_energy(u, f, lam, vectorial),
                           rtol=1e-13)
    assert np.allclose(pock.rof_dual_energy(p, f, lam).numpy(), dual_energy(p, f, lam), rtol=1e-13)


def test_grad_neumann_boundary_and_constant():
    u = torch.arange(20.0).reshape(4, 5)
    g = pock.grad(u)
    assert g.shape == (2, 4, 5)
    assert torch.all(g[0, :-1] == 5) and torch.all(g[0, -1] == 0)
    assert torch.all(g[1, :, :-1] == 1) and torch.all(g[1, :, -1] == 0)
    assert pock.tv(torch.full((6, 6), 3.0)) == 0


def test_vectorial_tv_of_replicated_gray_is_sqrt3_times_gray():
    f = real_gray(n=2)
    rgb = f.expand(-1, 3, -1, -1)
    assert torch.allclose(pock.tv(rgb, vectorial=True), math.sqrt(3) * pock.tv(f), rtol=1e-12)
    # the channel-wise TV of the same image counts every edge three times
    assert torch.allclose(pock.tv(rgb), 3 * pock.tv(f), rtol=1e-12)


# ----------------------------------------------------------------------------- ROF

def test_constant_image_is_fixed_point():
    f = torch.full((2, 1, 16, 16), 0.3)
    u, info = pock.rof(f, 7.0, return_info=True)
    assert torch.allclose(u, f, atol=1e-6)
    assert torch.all(info.gap <= 1e-4)


def test_matches_scikit_image_chambolle():
    """scikit-image's projection algorithm solves the same problem with weight = 1/lam."""
    f = real_gray(n=3)
    lam = 7.0
    u, info = pock.rof(f, lam, tol=1e-9, return_info=True, max_iter=50000)
    n_pix = f[0].numel()
    for max_iter, eps, max_err in ((200, 2e-4, None), (20000, 1e-12, 1e-3)):
        sk = torch.from_numpy(np.stack([
            denoise_tv_chambolle(f[i, 0].numpy(), weight=1 / lam, eps=eps, max_num_iter=max_iter)
            for i in range(f.shape[0])])).unsqueeze(1)
        # Strong convexity: lam/2 ||sk - u*||^2 <= P(sk) - P(u*) <= P(sk) - P(u) + gap(u).
        dist_sq = (sk - u).square().sum(dim=(1, 2, 3))
        excess = primal_energy(sk, f, lam) - primal_energy(u, f, lam) + info.gap.numpy() * n_pix
        assert np.all(lam / 2 * dist_sq.numpy() <= excess * 1.01 + 1e-9)
        if max_err is not None:      # run to convergence, scikit-image lands on our solution
            assert (sk - u).abs().max() < max_err


def test_gap_certifies_distance_to_solution():
    """lam/2 ||u - u*||^2 <= P(u) - D(p): the reported gap bounds the true error."""
    f = real_gray(size=32, n=4)
    lam = torch.tensor([2.0, 5.0, 7.0, 20.0], dtype=torch.float64)
    u_star = pock.rof(f, lam, tol=1e-10, max_iter=50000)
    for tol in (1e-2, 1e-3, 1e-4):
        u, info = pock.rof(f, lam, tol=tol, return_info=True)
        assert torch.all(info.gap <= tol)
        n_pix = f[0].numel()
        err_sq = (u - u_star).square().sum(dim=(1, 2, 3))
        bound = 2 * info.gap * n_pix / lam
        assert torch.all(err_sq <= bound * (1 + 1e-6) + 1e-12), (err_sq, bound)
        # and the gap is the primal-dual gap of the returned pair, recomputed independently
        gap = reference_gap(u, info.dual, f, lam)
        assert np.allclose(gap, info.gap.numpy(), rtol=1e-6, atol=1e-12)


def gray_sample(name):
    """scikit-image's sample image ``name`` in gray, float64 on the 0-255 scale."""
    img = getattr(skdata, name)()
    img = img.astype(np.float64) if img.ndim == 2 else img[..., :3].astype(np.float64).mean(axis=2)
    return img * 255.0 if img.max() <= 1.0 else img


# On CPU the iterations run in pock_cpu's fused kernel (the default) or as torch operations (the path CUDA
# takes, and CPU without numba): "cpu-torch" tests the latter on any machine.
DEVICES = ["cpu", "cpu-torch"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture
def engine(monkeypatch):
    """``engine(name)``: the torch device of a DEVICES entry, with the CPU kernel off for "cpu-torch"."""
    def select(name):
        monkeypatch.setattr(pock, "USE_CPU_KERNEL", name != "cpu-torch")
        return "cpu" if name == "cpu-torch" else name
    return select
HALF = (torch.float16, torch.bfloat16)


def photo(size, names=("camera", "astronaut", "coffee")):
    """Gray central squares of scikit-image's sample photographs resized to ``size``, in [-1, 1]."""
    from skimage.transform import resize
    out = []
    for name in names:
        img = gray_sample(name)
        h, w = img.shape
        s = min(h, w)
        img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        out.append(resize(img / 127.5 - 1, (size, size), anti_aliasing=True))
    return torch.from_numpy(np.stack(out)).unsqueeze(1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, size, tol", [
    (torch.float64, 32, 1e-6), (torch.float32, 32, 1e-6), (torch.float16, 32, 1e-4), (torch.bfloat16, 32, 1e-4),
    (torch.float32, 256, 3e-7), (torch.float16, 256, 1e-4), (torch.bfloat16, 256, 1e-4),
])
def test_reported_gap_bounds_the_gap_recomputed_in_float64(device, dtype, size, tol, engine):
    """The certificate holds for what is returned, whatever the dtype: half precision is solved in
    float32, and its gap is that of the rounded result (so it may exceed tol)."""
    device = engine(device)
    f = photo(size).to(device=device, dtype=dtype)
    lam = 7.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)        # float32 at 256x256 reaches 3e-7 unwarned
        u, info = pock.rof(f, lam, tol=tol, return_info=True)
    assert u.dtype == dtype and info.dual.dtype == dtype and u.device.type == device
    true_gap = reference_gap(u, info.dual, f, lam)
    assert np.all(true_gap <= info.gap.cpu().numpy()), (true_gap, info.gap)
    assert np.all(true_gap >= 0.999 * info.gap.cpu().numpy())         # a bound, not a loose one
    if dtype not in HALF:
        assert torch.all(info.gap <= tol)
    # the dual returned is feasible in its own dtype: D(p) is a lower bound
    norm = info.dual.double().square().sum(dim=2).sqrt()
    assert norm.max() <= 1


@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_certificate_of_a_512_photo_in_float32(offset):
    """262,144 pixels: sums in float32 would report a gap a few percent below the true one; at an offset
    of 1e3 float32's rounding of the result (6e-5) is what the gap reports."""
    f = photo(512, names=("camera",)).float() + offset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if offset else "error", RuntimeWarning)
        u, info = pock.rof(f, 7.0, tol=2e-6, return_info=True)
    true_gap = reference_gap(u, info.dual, f, 7.0)
    assert true_gap <= info.gap.numpy() <= 1.001 * true_gap
    assert offset or info.gap <= 2e-6


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("offset, scale", [(1e3, 1.0), (-1e3, 1.0), (0.0, 1e3), (1e3, 1e-3)])
def test_rof_gap_holds_for_large_offsets_and_scales(dtype, offset, scale):
    """rof(s f + c, lam / s) = s rof(f, lam) + c: the same problem, but the rounding of what is returned
    grows with |f| (1e3 + 1e-3 f in float64 is the case where sums of uncentred terms were 13% optimistic).
    The reported gap stays an upper bound on the gap of the returned pair, close to it, and when rounding
    alone keeps a float32/float64 result above tol, a warning says so."""
    f = (photo(32) * scale + offset).to(dtype)
    lam, tol = 7.0 / scale, {torch.float64: 1e-10, torch.float32: 1e-6}.get(dtype, 1e-4) * scale
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        u, info = pock.rof(f, lam, tol=tol, max_iter=20000, return_info=True)
    true_gap, gap = reference_gap(u, info.dual, f, lam), info.gap.numpy()
    assert np.all(true_gap <= gap), (true_gap, gap)
    assert np.all(gap <= 1.001 * true_gap + 1e-3 * tol), (true_gap, gap)
    assert not any("did not reach" in str(w.message) for w in caught)
    if dtype not in HALF and (gap > tol).any():
        assert any(f"rounding the solution to {str(dtype)[6:]}" in str(w.message) for w in caught)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_spectral_gaps_bound_the_excess_energy_of_the_states_returned(dtype, offset):
    """Flow step k is ROF with data u_k and solution u_{k+1}, both as returned (in the caller's dtype): its
    reported gap is at least P(u_{k+1}) - P(u*) >= P(u_{k+1}) - P(any u), here a float64 solve to 1e-11.
    (Half precision once reported the gap of the float32 states: 5.24e-5 where this excess was 5.27e-5.)"""
    f = (photo(32, names=("camera", "astronaut")) + offset).to(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)               # rounding at offset 1e3
        dec = pock.spectral(f, N=2)
        assert dec.u.dtype == dtype and torch.equal(dec.u[:, 0], f)
        for k in range(3):
            data, state = dec.u[:, k], dec.u[:, k + 1]
            best = pock.rof(data.double(), 7.0, tol=1e-11, max_iter=100000)
            excess = (primal_energy(state, data, 7.0) - primal_energy(best, data, 7.0)) / f[0].numel()
            assert np.all(excess <= dec.gap[:, k].numpy()), (k, excess, dec.gap[:, k])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rof_shift_and_scale_invariance(device, dtype, engine):
    """rof(f + c) = rof(f) + c, and rof(a f, lam) = a rof(f, a lam) (TV is one-homogeneous)."""
    f = real_gray(size=32, n=3, dtype=dtype).to(engine(device))
    tol = 1e-9 if dtype == torch.float64 else 3e-7
    n_pix = f[0].numel()
    u = pock.rof(f, 7.0, tol=tol, max_iter=20000)
    # every solution is within sqrt(2 gap n / lam) of u*, so two of them within twice that
    close = lambda a, b, lam, scale=1.0: torch.all(
        (a - b).double().square().sum(dim=(1, 2, 3)).sqrt() <= scale * 2 * math.sqrt(2 * tol * n_pix / lam) + 1e-5)
    assert close(pock.rof(f + 0.3, 7.0, tol=tol, max_iter=20000), u + 0.3, 7.0)
    a = 2.5
    ua = pock.rof(a * f, 7.0, tol=tol, max_iter=20000)
    u_lam = pock.rof(f, a * 7.0, tol=tol, max_iter=20000)
    # the gap of (a f, lam) is a times that of (f, a lam) at the scaled pair
    assert close(ua, a * u_lam, 7.0, scale=1 + a)


def test_half_precision_is_solved_in_float32_and_returned_in_its_dtype():
    f = photo(64)
    u32, info32 = pock.rof(f.float(), 7.0, tol=1e-5, return_info=True)
    for dtype in HALF:
        u, info = pock.rof(f.to(dtype), 7.0, tol=1e-5, return_info=True)
        assert u.dtype == dtype
        # the float32 solve of the (exactly representable) half input, rounded once
        assert torch.equal(info.iters, pock.rof(f.to(dtype).float(), 7.0, tol=1e-5, return_info=True)[1].iters)
        dec = pock.spectral(f.to(dtype), N=2)
        assert dec.phi.dtype == dtype and dec.u.dtype == dtype
        aug = pock.SpectralAugment()(f.to(dtype))
        assert aug.dtype == dtype


def test_numbers_of_every_kind_are_accepted():
    f = real_gray(size=16, n=2, dtype=torch.float32)
    u = pock.rof(f, 7.0, tol=1e-5)
    for lam in (np.float32(7), np.int64(7), torch.tensor(7.0), torch.tensor(7)):
        assert torch.allclose(pock.rof(f, lam, tol=np.float64(1e-5)), u)
    dec = pock.spectral(f, N=np.int64(2), lam=torch.tensor(7.0))
    assert torch.allclose(dec.phi, pock.spectral(f, N=2, lam=7.0).phi)
    k = pock.random_gains(500, 2, (np.int64(3), torch.tensor(5)), generator=torch.Generator().manual_seed(0))
    assert set(k.flatten().tolist()) == {3.0, 4.0}                         # integers draw integers
    aug = pock.SpectralAugment(bands=(np.int64(1),), gains=(np.float32(1.5), np.float32(2.5)), lam=np.float32(7))
    assert aug(f).shape == f.shape


def test_tensors_that_require_grad_get_one_clear_error():
    f = real_gray(size=16, n=1, dtype=torch.float32).requires_grad_()
    msg = r"f requires grad, but pock is not differentiable; call it on f.detach\(\) or under torch.no_grad\(\)"
    for call in (lambda: pock.rof(f, 7.0), lambda: pock.spectral(f, N=2), lambda: pock.SpectralAugment()(f)):
        with pytest.raises(ValueError, match=msg):
            call()
    with pytest.raises(ValueError, match="u requires grad"):
        pock.tv(f)
    with torch.no_grad():
        assert pock.rof(f, 7.0).shape == f.shape
    assert pock.rof(f.detach(), 7.0).shape == f.shape


def test_float32_reaches_tolerance_and_keeps_dtype():
    f = real_gray(size=32, n=4, dtype=torch.float32)
    u, info = pock.rof(f, 7.0, return_info=True)
    assert u.dtype == torch.float32 and u.shape == f.shape
    assert torch.all(info.gap <= 1e-4)
    u64 = pock.rof(f.double(), 7.0, tol=1e-9, max_iter=50000)
    err_sq = (u.double() - u64).square().sum(dim=(1, 2, 3))
    assert torch.all(err_sq <= 2 * 1e-4 * f[0].numel() / 7.0)


def test_batched_equals_per_image_loop_with_per_image_lam():
    f = real_gray(n=4)
    lam = torch.tensor([1.0, 4.0, 7.0, 15.0], dtype=torch.float64)
    u, info = pock.rof(f, lam, tol=1e-5, return_info=True)
    for i in range(4):
        ui, infoi = pock.rof(f[i], float(lam[i]), tol=1e-5, return_info=True)
        assert ui.shape == f[i].shape
        assert torch.allclose(u[i], ui, atol=1e-10)
        assert info.iters[i] == infoi.iters[0]
    # images stop on their own: a smoother problem (larger lam) needs fewer iterations
    assert info.iters[3] < info.iters[0]


def test_cpu_chunking_gives_the_unchunked_result(monkeypatch):
    f = real_gray(size=32, n=4)
    lam = torch.tensor([1.0, 4.0, 7.0, 15.0], dtype=torch.float64)
    u0, info0 = pock.rof(f, 7.0, return_info=True)
    whole = pock.rof(f, lam, return_info=True, warm=info0.dual)
    monkeypatch.setattr(pock, "_cpu_chunk_elems", lambda: 2 * 32 * 32 - 1)    # one image per piece
    pieces = pock.rof(f, lam, return_info=True, warm=info0.dual)
    assert torch.allclose(whole[0], pieces[0], atol=1e-10)
    assert torch.equal(whole[1].iters, pieces[1].iters)
    assert torch.allclose(whole[1].dual, pieces[1].dual, atol=1e-10)


def test_warm_start_is_faster_and_reaches_the_same_solution():
    f = real_gray(n=4)
    # Three steps of the TV flow; the fourth is solved cold and warm from the third's dual field.
    # (The second step gains little from a warm start: the first step removed the fine texture
    # that the first dual field still describes.)
    x, info = f, None
    for _ in range(3):
        x, info = pock.rof(x, 7.0, tol=1e-6, return_info=True, warm=None if info is None else info.dual)
    cold, info_cold = pock.rof(x, 7.0, tol=1e-6, return_info=True)
    warm, info_warm = pock.rof(x, 7.0, tol=1e-6, return_info=True, warm=info.dual)
    assert info_warm.iters.sum() < 0.8 * info_cold.iters.sum()
    bound = 2 * 2 * 1e-6 * f[0].numel() / 7.0      # both within the certified distance of u*
    assert torch.all((warm - cold).square().sum(dim=(1, 2, 3)) <= 4 * bound)


def test_algorithm_1_with_gamma_zero_converges_to_the_same_solution():
    f = real_gray(size=32, n=2)
    u2, info2 = pock.rof(f, 7.0, tol=1e-6, return_info=True)
    u1, info1 = pock.rof(f, 7.0, tol=1e-6, gamma=0.0, return_info=True, max_iter=20000)
    assert torch.all(info1.gap <= 1e-6)
    assert torch.all(info2.iters < info1.iters)           # the acceleration pays
    assert (u1 - u2).square().sum(dim=(1, 2, 3)).max() <= 4 * 2 * 1e-6 * f[0].numel() / 7.0


def test_gap_reaches_every_tolerance():
    """What Algorithm 2 guarantees: the gap goes to zero (in float64, to any tolerance asked here), and the
    distance to the solution with it (lam/2 ||u - u*||^2 <= gap). A tighter tolerance follows the same
    iterations further, so it never stops earlier."""
    f = real_gray(size=32, n=2)
    u_star, info_star = pock.rof(f, 7.0, tol=1e-10, max_iter=100000, return_info=True)
    radius = lambda gap: torch.sqrt(2 * gap * f[0].numel() / 7.0)
    iters = []
    for tol in (1e-2, 1e-4, 1e-6, 1e-8):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            u, info = pock.rof(f, 7.0, tol=tol, max_iter=100000, return_info=True)
        assert torch.all(info.gap <= tol)
        dist = (u - u_star).square().sum(dim=(1, 2, 3)).sqrt()
        assert torch.all(dist <= radius(info.gap) + radius(info_star.gap))
        iters.append(info.iters)
    assert all(torch.all(a <= b) for a, b in zip(iters, iters[1:])), iters


def test_disk_loses_height_2_over_lam_r():
    """ROF of h*1_{disk of radius r} is (h - 2/(lam r)) on the disk (Meyer 2001; Strong & Chan)."""
    n, r, h, lam = 96, 16.0, 1.0, 0.5
    yy, xx = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64),
                            indexing="ij")
    dist = ((yy - n / 2 + 0.5) ** 2 + (xx - n / 2 + 0.5) ** 2).sqrt()
    f = (dist <= r).double() * h
    u = pock.rof(f, lam, tol=1e-7, max_iter=20000)
    inside = u[dist <= r - 3].mean()
    expected = h - 2 / (lam * r)
    assert abs(float(inside) - expected) < 0.1 * (h - expected), (float(inside), expected)
    # mass is conserved: the background rises by what the disk lost
    assert torch.allclose(u.mean(), f.mean(), atol=1e-6)


def test_vectorial_rof_of_one_gray_in_three_scales_is_a_gray_rof():
    """Colour TV of (a g, b g, c g) is |(a, b, c)| TV(g): with v = (a, b, c) / |(a, b, c)| the vectorial ROF of
    v s g (s = |(a, b, c)|) is v times the gray ROF of s g, channels in the ratio a : b : c."""
    g = real_gray(n=1)
    abc = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    s = float(abc.norm())
    u = pock.rof(g * abc.view(1, 3, 1, 1), 7.0, vectorial=True, tol=1e-9, max_iter=50000)
    ug = pock.rof(s * g, 7.0, tol=1e-9, max_iter=50000)
    assert (u - ug * (abc / s).view(1, 3, 1, 1)).abs().max() < 1e-3


# ----------------------------------------------------------------------------- spectral

def test_spectral_shapes_and_reconstruction():
    f = real_gray(n=3, dtype=torch.float32)
    dec = pock.spectral(f, N=5, lam=7.0)
    assert dec.u.shape == (3, 7, 1, 48, 48) and dec.phi.shape == (3, 5, 1, 48, 48)
    assert dec.S.shape == (3, 5) and dec.t.shape == (5,) and dec.iters.shape == (3, 6)
    assert dec.gap.shape == (3, 6) and dec.gap.dtype == torch.float64
    assert torch.equal(dec.u[:, 0], f) and torch.allclose(dec.t, torch.arange(1, 6) / 7.0)
    # the bands and the residual give f back; every band is a change of the flow, so it has zero mean
    assert torch.allclose(dec.reconstruct([1.0] * 5), f, atol=1e-5)
    assert dec.phi.mean(dim=(2, 3, 4)).abs().max() < 1e-6


def test_disk_spectrum_is_one_band():
    """A disk is an eigenfunction of TV (up to its pixels): the flow sinks it at a constant rate until it is
    gone at t*, so u_tt is a delta at t* and the spectrum one peak (Gilboa 2014): the bands that straddle t*
    hold nearly all of it, later bands nothing, and the peak band is the disk less its mean."""
    n, r, h = 64, 8.0, 1.0
    yy, xx = torch.meshgrid(torch.arange(n) - n / 2 + 0.5, torch.arange(n) - n / 2 + 0.5, indexing="ij")
    disk = h * ((yy ** 2 + xx ** 2).sqrt() <= r).double()
    t_star = h / (2 / r + 2 * math.pi * r / (n * n - math.pi * r * r))
    lam = 4 / t_star                                               # t* at band 4
    dec = pock.spectral(disk, N=6, lam=lam, tol=1e-8, max_iter=50000)
    share = dec.S[0] / dec.S[0].sum()
    assert share[2:4].sum() > 0.9 and share[4:].max() < 1e-3, share
    peak, shape = dec.phi[0, int(share.argmax()), 0], disk - disk.mean()
    assert (peak * shape).sum() / (peak.norm() * shape.norm()) > 0.98


def test_spectral_flow_states_are_rof_steps_and_tv_decreases():
    f = real_gray(size=32, n=2)
    dec = pock.spectral(f, N=3, lam=7.0, tol=1e-8, max_iter=20000)
    u1 = pock.rof(f, 7.0, tol=1e-8)
    assert (dec.u[:, 1] - u1).abs().max() < 1e-3
    tvs = torch.stack([pock.tv(dec.u[:, k]) for k in range(5)], dim=1)
    assert torch.all(tvs[:, 1:] < tvs[:, :-1])
    # the mean is preserved by the flow, so every band has zero mean
    assert dec.phi.mean(dim=(2, 3, 4)).abs().max() < 1e-8


def test_spectral_batched_equals_per_image_loop_and_streaming():
    f = real_gray(size=32, n=4)
    dec = pock.spectral(f, N=4)
    for i in range(4):
        one = pock.spectral(f[i:i + 1], N=4)
        assert torch.equal(one.iters, dec.iters[i:i + 1])
        assert torch.allclose(one.phi, dec.phi[i:i + 1], atol=1e-12)


def test_spectral_streams_more_images_than_slots(monkeypatch):
    f = real_gray(size=32, n=4)
    dec = pock.spectral(f, N=3)
    monkeypatch.setattr(pock, "_cpu_chunk_elems", lambda: 32 * 32)    # one slot: images wait their turn
    streamed = pock.spectral(f, N=3)
    assert torch.equal(streamed.iters, dec.iters)
    assert torch.allclose(streamed.u, dec.u, atol=1e-12)


def _sample_crops(size=32):
    """16 gray crops of scikit-image's sample photographs in [-1, 1], float32."""
    names = ("camera", "astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
             "coins", "moon", "page", "text", "grass", "gravel", "brick", "cat", "horse")
    crops = []
    for name in names:
        img = gray_sample(name)
        h, w = img.shape
        y, x = (h - size * 4) // 2, (w - size * 4) // 2
        crops.append(img[y:y + size * 4:4, x:x + size * 4:4])   # a 4x-subsampled central patch
    return torch.from_numpy(np.stack(crops) / 127.5 - 1).float().unsqueeze(1)


def band_errors(phi, ref):
    """Relative L2 error of each band over the batch."""
    return (phi.double() - ref).flatten(2).norm(dim=(0, 2)) / ref.flatten(2).norm(dim=(0, 2))


@pytest.mark.parametrize("size", [32, 64, 128])
def test_default_bands_within_2_percent_of_float64_reference_at_every_size(size):
    """The accuracy promised in spectral's docstring, on real photographs (not a timing): the
    default tolerance is relative to each flow step, so it holds as images grow."""
    f = _sample_crops() if size == 32 else photo(size, names=("camera", "astronaut", "coffee")[:6 - size // 32])
    ref = pock.spectral(f.double(), N=5, lam=7.0, tol=1e-9 if size < 128 else 1e-8, max_iter=200000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        dec = pock.spectral(f.float(), N=5, lam=7.0)
    err = band_errors(dec.phi, ref.phi)
    assert err.max() <= 0.02, err
    if size == 32:
        # one tolerance for every step (the dissertation's scheme) at the old default misses it
        x, states = f, [f]
        for _ in range(6):
            x = pock.rof(x, 7.0, tol=1e-4)
            states.append(x)
        phi, _ = pock.flow_bands(torch.stack(states, dim=1))
        assert band_errors(phi, ref.phi).max() > 0.04


def test_disk_tv_flow_loses_height_2_over_r_and_vanishes_at_hr_over_2():
    """TV flow of h 1_{disk radius r}: the disk sinks at rate 2/r (the background rises by the lost
    mass) and the contrast is gone at t* = h / (2/r + 2 pi r/|background|) ~ h r / 2."""
    n, r, h, lam = 64, 8.0, 1.0, 4.0
    yy, xx = torch.meshgrid(torch.arange(n) - n / 2 + 0.5, torch.arange(n) - n / 2 + 0.5, indexing="ij")
    rho = (yy ** 2 + xx ** 2).sqrt()
    disk = h * (rho <= r).double()
    inside, outside = rho <= r - 2, rho >= r + 3
    area_bg = n * n - math.pi * r * r
    t_star = h / (2 / r + 2 * math.pi * r / area_bg)             # 3.8 for h r / 2 = 4
    N = int(1.3 * t_star * lam)
    dec = pock.spectral(disk, N=N, lam=lam, tol=1e-7, max_iter=20000)
    t = torch.arange(N + 2, dtype=torch.float64) / lam
    contrast = dec.u[0, :, 0][:, inside].mean(dim=1) - dec.u[0, :, 0][:, outside].mean(dim=1)
    early = t <= 0.6 * t_star
    rate = -np.polyfit(t[early].numpy(), contrast[early].numpy(), 1)[0]
    expected = 2 / r + 2 * math.pi * r / area_bg
    # the pixelated circle's TV exceeds 2 pi r by a few percent, so the rate does too
    assert 0.97 * expected < rate < 1.15 * expected, (rate, expected)
    assert contrast[t <= 0.8 * t_star].min() > 0.15 * h                  # still there
    assert contrast[t >= 1.15 * t_star].abs().max() < 0.02 * h            # gone


def test_band_filters():
    f = real_gray(n=2)
    dec = pock.spectral(f, N=4)
    low = dec.reconstruct(pock.band_gains(4, [1, 2], gain=0.0, other=1.0))
    assert torch.allclose(low, f - dec.phi[:, 0] - dec.phi[:, 1], atol=1e-12)
    assert pock.tv(low).sum() < pock.tv(f).sum()                 # fine scales removed
    per_image = torch.tensor([[2.0, 1, 1, 1], [1, 1, 1, 3]], dtype=torch.float64)
    out = dec.reconstruct(per_image)
    assert torch.allclose(out[0], f[0] + dec.phi[0, 0]) and torch.allclose(out[1], f[1] + 2 * dec.phi[1, 3])
    with pytest.raises(ValueError, match="band indices must lie in 1..4"):
        pock.band_gains(4, [0, 5])


def test_vectorial_spectral_of_replicated_gray_is_gray_flow_at_lam_sqrt3():
    """Colour TV of (g, g, g) is sqrt(3) TV(g) and the fidelity counts g three times, so every
    vectorial flow step is a gray ROF step with lam * sqrt(3)."""
    f = real_gray(size=32, n=2)
    rgb = f.expand(-1, 3, -1, -1).contiguous()
    col = pock.spectral(rgb, N=3, lam=7.0, tol=1e-9, max_iter=50000, vectorial=True)
    gray = pock.spectral(f, N=3, lam=7.0 * math.sqrt(3), tol=1e-9, max_iter=50000)
    assert col.phi.shape == (2, 3, 3, 32, 32)
    for c in range(3):
        assert (col.phi[:, :, c] - gray.phi[:, :, 0]).abs().max() < 1e-3


def test_vectorial_batched_equals_per_image_loop():
    f = torch.cat([real_rgb(size=24), real_rgb(size=24).flip(-1)])
    dec = pock.spectral(f, N=3, vectorial=True)
    u, info = pock.rof(f, 7.0, vectorial=True, tol=1e-6, return_info=True)
    for i in range(2):
        one = pock.spectral(f[i], N=3, vectorial=True)
        assert torch.equal(one.iters, dec.iters[i:i + 1])
        assert torch.allclose(one.phi, dec.phi[i:i + 1], atol=1e-12)
        ui, infoi = pock.rof(f[i], 7.0, vectorial=True, tol=1e-6, return_info=True)
        assert torch.allclose(ui, u[i], atol=1e-12) and torch.equal(infoi.iters, info.iters[i:i + 1])


# ----------------------------------------------------------------------------- augmentation

def test_spectral_augment_properties():
    """Gains of 1 change nothing; the augmentation keeps the mean (bands have none), commutes with adding a
    constant and scales with the image (lam / a for a f: the flow of a f is a times that of f); the gains
    are those of random_gains with the same generator."""
    f = real_gray(n=4)
    seeded = lambda: torch.Generator().manual_seed(3)
    same = pock.spectral_augment(f, bands=(1, 2), gains=(1, 2), generator=seeded())
    assert torch.allclose(same, f, rtol=0, atol=1e-12)
    w = pock.spectral_augment(f, bands=(1, 2), gains=(3, 5), generator=seeded())
    assert torch.allclose(w.mean(dim=(1, 2, 3)), f.mean(dim=(1, 2, 3)), atol=1e-9)
    assert (w - f).abs().max() > 0.05                                   # the bands were amplified
    shifted = pock.spectral_augment(f + 0.7, bands=(1, 2), gains=(3, 5), generator=seeded())
    scaled = pock.spectral_augment(2.5 * f, bands=(1, 2), gains=(3, 5), lam=7.0 / 2.5, generator=seeded())
    # the iterations on u - f do not see the constant, and the default tolerance is relative: the same
    # steps to rounding (measured: 6e-15)
    assert (shifted - 0.7 - w).abs().max() < 1e-10 and (scaled / 2.5 - w).abs().max() < 1e-10
    k = pock.random_gains(4, 2, (3, 5), generator=seeded(), dtype=torch.float64)
    assert set(k.unique().tolist()) <= {3.0, 4.0}


def test_random_gains_per_batch_and_reproducible():
    k1 = pock.random_gains(64, 2, (3, 5), generator=torch.Generator().manual_seed(0))
    k2 = pock.random_gains(64, 2, (3, 5), generator=torch.Generator().manual_seed(0))
    assert torch.equal(k1, k2) and len(k1.unique(dim=0)) > 1
    kb = pock.random_gains(64, 2, (3, 5), per_image=False, generator=torch.Generator().manual_seed(0))
    assert torch.all(kb == kb[0])
    assert set(k1.flatten().tolist()) == {3.0, 4.0}


def test_random_gains_integer_or_continuous_by_type():
    gen = torch.Generator().manual_seed(0)
    k_int = pock.random_gains(4000, 2, (3, 5), generator=gen)
    assert set(k_int.flatten().tolist()) == {3.0, 4.0}               # the dissertation's draw
    k_mild = pock.random_gains(4000, 2, (1.5, 2.5), generator=gen)
    k_att = pock.random_gains(4000, 2, (0.0, 1.0), generator=gen)
    for k, lo, hi in ((k_mild, 1.5, 2.5), (k_att, 0.0, 1.0)):
        assert k.min() >= lo and k.max() < hi
        assert len(k.unique()) > 3000                                   # continuous, not integers
        # uniform: mean and variance of U[lo, hi) within 5 standard errors
        assert abs(float(k.mean()) - (lo + hi) / 2) < 5 * (hi - lo) / math.sqrt(12 * k.numel())
        assert abs(float(k.var()) - (hi - lo) ** 2 / 12) < 0.05 * (hi - lo) ** 2 / 12


def test_augment_module_and_unbatched_input():
    f = real_gray(n=1, dtype=torch.float32)[0, 0]
    aug = pock.SpectralAugment(bands=(1,), gains=(2, 3))
    w = aug(f)
    dec = pock.spectral(f, N=1)
    assert w.shape == f.shape
    assert torch.allclose(w, f + dec.phi[0, 0, 0], atol=1e-6)
    assert "bands=(1,)" in repr(aug)


# (B, C, H, W), vectorial: rectangular images, one row, one column, batches that 2 and 3 threads do not
# divide, and batches smaller than the thread count (whose rows the threads share).
LOCKSTEP_SHAPES = [((5, 1, 7, 12), False), ((4, 1, 1, 40), False), ((4, 1, 40, 1), False), ((1, 1, 13, 9), False),
                   ((3, 3, 9, 14), True), ((1, 2, 8, 5), True)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape, vectorial", LOCKSTEP_SHAPES)
def test_cpu_kernel_runs_the_iterations_of_the_torch_path(dtype, shape, vectorial, monkeypatch):
    """pock_cpu's kernel and the torch operations take the same steps: after 30 iterations from the same
    start every field agrees to rounding, and so do the gap's terms, with one lam for the batch or one per
    image. The kernel's results are identical on 1, 2 and 3 threads, whether the threads take whole images
    or bands of rows (forced here on images of any size, with the gap's terms summed over blocks of a row or
    two, which the threads share)."""
    monkeypatch.setattr(pock_cpu, "ROW_SPLIT_MIN_PIXELS", 1)
    monkeypatch.setattr(pock_cpu, "ENERGY_BLOCK_PIXELS", 16)
    B, C, H, W = shape
    g = torch.Generator().manual_seed(H * W)
    f = (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1).to(dtype)
    atol = 1e-12 if dtype == torch.float64 else 3e-5
    for lam in (torch.full((B,), 7.0, dtype=torch.float64), torch.linspace(2.0, 12.0, B, dtype=torch.float64)):
        pr = pock._Problems(f, lam, B > 1 and lam[0] != lam[-1], torch.full((B, 1), 1e-4), 2000, 10, None, None, None,
                            vectorial)
        runs = {}
        for threads in (None, 1, 2, 3):
            runs[threads] = s = pock._Slots(pr, B, threads)
            for _ in range(3):
                s.iterate(pr, 10)
        torch_ops, kernel = runs[None], runs[1]
        assert torch.equal(kernel.it, torch_ops.it) and kernel.it[0] == 30
        for name in ("py", "px", "z", "zbar", "w"):
            assert torch.allclose(getattr(kernel, name), getattr(torch_ops, name), rtol=0, atol=atol), name
            if (name, H, W) not in (("py", 1, W), ("px", H, 1)):           # no difference to take there
                assert getattr(kernel, name).abs().max() > 0.01, name       # a state far from the start
            for threads in (2, 3):
                assert torch.equal(getattr(runs[threads], name), getattr(kernel, name)), (name, threads)
        for threads in (2, 3):
            assert torch.equal(runs[threads].energies, kernel.energies), threads
        lam64 = pr.lam64
        tv_, fid, dual = pock._gap_terms(torch.lerp(torch_ops.z, torch_ops.w, pock._PRIMAL_BLEND), torch_ops.w,
                                         torch_ops.f, torch_ops.gyf, torch_ops.gxf, lam64, vectorial, torch_ops.gy,
                                         torch_ops.gx)
        e, rtol = kernel.energies, 1e-5 if dtype == torch.float32 else 1e-10
        assert torch.allclose(e[:, 0], tv_, rtol=rtol) and torch.allclose(0.5 * lam64 * e[:, 1], fid, rtol=rtol)
        assert torch.allclose(-lam64 * e[:, 2], dual, rtol=rtol, atol=1e-9)


@pytest.mark.parametrize("threads, row_split", [(1, None), (2, None), (2, 1)])
def test_one_image_runs_its_rounds_in_one_call_with_the_same_decisions(threads, row_split, monkeypatch):
    """With one image left, the kernel runs rounds of check_every iterations until its own screen passes, in one
    call; the screen decides as _Slots.test does, so the solve takes exactly the iterations and returns exactly
    what it returns with one call per round: rof (absolute tolerance, and stopped by max_iter) and the flow's
    relative tolerances, with its rows cut into bands or whole."""
    if row_split is not None:
        monkeypatch.setattr(pock_cpu, "ROW_SPLIT_MIN_PIXELS", row_split)
    f = photo(64, names=("coffee",)).float()
    calls = []
    iterate = pock_cpu.iterate

    def counted(*args, screen=None, **kw):
        calls.append(screen is not None)
        return iterate(*args, screen=screen, **kw)

    def solve():
        u, info = pock.rof(f, 5.0, tol=1e-6, return_info=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)                     # max_iter is meant to stop it
            u_cap, info_cap = pock.rof(f, 5.0, tol=1e-12, max_iter=45, return_info=True)
        dec = pock.spectral(f, N=4)
        return u, info.gap, info.iters, u_cap, info_cap.gap, info_cap.iters, dec.phi, dec.gap, dec.iters

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        monkeypatch.setattr(pock_cpu, "iterate", counted)
        rounds = solve()
        n_rounds, screened = len(calls), all(calls)
        calls.clear()
        monkeypatch.setattr(pock_cpu, "iterate", lambda *a, screen=None, **kw: counted(*a, **kw))
        one_by_one = solve()
    finally:
        torch.set_num_threads(before)
    assert screened and not any(calls)
    assert n_rounds < len(calls) / 5                # a call per certificate, not per round
    assert one_by_one[5].item() == 50               # max_iter 45, rounds of 10
    for a, b in zip(rounds, one_by_one):
        assert torch.equal(a, b)


def test_threads_share_the_work_as_the_doc_says():
    split = pock_cpu.split
    assert split(32, 32, 32, 2) == (32, 1)                  # small images: whole, as many to each thread
    assert split(1, 32, 32, 2) == (1, 1)                    # one small image: one thread
    assert split(1, 512, 512, 2) == (0, 2)                  # one large image: its rows in two bands
    assert split(3, 512, 512, 2) == (2, 2)                  # two whole, the third in bands
    assert split(5, 256, 256, 1) == (5, 1)


def _inputs():
    """One 256x256 photo (its rows split among the threads) and five 32x32 crops (whole images per thread)."""
    return photo(256, names=("camera",)).float(), _sample_crops()[:5]


def _solve_some(big, small):
    u, info = pock.rof(big, 7.0, tol=1e-6, return_info=True)
    dec = pock.spectral(small, N=2)
    return u, info.gap, info.iters, dec.phi, dec.gap


def test_concurrent_calls_from_threads_match_sequential_and_leave_torch_threads_alone():
    """Two Python threads solving at once get exactly what each gets alone, and neither torch's thread count
    nor that of a thread started afterwards changes (it used to be left at 1)."""
    import threading
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        inputs = _inputs()
        alone = _solve_some(*inputs)
        out, barrier = [None, None], threading.Barrier(2)

        def run(j):
            barrier.wait()
            out[j] = _solve_some(*inputs)
        workers = [threading.Thread(target=run, args=(j,)) for j in range(2)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        for res in out:
            assert all(torch.equal(a, b) for a, b in zip(res, alone))
        assert torch.get_num_threads() == 2
        seen = []
        later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        later.start()
        later.join()
        assert seen == [2]
    finally:
        torch.set_num_threads(before)


def _solve_in_child(conn, inputs):
    conn.send([t.numpy() for t in _solve_some(*inputs)])      # numpy: torch would share memory with the parent
    conn.close()


def test_a_forked_child_makes_its_own_threads():
    """The kernel's worker threads do not survive fork: a child (a DataLoader worker, say) starts its own and
    gets the parent's results. (OpenMP's workers do not survive either; pock's torch operations run on the
    calling thread, so they do not wait for them.)"""
    import multiprocessing
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        inputs = _inputs()
        parent = _solve_some(*inputs)                           # the parent's workers exist now
        ctx = multiprocessing.get_context("fork")
        here, there = ctx.Pipe()
        child = ctx.Process(target=_solve_in_child, args=(there, inputs))
        child.start()
        assert here.poll(120), "the forked child did not answer in 120 s"
        got = here.recv()
        child.join(30)
        assert child.exitcode == 0
        assert all(np.array_equal(a, b.numpy()) for a, b in zip(got, parent))
    finally:
        torch.set_num_threads(before)


def test_without_numba_the_cpu_path_says_why_once():
    """numba is a dependency; without it pock still works (torch operations) and warns once, with the reason
    and the cost, and pock_cpu.iterate names what is missing."""
    import subprocess
    import sys
    code = """
import sys, warnings
sys.modules["numba"] = None                      # import numba now fails, as when it is not installed
import torch, pock, pock_cpu
assert not pock_cpu.AVAILABLE and "numba" in pock_cpu.MISSING
f = torch.rand(2, 1, 16, 16)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    u = pock.rof(f, 7.0)
    pock.spectral(f, N=2)
msgs = [str(w.message) for w in caught]
assert len(msgs) == 1 and "numba could not be imported" in msgs[0] and "slower" in msgs[0], msgs
try:
    pock_cpu.iterate(*[None] * 17, threads=1)
except RuntimeError as e:
    assert "pock_cpu.iterate needs numba" in str(e), e
else:
    raise AssertionError("no error")
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=str(Path(pock.__file__).parent))
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


def certified_distance(tol, f, lam):
    """Two solutions of gap <= tol per pixel lie within this L2 distance of each other (each within
    sqrt(2 gap n / lam) of u*, by the lam-strong convexity of the primal)."""
    return 2 * math.sqrt(2 * tol * f[0].numel() / lam)


def test_cpu_kernel_and_torch_path_solve_to_the_same_certified_solution(monkeypatch):
    """At a gap of 1e-12 per pixel both paths' solutions are within 4e-5 of each other; their default
    bands agree to far better than the 2% both promise."""
    f = real_gray(size=32, n=4)
    out = {}
    for kernel in (True, False):
        monkeypatch.setattr(pock, "USE_CPU_KERNEL", kernel)
        u, info = pock.rof(f, 7.0, tol=1e-12, max_iter=100000, return_info=True)
        assert torch.all(info.gap <= 1e-12)
        out[kernel] = (u, pock.spectral(f.float(), N=3).phi.double())
    distance = (out[True][0] - out[False][0]).square().sum(dim=(1, 2, 3)).sqrt()
    assert torch.all(distance <= certified_distance(1e-12, f, 7.0)) and certified_distance(1e-12, f, 7.0) < 4e-5
    assert band_errors(out[True][1], out[False][1]).max() < 0.005


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_within_the_certified_distance():
    """Both solutions lie within sqrt(2 gap n / lam) of u*; at a gap of 1e-12 per pixel that puts them
    within 4e-5 of each other, whatever order the devices sum in."""
    f = real_gray(size=32, n=4)
    u_cpu, info_cpu = pock.rof(f, 7.0, tol=1e-12, max_iter=100000, return_info=True)
    u_gpu, info_gpu = pock.rof(f.cuda(), 7.0, tol=1e-12, max_iter=100000, return_info=True)
    assert torch.all(info_gpu.gap.cpu() <= 1e-12) and torch.all(info_cpu.gap <= 1e-12)
    distance = (u_gpu.cpu() - u_cpu).square().sum(dim=(1, 2, 3)).sqrt()
    assert torch.all(distance <= certified_distance(1e-12, f, 7.0))
    dec_cpu = pock.spectral(f.float(), N=3)
    dec_gpu = pock.spectral(f.float().cuda(), N=3)
    assert dec_gpu.phi.device.type == "cuda"
    assert band_errors(dec_gpu.phi.cpu(), dec_cpu.phi.double()).max() < 0.02     # both within 2% of exact


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("call, message", [
    (lambda f: pock.rof(f.masked_fill(f > 0.5, float("nan")), 7.0), "NaN or Inf"),
    (lambda f: pock.rof(f.masked_fill(f > 0.5, float("inf")), 7.0), "NaN or Inf"),
    (lambda f: pock.rof(f, 0.0), "lam must be a positive finite number"),
    (lambda f: pock.rof(f, -1.0), "lam must be a positive finite number"),
    (lambda f: pock.rof(f, torch.tensor([1.0, -2.0, 1.0, 1.0])), "lam must be positive"),
    (lambda f: pock.rof(f, torch.ones(3)), r"lam must be a number or a tensor of shape \(4,\)"),
    (lambda f: pock.rof(f, 7.0, tol=0), "tol must be a positive finite number"),
    (lambda f: pock.rof(f, 7.0, max_iter=0), "max_iter must be a positive integer"),
    (lambda f: pock.rof(f, 7.0, gamma=8.0), "gamma must not exceed lam"),
    (lambda f: pock.rof(f, 7.0, gamma=-1.0), "gamma must be a finite number >= 0"),
    (lambda f: pock.rof(f, 7.0, warm=torch.zeros(4, 1, 2, 5, 5)), "warm must be a dual field"),
    (lambda f: pock.rof(f[None], 7.0), "must have shape \\(H, W\\), \\(C, H, W\\) or \\(B, C, H, W\\)"),
    (lambda f: pock.rof(f[0, 0, 0], 7.0), "got 1 dimensions"),
    (lambda f: pock.rof((f * 100).to(torch.uint8), 7.0), "real floating-point tensor .float16, bfloat16"),
    (lambda f: pock.rof(f.to(torch.complex64), 7.0), "real floating-point tensor"),
    (lambda f: pock.rof(f.numpy(), 7.0), "must be a torch.Tensor"),
    (lambda f: pock.spectral(f, N=0), "N must be a positive integer"),
    (lambda f: pock.spectral(f, N=2, lam=0), "lam must be a positive finite number"),
    (lambda f: pock.spectral_augment(f, bands=(0,)), "1-based band indices"),
    (lambda f: pock.spectral_augment(f, gains=(5, 3)), "gains must be a range"),
    (lambda f: pock.spectral_augment(f, gains=(-1.0, 1.0)), "gains must be a range"),
    (lambda f: pock.amplify_bands(f, torch.zeros(4, 2, 1, 8, 8), torch.ones(4, 2)), "phi_sel must have shape"),
    (lambda f: pock.amplify_bands(f, torch.zeros(4, 2, 1, 16, 16), torch.ones(4, 3)), "k must have shape"),
    (lambda f: pock.rof_energy(f[:, :, :8], f, 7.0), r"u and f must have the same shape, got \(4, 1, 8, 16\)"),
    (lambda f: pock.rof_dual_energy(torch.zeros(4, 2, 16, 16), f, 7.0), r"p must have shape \(4, 1, 2, 16, 16\)"),
    (lambda f: pock.spectral_augment(f, bands=(1.5,)), "1-based band indices"),
    (lambda f: pock.rof(f, "7"), "lam must be a positive finite number"),
    (lambda f: pock.rof(f, 7.0, max_iter=10.0), "max_iter must be a positive integer"),
    (lambda f: pock.flow_bands(f), r"u must hold flow states of shape \(B, N\+2, C, H, W\)"),
])
def test_bad_input_is_named(call, message):
    f = torch.rand(4, 1, 16, 16)
    with pytest.raises((ValueError, TypeError), match=message):
        call(f)


def test_unconverged_images_warn():
    f = real_gray(n=2)
    with pytest.warns(RuntimeWarning, match="did not reach gap/pixel"):
        _, info = pock.rof(f, 1.0, tol=1e-9, max_iter=10, return_info=True)
    assert torch.all(info.iters == 10) and torch.all(info.gap > 1e-9)
