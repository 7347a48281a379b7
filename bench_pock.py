"""Benchmark of the TV engine on real images, measured side by side in one run.

1. ROF (lam = 7): images/s and worst-image primal-energy gap per pixel, ``(P(u) - P(u*)) / n``,
   against a float64 reference ``u*`` solved to a gap of 1e-9 per pixel, for ``pock.rof`` and
   for scikit-image's ``denoise_tv_chambolle`` (``weight = 1/lam``, looped per image).
2. Spectral decomposition (N = 5, lam = 7): images/s of ``pock.spectral`` and of the
   dissertation's scheme as a baseline: Chambolle-Pock with fixed steps ``tau = 0.08``,
   ``sigma = 1/(lam tau)`` (so ``tau sigma ||grad||^2 = 8/7 > 1``), cold start at every flow step,
   stopped when the whole batch's relative change falls below 1e-5 (at most 5000 iterations),
   batch 20.
3. The same on CUDA when a GPU is present.

    python bench_pock.py --data-dir ../shared/data/cifar10.zip --n-images 256

Prints a table and, with ``--output-dir``, writes ``bench.json`` there.
"""

import argparse
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import pock
from training import write_json


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", default="../shared/data/cifar10.zip",
                   help="ImageFolder folder or .zip of real images (its 'test' split is used when present)")
    p.add_argument("--n-images", type=int, default=256, help="images for the ROF and pock.spectral runs")
    p.add_argument("--n-baseline", type=int, default=40,
                   help="images for the slow baselines (scikit-image, dissertation scheme)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--baseline-max-iter", type=int, default=5000,
                   help="iteration cap of the dissertation scheme per flow step (its own setting: 5000)")
    p.add_argument("--lam", type=float, default=7.0)
    p.add_argument("--tol", type=float, default=1e-4, help="pock's duality gap per pixel")
    p.add_argument("--batch-size", type=int, default=256, help="batch of pock.spectral")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats; the best is reported")
    p.add_argument("--device", default="cpu", help="cpu, cuda, or 'all' for cpu and cuda when present")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's); 1 is steadier on a shared machine")
    p.add_argument("--output-dir", default=None, help="write bench.json here")
    p.add_argument("--seed", type=int, default=0)
    return p


def load_gray(data_dir: str, n: int, size: int, seed: int) -> torch.Tensor:
    """``n`` real images, gray, ``size`` x ``size``, in [-1, 1], shape (n, 1, size, size)."""
    import data
    split = "test"
    try:
        imgs = data.load_images("folder", split, data_dir=data_dir, image_size=size, grayscale=True,
                                subset=n, seed=seed).images
    except data.DataError:
        imgs = data.load_images("folder", "train", data_dir=data_dir, image_size=size, grayscale=True,
                                subset=n, seed=seed).images
    return data.to_unit_range(imgs)


def timed(fn, repeats: int, device: torch.device):
    """Best wall time of ``repeats`` calls (after one warm-up) and the last result."""
    out = fn()
    best = math.inf
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, out


def dissertation_rof(f: torch.Tensor, lam: float, tau: float = 0.08, rel_tol: float = 1e-5,
                     max_iter: int = 5000) -> torch.Tensor:
    """The dissertation's solver, re-implemented from its description as the baseline.

    Chambolle-Pock Algorithm 1 (theta = 1) with fixed ``tau = 0.08`` and ``sigma = 1/(lam tau)``,
    which violates ``tau sigma ||grad||^2 <= 1`` for lam = 7; started from ``u = f, p = 0``;
    stopped when ``||u^{n+1} - u^n|| / ||u^n||`` over the whole batch drops below ``rel_tol``.
    """
    sigma = 1.0 / (lam * tau)
    u = f.clone()
    ubar = f.clone()
    p = torch.zeros(f.shape[:2] + (2,) + f.shape[2:], dtype=f.dtype, device=f.device)
    for _ in range(max_iter):
        p = p + sigma * pock.grad(ubar)
        p = p / p.square().sum(dim=2, keepdim=True).sqrt().clamp(min=1.0)
        u_new = (u + tau * pock.div(p) + tau * lam * f) / (1 + tau * lam)
        change = (u_new - u).norm() / u.norm().clamp(min=1e-12)
        ubar = 2 * u_new - u
        u = u_new
        if change < rel_tol:
            break
    return u


