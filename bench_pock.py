"""Benchmark of the TV engine on real images, everything measured side by side in one run.

1. ROF (32x32 gray CIFAR-10 test images, lam = 7): images/s of ``pock.rof`` and of scikit-image's
   ``denoise_tv_chambolle`` at its defaults (``weight = 1/lam``, one image at a time), and each
   one's worst-image primal gap ``(P(u) - P(u*)) / pixels`` against a float64 ``u*`` solved to a
   gap of 1e-10. ``pock.rof`` runs at a tolerance ten times below scikit-image's worst gap (the
   certified gap bounds the primal gap, so pock's result is guaranteed 10x closer).
2. Spectral decomposition (N = 5, lam = 7) at 32x32 (CIFAR-10 test), 64x64, 128x128 and 256x256
   (Imagenette val; its archive holds 128x128 images, so 256x256 is upsampled), gray, [-1, 1]:
   ``pock.spectral`` at its defaults (the scale-aware tolerance) and the dissertation's
   scheme (Chambolle-Pock with fixed ``tau = 0.08``, ``sigma = 1/(lam tau)``, which breaks the
   convergence condition, cold-started at every flow step, stopped when the batch's relative
   change falls below 1e-5 or after 5000 iterations, batches of 20). For each: images/s,
   iterations per flow step, pixel-iterations/s, and the bands' accuracy against a float64
   decomposition (``REF_TOL``): relative L2 error per band
   over the batch, and the largest absolute error. On CPU also ``pock.spectral`` with its
   iterations as torch operations (``pock.USE_CPU_KERNEL = False``, the path CUDA takes), so the
   fused kernel's gain is measured in the same run.
3. Every thread count of ``--threads`` in turn, in the same process.
4. Threads: ``pock.rof`` (tolerance 1e-5) on one 512x512 and one 1024x1024 image (Imagenette val,
   upsampled) and on 32 images of 32x32 (CIFAR-10 test), at every thread count of ``--threads``,
   the counts alternating within each repeat so that a change of the machine's load hits them alike:
   each count's speed-up over the first (a large image's rows are shared among the threads, a batch's
   images).

    python bench_pock.py --device cpu --output-dir results/bench   # bench_cpu.json and bench_cpu.png
    python bench_pock.py --report results/bench/bench_cpu.json     # README table from the JSON

``--device cuda`` measures the same on a GPU (no scikit-image there); ``--spectral-batches``
times ``pock.spectral`` at several batch sizes.
"""

import argparse
import math
import os
import re
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from toolkit import cli, data, io_utils
import pock_cpu
import pock
from toolkit.training import resolve_device

ROOT = Path(__file__).resolve().parent
# Gap per pixel of the first step of the float64 reference decompositions, by image size: band errors
# scale like the square root of the gap, and these are several hundred times below the default's gaps
# (so the reference's own band error is under 0.1%). Above 32x32 a tighter one costs many minutes.
REF_TOL = {32: 1e-9, 64: 1e-8, 128: 1e-8, 256: 1e-8}
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"
# Images per size: timed by pock / in the float64 reference / timed by the dissertation's scheme.
COUNTS = {32: (1024, 64, 40), 64: (256, 16, 8), 128: (64, 8, 4), 256: (16, 4, 2)}
QUICK_COUNTS = {32: (16, 4, 4), 64: (4, 2, 2), 128: (2, 1, 1), 256: (2, 1, 1)}
SOURCES = {32: ("cifar10.zip", "test"), 64: ("imagenette.zip", "val"), 128: ("imagenette.zip", "val"),
           256: ("imagenette.zip", "val"), 512: ("imagenette.zip", "val"), 1024: ("imagenette.zip", "val")}
# (images, size) of the thread benchmark, and its tolerance.
THREAD_CASES = ((1, 512), (1, 1024), (32, 32))
QUICK_THREAD_CASES = ((1, 64), (8, 32))
THREAD_TOL = 1e-5


def get_args_parser():
    p = cli.make_parser("bench_pock.py", __doc__.split("\n\n")[0])
    p.add_argument("--data-root", default="../shared/data", metavar="DIR",
                   help="folder holding the archives cifar10.zip (32x32 sizes) and imagenette.zip (larger sizes)")
    cli.renamed_flag(p, "--data-dir", "--data-root", "the folder that holds the archives, as in run_experiments.py")
    p.add_argument("--sizes", type=cli.int_list, default=cli.int_list("32,64,128,256"), metavar="PX,PX",
                   help="image sizes of the spectral benchmark, in pixels")
    p.add_argument("--threads", type=cli.int_list, default=cli.int_list("1,2"), metavar="N,N",
                   help="torch CPU thread counts to measure, in turn (a GPU run uses the current count)")
    p.add_argument("--device", **cli.COMMON_FLAGS["--device"])
    p.add_argument("--spectral-batches", type=cli.int_list, default=[], metavar="N,N",
                   help="also time pock.spectral at these batch sizes of 32x32 images, e.g. 256,4096,16384; "
                        "empty: not measured")
    p.add_argument("--repeats", type=int, default=3, metavar="N",
                   help="timed repeats of the fast methods; the best counts")
    p.add_argument("--quick", action="store_true", help="a few images per size (for tests)")
    cli.add_output_dir(p, None, "DIR/bench_<device>.json and the cost-against-size figure DIR/bench_<device>.png",
                       "<device>: cpu or cuda; None: print only")
    cli.removed_flag(p, "--plot", "the figure goes to --output-dir DIR, as DIR/bench_<device>.png")
    p.add_argument("--report", nargs="+", default=None, metavar="JSON",
                   help="measure nothing: rewrite the README's benchmark block from these JSON files")
    p.add_argument("--seed", type=int, default=0, help="seed of the image draws")
    return p


# ----------------------------------------------------------------------------------- data

def load_gray(data_dir, size: int, n: int, seed: int) -> torch.Tensor:
    """``n`` real images of the size's source, gray, ``size`` x ``size``, in [-1, 1]."""
    archive, split = SOURCES[size]
    path = Path(data_dir) / archive
    imgs = data.load_images("folder", split, data_dir=path, image_size=size, grayscale=True, subset=n,
                            seed=seed, cache_dir=None, progress=False).images
    return data.to_unit_range(imgs)


# ----------------------------------------------------------------------------- baselines

def dissertation_rof(f: torch.Tensor, lam: float, tau: float = 0.08, rel_tol: float = 1e-5,
                     max_iter: int = 5000):
    """The dissertation's solver, re-implemented from its description as the baseline.

    Chambolle-Pock Algorithm 1 (theta = 1) with fixed ``tau = 0.08`` and ``sigma = 1/(lam tau)``,
    which violates ``tau sigma ||grad||^2 <= 1`` for lam = 7; started from ``u = f, p = 0``;
    stopped when ``||u^{n+1} - u^n|| / ||u^n||`` over the whole batch drops below ``rel_tol``.
    Returns the result and the iterations made.
    """
    sigma = 1.0 / (lam * tau)
    u, ubar = f.clone(), f.clone()
    p = torch.zeros(f.shape[:2] + (2,) + f.shape[2:], dtype=f.dtype, device=f.device)
    for it in range(1, max_iter + 1):
        p = p + sigma * pock.grad(ubar)
        p = p / p.square().sum(dim=2, keepdim=True).sqrt().clamp(min=1.0)
        u_new = (u + tau * pock.div(p) + tau * lam * f) / (1 + tau * lam)
        change = (u_new - u).norm() / u.norm().clamp(min=1e-12)
        ubar = 2 * u_new - u
        u = u_new
        if change < rel_tol:
            break
    return u, it


def dissertation_spectral(f: torch.Tensor, N: int, lam: float, batch: int = 20):
    """The dissertation's decomposition: N+1 cold-started flow steps, batches of 20.

    Returns the bands and the iterations of each flow step, per image (B, N+1)."""
    phis, iters = [], []
    for i in range(0, f.shape[0], batch):
        states, its = [f[i:i + batch]], []
        for _ in range(N + 1):
            u, it = dissertation_rof(states[-1], lam)
            states.append(u)
            its.append(it)
        phis.append(pock.flow_bands(torch.stack(states, dim=1))[0])
        iters.append(torch.tensor(its).expand(states[0].shape[0], -1))
    return torch.cat(phis), torch.cat(iters)


# ------------------------------------------------------------------------------ measuring