def dissertation_spectral(f: torch.Tensor, N: int, lam: float, batch: int = 20, max_iter: int = 5000):
    """The dissertation's decomposition: N+1 cold-started flow steps, batches of 20."""
    phis = []
    for i in range(0, f.shape[0], batch):
        states = [f[i:i + batch]]
        for _ in range(N + 1):
            states.append(dissertation_rof(states[-1], lam, max_iter=max_iter))
        u = torch.stack(states, dim=1)
        n = torch.arange(1, N + 1, dtype=f.dtype, device=f.device).view(1, N, 1, 1, 1)
        phis.append(n * (u[:, :N] - 2 * u[:, 1:N + 1] + u[:, 2:N + 2]))
    return torch.cat(phis)


def primal_gap_per_pixel(u: torch.Tensor, f: torch.Tensor, lam: float, u_star: torch.Tensor) -> torch.Tensor:
    """``(P(u) - P(u*)) / n`` per image, evaluated in float64."""
    f64 = f.double()
    return (pock.rof_energy(u.double(), f64, lam) - pock.rof_energy(u_star, f64, lam)) / f[0].numel()


def bench_device(f_cpu: torch.Tensor, args, device: torch.device) -> dict:
    from skimage.restoration import denoise_tv_chambolle

    lam, res = args.lam, {"device": str(device)}
    f = f_cpu.to(device)
    nb = min(args.n_baseline, f.shape[0])
    u_star = pock.rof(f_cpu.double(), lam, tol=1e-9, max_iter=100000)

    # --- ROF: pock at its default tolerance, scikit-image at its defaults, and pock at the
    # tolerance that certifies a worst-image gap 10x below scikit-image's.
    def run_rof(tol):
        return timed(lambda: pock.rof(f, lam, tol=tol, return_info=True), args.repeats, device)

    def rof_row(t, u, info, n):
        gap = primal_gap_per_pixel(u.cpu(), f_cpu[:n], lam, u_star[:n])
        return {"images_per_s": n / t, "worst_primal_gap": float(gap.max()),
                "mean_iters": float(info.iters.float().mean()), "worst_certified_gap": float(info.gap.max())}

    t_pock, (u, info) = run_rof(args.tol)
    res["rof_pock"] = rof_row(t_pock, u, info, f.shape[0]) | {"tol": args.tol}
    if device.type == "cpu":
        imgs = f_cpu[:nb, 0].numpy()
        t_sk, sk = timed(lambda: np.stack([denoise_tv_chambolle(im, weight=1 / lam) for im in imgs]),
                         1, device)
        gap_sk = primal_gap_per_pixel(torch.from_numpy(sk).unsqueeze(1), f_cpu[:nb], lam, u_star[:nb])
        res["rof_skimage"] = {"images_per_s": nb / t_sk, "worst_primal_gap": float(gap_sk.max())}
        # The certified gap bounds the primal gap, so this tolerance guarantees a 10x smaller one.
        tol_matched = float(gap_sk.max()) / 10
        t_m, (u_m, info_m) = run_rof(tol_matched)
        res["rof_pock_matched"] = rof_row(t_m, u_m, info_m, f.shape[0]) | {"tol": tol_matched}
        sk_row = res["rof_skimage"]
        for key in ("rof_pock", "rof_pock_matched"):
            res[key]["speedup_vs_skimage"] = res[key]["images_per_s"] / sk_row["images_per_s"]
            res[key]["gap_ratio_skimage_over_pock"] = sk_row["worst_primal_gap"] / max(res[key]["worst_primal_gap"], 1e-300)

    # --- spectral decomposition N = 5
    def run_spectral():
        out = None
        for i in range(0, f.shape[0], args.batch_size):
            out = pock.spectral(f[i:i + args.batch_size], N=5, lam=lam, tol=args.tol)
        return out
    t_spec, dec = timed(run_spectral, args.repeats, device)
    res["spectral_pock"] = {"images_per_s": f.shape[0] / t_spec, "batch": args.batch_size,
                            "mean_iters_per_step": dec.iters.float().mean(0).tolist()}
    t_diss, phi_diss = timed(lambda: dissertation_spectral(f[:nb], 5, lam, max_iter=args.baseline_max_iter),
                             1, device)
    ref = pock.spectral(f[:nb].double(), N=5, lam=lam, tol=1e-8, max_iter=100000)
    res["spectral_dissertation"] = {
        "images_per_s": nb / t_diss, "batch": 20,
        "max_band_error_vs_reference": float((phi_diss.double() - ref.phi).abs().max())}
    mine = pock.spectral(f[:nb], N=5, lam=lam, tol=args.tol)
    res["spectral_pock"]["max_band_error_vs_reference"] = float((mine.phi.double() - ref.phi).abs().max())
    res["spectral_speedup_vs_dissertation"] = res["spectral_pock"]["images_per_s"] / res["spectral_dissertation"]["images_per_s"]
    return res


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    f = load_gray(args.data_dir, args.n_images, args.image_size, args.seed)
    devices = [torch.device("cpu")] if args.device in ("cpu", "all") else [torch.device(args.device)]
    if args.device == "all" and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    report = {"data": f"{args.data_dir}: {f.shape[0]} images, gray {args.image_size}x{args.image_size}, [-1, 1]",
              "lam": args.lam, "tol": args.tol, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "results": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # the baselines' own convergence is reported
        for dev in devices:
            report["results"].append(bench_device(f, args, dev))

    print(f"data: {report['data']}; lam={args.lam}, tol={args.tol}, torch {torch.__version__}, "
          f"{report['threads']} threads, {report['machine']}")
    for r in report["results"]:
        print(f"\n[{r['device']}]")
        print(f"{'method':34s} {'images/s':>10s} {'worst primal gap/px':>20s}")
        rows = [("pock.rof tol=%g" % r["rof_pock"]["tol"], r["rof_pock"])]
        if "rof_skimage" in r:
            rows += [("pock.rof tol=%.2g (10x below skimage)" % r["rof_pock_matched"]["tol"], r["rof_pock_matched"]),
                     ("skimage denoise_tv_chambolle", r["rof_skimage"])]
        for name, row in rows:
            print(f"{name:34s} {row['images_per_s']:10.1f} {row['worst_primal_gap']:20.2e}")
        for name, row in rows[:2 if "rof_skimage" in r else 0]:
            print(f"ROF, {name}: {row['speedup_vs_skimage']:.1f}x scikit-image's speed, "
                  f"{row['gap_ratio_skimage_over_pock']:.1f}x smaller worst-image primal gap")
        print(f"\n{'spectral N=5':34s} {'images/s':>10s} {'max |phi - phi_ref|':>20s}")
        print(f"{'pock.spectral':34s} {r['spectral_pock']['images_per_s']:10.1f} "
              f"{r['spectral_pock']['max_band_error_vs_reference']:20.2e}")
        print(f"{'dissertation scheme (batch 20)':34s} {r['spectral_dissertation']['images_per_s']:10.1f} "
              f"{r['spectral_dissertation']['max_band_error_vs_reference']:20.2e}")
        print(f"spectral: pock is {r['spectral_speedup_vs_dissertation']:.1f}x the dissertation's scheme")
    if args.output_dir:
        write_json(report, Path(args.output_dir) / "bench.json")
    return report


if __name__ == "__main__":
    main(get_args_parser().parse_args())