def timed(fn, repeats: int, device: torch.device):
    """Best wall time of ``repeats`` calls after one warm-up (``repeats = 0``: the one call's time)."""
    best = math.inf
    for i in range(max(repeats, 0) + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
        if repeats == 0 or i > 0:
            best = min(best, elapsed)
    return best, out


def band_errors(phi: torch.Tensor, ref: torch.Tensor) -> dict:
    """Relative L2 error of each band over the batch, and the largest absolute error."""
    diff = phi.double().cpu() - ref
    rel = diff.flatten(2).norm(dim=(0, 2)) / ref.flatten(2).norm(dim=(0, 2))
    return {"band_rel_l2": [round(float(e), 5) for e in rel], "band_max_abs": float(diff.abs().max())}


def speed_row(method, size, threads, n, seconds, iters, extra=None) -> dict:
    """One spectral measurement; ``iters`` (B, N+1) are the iterations of each flow step per image."""
    row = {"method": method, "size": size, "threads": threads, "images": n, "seconds": seconds,
           "images_per_s": n / seconds, "iters_per_step": [round(float(x), 1) for x in iters.float().mean(0)],
           "pixel_iters_per_s": float(iters.sum()) * size * size / seconds}
    return row | (extra or {})


def primal_gap(u, f, lam, u_star) -> torch.Tensor:
    """``(P(u) - P(u*)) / pixels`` per image, in float64."""
    f64 = f.double()
    return (pock.rof_energy(u.double(), f64, lam) - pock.rof_energy(u_star, f64, lam)) / f[0].numel()


def bench_rof(f_cpu: torch.Tensor, threads: int, repeats: int, device: torch.device, lam: float = 7.0) -> dict:
    """pock.rof against scikit-image at its defaults, on the same images."""
    from skimage.restoration import denoise_tv_chambolle
    u_star = pock.rof(f_cpu.double(), lam, tol=1e-10, max_iter=100000)
    imgs = f_cpu[:, 0].numpy()
    t_sk, sk = timed(lambda: np.stack([denoise_tv_chambolle(im, weight=1 / lam) for im in imgs]), 1, device)
    gap_sk = float(primal_gap(torch.from_numpy(sk).unsqueeze(1), f_cpu, lam, u_star).max())
    tol = gap_sk / 10
    f = f_cpu.to(device)
    t_pock, (u, info) = timed(lambda: pock.rof(f, lam, tol=tol, return_info=True), repeats, device)
    gap_pock = float(primal_gap(u.cpu(), f_cpu, lam, u_star).max())
    n = f.shape[0]
    return {"threads": threads, "images": n, "lam": lam,
            "skimage": {"images_per_s": n / t_sk, "worst_primal_gap": gap_sk},
            "pock": {"images_per_s": n / t_pock, "worst_primal_gap": gap_pock, "tol": tol,
                     "mean_iters": float(info.iters.float().mean())},
            "speedup": t_sk / t_pock, "gap_ratio": gap_sk / max(gap_pock, 1e-300)}


def bench_size(size: int, counts, data_dir, threads_list, repeats, device, seed) -> list:
    """pock.spectral and the dissertation's scheme at one image size, for every thread count."""
    n_pock, n_ref, n_diss = counts
    f = load_gray(data_dir, size, n_pock, seed)
    ref_tol = REF_TOL[size]
    ref = pock.spectral(f[:n_ref].double(), N=5, lam=7.0, tol=ref_tol, max_iter=200000).phi
    ref_diss = ref[:n_diss] if n_diss <= n_ref else \
        pock.spectral(f[:n_diss].double(), N=5, lam=7.0, tol=ref_tol, max_iter=200000).phi
    rows = []
    for threads in threads_list:
        if device.type == "cpu":
            torch.set_num_threads(threads)
        x = f.to(device)
        t, dec = timed(lambda: pock.spectral(x, N=5, lam=7.0), repeats, device)
        rows.append(speed_row("pock", size, threads, n_pock, t, dec.iters.cpu(),
                              band_errors(dec.phi[:n_ref], ref) | {"ref_tol": ref_tol, "ref_images": n_ref}))
        if device.type == "cpu" and pock_cpu.AVAILABLE:
            pock.USE_CPU_KERNEL = False
            try:
                t, dec = timed(lambda: pock.spectral(x, N=5, lam=7.0), repeats, device)
            finally:
                pock.USE_CPU_KERNEL = True
            rows.append(speed_row("pock-torch", size, threads, n_pock, t, dec.iters.cpu(),
                                  band_errors(dec.phi[:n_ref], ref) | {"ref_tol": ref_tol, "ref_images": n_ref}))
        # minutes per run at the larger sizes: timed once
        t, (phi, iters) = timed(lambda: dissertation_spectral(x[:n_diss], 5, 7.0), 0, device)
        rows.append(speed_row("dissertation", size, threads, n_diss, t, iters,
                              band_errors(phi, ref_diss) | {"ref_tol": ref_tol, "ref_images": n_diss}))
        print(f"  {size}x{size}, {threads} thread(s): " + ", ".join(f"{r['method']} {r['images_per_s']:.2f} img/s"
                                                                      for r in rows if r["threads"] == threads),
              flush=True)
    return rows


def bench_batches(data_dir, batches, device, seed) -> list:
    """pock.spectral on 32x32 images at several batch sizes (how the engine scales with the batch)."""
    f = load_gray(data_dir, 32, max(batches), seed).to(device)
    rows = []
    for b in batches:
        t, dec = timed(lambda: pock.spectral(f[:b], N=5, lam=7.0), 1, device)
        rows.append(speed_row("pock", 32, torch.get_num_threads(), b, t, dec.iters.cpu(), {"batch": b}))
        print(f"  batch {b}: {rows[-1]['images_per_s']:.0f} img/s", flush=True)
    return rows


def bench_threads(data_dir, cases, threads_list, repeats, seed) -> list:
    """``pock.rof`` on each case's images at every thread count, the counts alternating within each repeat
    (at least 10: they are short, and a shared machine's speed drifts by 1.5x from one second to the next); the
    best time of each count and its speed-up over the first count."""
    before, rows = torch.get_num_threads(), []
    for n, size in cases:
        f = load_gray(data_dir, size, n, seed)
        best = dict.fromkeys(threads_list, math.inf)
        for r in range(max(repeats, 10) + 1):                  # the first round warms up
            for threads in threads_list:
                torch.set_num_threads(threads)
                t0 = time.perf_counter()
                _, info = pock.rof(f, 7.0, tol=THREAD_TOL, return_info=True)
                if r:
                    best[threads] = min(best[threads], time.perf_counter() - t0)
        for threads in threads_list:
            rows.append({"images": n, "size": size, "threads": threads, "tol": THREAD_TOL, "seconds": best[threads],
                         "images_per_s": n / best[threads], "speedup": best[threads_list[0]] / best[threads],
                         "mean_iters": float(info.iters.float().mean())})
        print(f"  rof, {n} image(s) of {size}x{size}: " + ", ".join(
            f"{r['threads']} thread(s) {1e3 * r['seconds']:.0f} ms ({r['speedup']:.2f}x)" for r in rows[-len(threads_list):]),
            flush=True)
    torch.set_num_threads(before)
    return rows


def measure(args) -> dict:
    device = torch.device(args.device)
    threads_list = list(args.threads) if device.type == "cpu" else [torch.get_num_threads()]
    sizes = list(args.sizes)
    counts = QUICK_COUNTS if args.quick else COUNTS
    unknown = [s for s in sizes if s not in counts]
    if unknown:
        raise cli.UserError(f"--sizes: no image counts for {unknown}; choose from {sorted(counts)}")
    torch.manual_seed(args.seed)
    # Other work on the machine slows every timing: the load average says how quiet it was.
    report = {"ref_tol": {str(s): REF_TOL[s] for s in sizes}, "machine": io_utils.machine(args.device) | {"load_average_at_start": round(os.getloadavg()[0], 2)},
              "device": str(device), "lam": 7.0, "N": 5, "spectral_tol": {"relative": pock.SPECTRAL_TOL},
              "data": {str(s): "{} ({} split), gray {}x{}, [-1, 1]".format(*SOURCES[s], s, s) for s in sizes},
              "counts": {str(s): dict(zip(("pock", "reference", "dissertation"), counts[s])) for s in sizes},
              "rof": [], "spectral": [], "batches": [], "threads": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)    # the baselines' own convergence is reported
        if device.type == "cpu":
            f = load_gray(args.data_root, 32, 16 if args.quick else 256, args.seed)
            for threads in threads_list:
                torch.set_num_threads(threads)
                report["rof"].append(bench_rof(f, threads, args.repeats, device))
                r = report["rof"][-1]
                print(f"ROF, {threads} thread(s): pock {r['speedup']:.2f}x scikit-image's speed at a "
                      f"{r['gap_ratio']:.1f}x smaller worst-image gap", flush=True)
        for size in sizes:
            report["spectral"] += bench_size(size, counts[size], args.data_root, threads_list, args.repeats,
                                             device, args.seed)
        if args.spectral_batches:
            report["batches"] = bench_batches(args.data_root, args.spectral_batches, device, args.seed)
        if device.type == "cpu":
            report["threads"] = bench_threads(args.data_root, QUICK_THREAD_CASES if args.quick else THREAD_CASES,
                                              threads_list, args.repeats, args.seed)
    return report


# -------------------------------------------------------------------------------- reporting

def _ref_tols(report: dict) -> str:
    return ", ".join(f"{t:g} at {s}x{s}" for s, t in report["ref_tol"].items())


def _pct(errors) -> str:
    return f"{100 * max(errors):.1f}%"


def markdown(report: dict) -> str:
    """The README's benchmark block: one table per device, rows per size and thread count."""
    m = report["machine"]
    where = m["gpu"] if report["device"].startswith("cuda") else f"{m['cpu']}, {m['cores']} cores"
    lines = [f"Measured by `python bench_pock.py` on {where}, torch {m['torch']}; N = 5 bands, lam = 7, "
             f"gray images in [-1, 1], `pock.spectral` at its defaults (scale-aware tolerance). Band error: the largest "
             f"relative L2 error of the 5 bands against a float64 decomposition solved to a gap per pixel of "
             f"{_ref_tols(report)}.", ""]
    for r in report["rof"]:
        lines.append(f"- ROF, {r['images']} CIFAR-10 test images, {r['threads']} thread(s): `pock.rof` {r['pock']['images_per_s']:,.0f} "
                     f"images/s, **{r['speedup']:.1f}x** scikit-image's `denoise_tv_chambolle` at its defaults "
                     f"({r['skimage']['images_per_s']:,.0f} images/s), with a **{r['gap_ratio']:.0f}x** smaller "
                     f"worst-image primal gap ({r['pock']['worst_primal_gap']:.1e} vs {r['skimage']['worst_primal_gap']:.1e}).")
    rows = report["spectral"]
    torch_path = any(r["method"] == "pock-torch" for r in rows)
    lines += ["", "| image size | threads | pock.spectral images/s | iterations per flow step | pixel-iterations/s "
              "| band error | dissertation's scheme images/s | its band error | speed-up |"
              + (" as torch operations: images/s | the kernel's gain |" if torch_path else ""),
              "|---|---:|---:|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if torch_path else "")]

    def same(method, mine):
        return next(r for r in rows if r["method"] == method and r["size"] == mine["size"]
                    and r["threads"] == mine["threads"])
    for mine in (r for r in rows if r["method"] == "pock"):
        diss = same("dissertation", mine)
        steps = " ".join(f"{x:.0f}" for x in mine["iters_per_step"])
        line = (f"| {mine['size']}x{mine['size']} | {mine['threads']} | {mine['images_per_s']:,.1f} | {steps} | "
                f"{mine['pixel_iters_per_s'] / 1e6:,.0f} M | {_pct(mine['band_rel_l2'])} | "
                f"{diss['images_per_s']:,.2f} | {_pct(diss['band_rel_l2'])} | "
                f"{mine['images_per_s'] / diss['images_per_s']:,.1f}x |")
        if torch_path:
            ops = same("pock-torch", mine)
            line += f" {ops['images_per_s']:,.1f} | {mine['images_per_s'] / ops['images_per_s']:.2f}x |"
        lines.append(line)
    for b in report.get("batches", []):
        lines.append(f"- batch {b['batch']:,} of 32x32 images: {b['images_per_s']:,.0f} images/s")
    return "\n".join(lines + _thread_lines(report.get("threads", [])))


def _thread_lines(rows) -> list:
    """The thread benchmark: each case's speed-up over the first thread count, measured side by side."""
    first = {(r["images"], r["size"]): r for r in reversed(rows)}
    lines = [f"- `pock.rof` (tol {r['tol']:g}), {r['images']} image(s) of {r['size']}x{r['size']}, {r['threads']} "
             f"threads: **{r['speedup']:.2f}x** the speed on {first[r['images'], r['size']]['threads']} "
             f"({1e3 * r['seconds']:,.0f} ms vs {1e3 * first[r['images'], r['size']]['seconds']:,.0f} ms)"
             for r in rows if r is not first[r["images"], r["size"]]]
    return ["", "Threads, measured side by side in the same run:", ""] + lines if lines else []


def update_readme(reports: list, readme: Path = ROOT / "README.md") -> None:
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise cli.UserError(f"{readme.name} has no {README_START} ... {README_END} block to rewrite")
    block = "\n\n".join(markdown(r) for r in reports)
    new = re.sub(re.escape(README_START) + ".*?" + re.escape(README_END),
                 lambda _: f"{README_START}\n{block}\n{README_END}", text, flags=re.S)
    io_utils.atomic_write_text(readme, new)


def plot(report: dict, path) -> None:
    """Microseconds per image against image size, for both methods and every thread count."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    names = {"pock": "pock.spectral", "pock-torch": "pock.spectral, torch operations",
             "dissertation": "dissertation scheme"}
    for method, marker in (("pock", "o"), ("pock-torch", "^"), ("dissertation", "s")):
        for threads in sorted({r["threads"] for r in report["spectral"]}):
            rows = sorted((r for r in report["spectral"] if r["method"] == method and r["threads"] == threads),
                          key=lambda r: r["size"])
            if rows:
                ax.loglog([r["size"] ** 2 for r in rows], [1e6 / r["images_per_s"] for r in rows], marker + "-",
                          label=f"{names[method]}, {threads} thread(s)")
    sizes = sorted({r["size"] for r in report["spectral"]})
    ax.set_xticks([s * s for s in sizes], [f"{s}x{s}" for s in sizes])
    ax.set_xlabel("image size (pixels)")
    ax.set_ylabel("microseconds per image (N = 5)")
    ax.set_title(f"spectral decomposition cost, {report['device']}")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    io_utils.save_figure(fig, path)


def check_archives(data_root, sizes, spectral_batches=()) -> None:
    """Every archive the sizes need is in ``data_root``; else one line naming the missing file and the fix."""
    needed = {SOURCES[s][0] for s in sizes if s in SOURCES} | ({SOURCES[32][0]} if spectral_batches else set())
    for archive in sorted(needed):
        if not (Path(data_root) / archive).is_file():
            raise cli.UserError(f"{Path(data_root) / archive}: no such archive; pass --data-root the folder that "
                                f"holds {' and '.join(sorted(needed))} (e.g. ../shared/data)")


def main(args):
    if args.report:
        reports = []
        for path in args.report:
            rep = io_utils.read_json(path)
            if rep is None:
                raise cli.UserError(f"{path}: no such benchmark JSON; run bench_pock.py --output-dir "
                                    f"{Path(path).parent} first")
            reports.append(rep)
        update_readme(reports)
        print(f"README.md benchmark block rewritten from {', '.join(args.report)}")
        return reports
    if not args.threads or min(args.threads) < 1:
        raise cli.UserError(f"--threads needs positive thread counts, got {args.threads}")
    args.device = str(resolve_device(args.device))
    # On a CPU the ROF comparison reads the 32x32 archive whatever the sizes, and the thread benchmark its own.
    cases = QUICK_THREAD_CASES if args.quick else THREAD_CASES
    check_archives(args.data_root, set(args.sizes) | ({32} | {s for _, s in cases} if args.device == "cpu" else set()),
                   args.spectral_batches)
    report = measure(args)
    print("\n" + markdown(report))
    if args.output_dir:
        stem = Path(args.output_dir) / f"bench_{torch.device(args.device).type}"
        io_utils.write_json(stem.with_suffix(".json"), report)
        plot(report, stem.with_suffix(".png"))
        print(f"wrote {stem}.json and {stem}.png")
    return report


if __name__ == "__main__":
    cli.run(main, get_args_parser())
