"""Evaluate GANs trained by gan.py against held-out real faces.

For each ``--run`` folder the trained generator draws ``--n-fake`` samples (from a fixed seed, batch norm on batch statistics as in training),
which are compared with ``--n-real`` real faces the GANs never saw: the **last** ``--n-real`` images of the
split the runs trained on (gan.py trains on the first images and keeps its last ``--holdout`` out, so
``--n-real`` may not exceed any run's ``--holdout``). Metrics:

* SWD: sliced Wasserstein distance on 7x7 Laplacian-pyramid patches (Karras et al. 2018), per pyramid level
  and averaged, x1e3. Always computed; needs no downloaded network.
* Spectrum: the mean TV spectrum S(t_n) = ||phi_n||_1 per pixel of each band (pock.spectral, ``--spectrum-bands``
  bands at ``--lam``), and the relative L1 distance between the generated and the real mean spectra: does each
  scale carry as much energy as in real faces?
* FID and KID (torchmetrics), only with ``--inception-weights`` (the FID Inception file, e.g.
  pt_inception-2015-12-05-6726825d.pth) and the torch-fidelity package; otherwise reported as skipped, with why.

A "real (train)" row compares the first ``--n-real`` *training* faces with the held-out ones: the value two
independent real samples give, i.e. the floor under which no generator can be told apart at this sample size.

For ``components`` runs the generated image is the u_0 generator's sample: the dissertation's recombination
phi_sum(1) + f_r(1) telescopes algebraically to u_0, so recombining the states adds nothing. ``--per-state``
also reports the SWD of each state's generator against the held-out faces' TV-flow state u_n.

Outputs in ``--output-dir``: ``metrics.json``, ``samples_spectra.png`` (real and generated samples side by side,
and their spectra); a Markdown table on the terminal.

Example::

    python gan_test.py --run runs/gan_plain --run runs/gan_components --run runs/gan_joint --n-real 1000
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import data
import gan
import gan_metrics
import pock
import training


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="SWD, TV-spectrum and (optionally) FID/KID of gan.py runs", add_help=add_help)
    p.add_argument("--run", action="append", required=True, help="a gan.py output folder (repeat for several)")
    p.add_argument("--n-real", type=int, default=1000, help="held-out real faces (the last ones of the split)")
    p.add_argument("--n-fake", type=int, default=None, help="generated samples per run (default: --n-real)")
    p.add_argument("--data-dir", default=None, help="override the runs' --data-dir (e.g. when run from elsewhere)")
    p.add_argument("--cache-dir", default=None, help="override the runs' --cache-dir (decoded images)")
    p.add_argument("--spectrum-bands", type=int, default=5, help="bands N of the TV spectrum")
    p.add_argument("--lam", type=float, default=7.0, help="1/dt of the TV flow for the spectrum")
    p.add_argument("--tol", type=float, default=1e-4, help="duality gap per pixel of each ROF solve")
    p.add_argument("--inception-weights", default=None,
                   help=f"local FID Inception weights ({gan_metrics.FID_WEIGHTS_NAME}) to compute FID and KID")
    p.add_argument("--per-state", action="store_true", help="components runs: SWD of every state's generator too")
    p.add_argument("--n-show", type=int, default=36, help="samples per set in the figure")
    p.add_argument("--device", default=None, help="cpu, cuda (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latent samples and of the SWD projections")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--output-dir", default="runs/gan_test")
    p.add_argument("--no-progress", action="store_true")
    return p


@torch.no_grad()
def draw(G, n: int, nz: int, device, seed: int, batch_size: int) -> tuple:
    """n samples (images clamped to [-1, 1]) and, for a band generator, its components and the largest
    |image - sum of components| (0 up to float rounding: the joint image *is* that sum)."""
    gen = torch.Generator().manual_seed(seed)
    imgs, comps, err = [], [], 0.0
    # Near-equal batches: batch norm runs on batch statistics, which a tiny last batch would distort.
    n_batches = -(-n // batch_size)
    for size in [n // n_batches + (i < n % n_batches) for i in range(n_batches)]:
        z = torch.randn(size, nz, 1, 1, generator=gen).to(device)
        img, cmp = gan.generate(G, z)
        if cmp is not None:
            err = max(err, float((img - cmp.sum(1)).abs().max()))
            comps.append(cmp.float().cpu())
        imgs.append(img.float().clamp(-1, 1).cpu())
    return torch.cat(imgs), (torch.cat(comps) if comps else None), err


def load_generator(ckpt: dict, stage: str, device, path) -> torch.nn.Module:
    m = ckpt["model_args"]
    if stage not in ckpt["generators"]:
        raise gan.GanError(f"{path}: the {stage} generator was never trained (stages done: "
                           f"{', '.join(ckpt['generators']) or 'none'}); train the run further")
    G = gan.build_generator(m)
    G.load_state_dict(ckpt["generators"][stage])
    return G.to(device)


def main_stage(m: dict) -> str:
    # The image of a components run is the u_0 generator's sample (the recombination telescopes to u_0).
    return "u0" if m["mode"] == "components" else "image"


def plot_figure(sets: dict, spectra: dict, t: torch.Tensor, path: Path, n_show: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torchvision.utils as vutils
    names = list(sets)
    cols = min(6, len(names))
    rows = -(-len(names) // cols)
    fig = plt.figure(figsize=(3.1 * cols, 3.3 * rows + 3.2))
    gs = fig.add_gridspec(rows + 1, cols, height_ratios=[1.1] * rows + [1])
    nrow = max(1, int(round(n_show ** 0.5)))
    for i, name in enumerate(names):
        ax = fig.add_subplot(gs[i // cols, i % cols])
        grid = vutils.make_grid(sets[name][:n_show], nrow=nrow, normalize=True, value_range=(-1, 1), padding=1)
        ax.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    ax = fig.add_subplot(gs[rows, :])
    colors = plt.cm.tab20(range(20)) if len(spectra) > 10 else plt.cm.tab10(range(10))
    for i, (name, s) in enumerate(spectra.items()):
        ax.plot(t.numpy(), s.mean(0).numpy(), "o-", label=name, lw=2.5 if name.startswith("real") else 1.5,
                color=colors[i % len(colors)])
    ax.set(xlabel="t = n / lam", ylabel="mean S(t) per pixel", yscale="log", title="TV spectrum")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=max(1, len(names) // 6))
    fig.tight_layout()
    data.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def _fmt(v, digits=1) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def group_summary(results: dict) -> dict:
    """Mean and sample standard deviation over the runs of each group (mode, stage order) that has several
    runs (e.g. seeds): ``{group: {"runs": n, metric: [mean, std]}}``."""
    groups: dict = {}
    for r in results.values():
        if "group" in r:
            groups.setdefault(r["group"], []).append(r)
    out = {}
    for g, rs in groups.items():
        if len(rs) < 2:
            continue
        vals = {"swd_avg_x1e3": [r["swd_x1e3"]["avg"] for r in rs],
                "spectrum_distance": [r["spectrum_distance"] for r in rs]}
        if all("fid" in r for r in rs):
            vals["fid"] = [r["fid"] for r in rs]
        out[g] = {"runs": len(rs), **{k: [float(torch.tensor(v).mean()), float(torch.tensor(v).std())]
                                       for k, v in vals.items()}}
    return out


def summary_table(summary: dict) -> str:
    lines = ["| group | runs | SWD avg | spectrum dist | FID |", "|---|---:|---:|---:|---:|"]
    for g, v in summary.items():
        fid = f"{v['fid'][0]:.2f} ± {v['fid'][1]:.2f}" if "fid" in v else "–"
        lines.append(f"| {g} | {v['runs']} | {v['swd_avg_x1e3'][0]:.1f} ± {v['swd_avg_x1e3'][1]:.1f} | "
                     f"{v['spectrum_distance'][0]:.3f} ± {v['spectrum_distance'][1]:.3f} | {fid} |")
    return "\n".join(lines)


def markdown_table(results: dict, fid_note) -> str:
    levels = None
    for r in results.values():
        levels = [k for k in r["swd_x1e3"] if k != "avg"]
        break
    head = ["set", "mode", "G updates"] + [f"SWD {k}" for k in levels] + ["SWD avg", "spectrum dist"]
    if fid_note is None:
        head += ["FID", "KID x1e3"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(head) - 3)) + "|"]
    for name, r in results.items():
        row = [name, r.get("group", "real"), str(r.get("generator_updates", "–"))]
        row += [_fmt(r["swd_x1e3"][k]) for k in levels] + [_fmt(r["swd_x1e3"]["avg"]), _fmt(r["spectrum_distance"], 3)]
        if fid_note is None:
            row += [_fmt(r.get("fid"), 2), _fmt(r.get("kid_x1e3"), 2)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(args) -> dict:
    from tqdm import tqdm
    try:
        device = training.resolve_device(args.device)
    except ValueError as e:
        raise gan.GanError(str(e)) from None
    n_real = args.n_real
    n_fake = args.n_fake or n_real
    if n_real < 2 or n_fake < 2:
        raise gan.GanError(f"--n-real {n_real} / --n-fake {n_fake}: the metrics need at least 2 images per set")
    if args.spectrum_bands < 1:
        raise gan.GanError(f"--spectrum-bands must be positive, got {args.spectrum_bands}")

    runs = {}
    for d in args.run:
        ckpt = gan.load_gan_checkpoint(d)
        name = Path(d).resolve().name
        while name in runs:
            name += "'"
        runs[name] = (Path(d), ckpt)
    first_dir, first = next(iter(runs.values()))
    ref = first["args"]
    size = first["model_args"]["image_size"]
    for name, (d, ckpt) in runs.items():
        m, a = ckpt["model_args"], ckpt["args"]
        if m["mode"] not in gan.MODES:
            raise gan.GanError(f"{d}: checkpoint of unknown mode {m['mode']!r}; expected one of {', '.join(gan.MODES)}")
        if m["image_size"] != size:
            raise gan.GanError(f"{d}: generator makes {m['image_size']}x{m['image_size']} images but {first_dir} makes "
                               f"{size}x{size}; compare runs of one --image-size")
        if (a["dataset"], a["split"], a["data_dir"]) != (ref["dataset"], ref["split"], ref["data_dir"]):
            raise gan.GanError(f"{d}: trained on {a['data_dir'] or a['dataset']}/{a['split']} but {first_dir} on "
                               f"{ref['data_dir'] or ref['dataset']}/{ref['split']}; compare runs of one dataset")
        if a["holdout"] < n_real:
            raise gan.GanError(f"{d}: only {a['holdout']} held-out real images (its --holdout), too few for --n-real "
                               f"{n_real}; lower --n-real or retrain with a larger --holdout")

    imgs = gan.load_split(ref["dataset"], ref["split"], args.data_dir or ref["data_dir"], size, ref["download_root"],
                          args.cache_dir or ref["cache_dir"], not args.no_progress)
    n_train = max(ckpt["n_train"] for _, ckpt in runs.values())
    if len(imgs) - n_real < n_train:
        raise gan.GanError(f"{args.data_dir or ref['data_dir']}: {len(imgs)} images, too few for {n_real} held-out "
                           f"faces after the {n_train} trained on; lower --n-real")
    for d, ckpt in runs.values():
        if ckpt["source"] != imgs.source:
            print(f"warning: {d} was trained on {ckpt['source']}, the real faces come from {imgs.source}")
    real = data.to_unit_range(imgs.images[len(imgs) - n_real:])
    sets = {"real (held-out)": real, "real (train)": data.to_unit_range(imgs.images[:min(n_real, n_train)])}

    results = {"real (train)": {"mode": "real", "n": len(sets["real (train)"])}}
    per_state = {}
    for name, (d, ckpt) in runs.items():
        m = ckpt["model_args"]
        G = load_generator(ckpt, main_stage(m), device, d)
        x, comps, err = draw(G, n_fake, m["nz"], device, args.seed, args.batch_size)
        sets[name] = x
        group = m["mode"] if m["stages"][0] in ("image", "u0") else f"{m['mode']} ({'/'.join(m['stages'])})"
        results[name] = {"run": str(d), "mode": m["mode"], "group": group,
                         "generator_updates": ckpt["state"]["global_step"], "stage_evaluated": main_stage(m),
                         "n_fake": n_fake, "seed": ckpt["args"]["seed"]}
        if comps is not None:
            results[name]["max_abs_image_minus_sum_of_bands"] = err
        if args.per_state and m["mode"] == "components":
            per_state[name] = (ckpt, d)

    print(f"{n_real} held-out real faces, {n_fake} samples per run; SWD ...")
    for name, x in sets.items():
        if name == "real (held-out)":
            continue
        results[name]["swd_x1e3"] = gan_metrics.swd(real, x, seed=args.seed)

    bar = tqdm(total=sum(len(x) for x in sets.values()), desc="TV spectra", unit="img", disable=args.no_progress,
               mininterval=1.0)
    spectra = {name: gan_metrics.tv_spectrum(x, N=args.spectrum_bands, lam=args.lam, tol=args.tol,
                                             batch_size=args.batch_size, device=device, progress=bar)
               for name, x in sets.items()}
    bar.close()
    s_real = spectra["real (held-out)"]
    t = torch.arange(1, args.spectrum_bands + 1, dtype=torch.float32) / args.lam
    for name, s in spectra.items():
        if name in results:
            results[name]["spectrum_mean"] = s.mean(0).tolist()
            results[name]["spectrum_distance"] = gan_metrics.spectrum_distance(s, s_real)

    fid_note = gan_metrics.fid_unavailable_reason(args.inception_weights)
    if fid_note is None:
        fk = gan_metrics.fid_kid(real, {k: v for k, v in sets.items() if k != "real (held-out)"},
                                 gan_metrics.inception_from_weights(args.inception_weights), device=str(device))
        for name, v in fk.items():
            results[name].update(v)
    else:
        print(f"FID/KID skipped: {fid_note}")

    for name, (ckpt, d) in per_state.items():
        m = ckpt["model_args"]
        states = sorted(int(s[1:]) for s in ckpt["generators"])
        dec_u = []
        for start in range(0, n_real, args.batch_size):
            dec = pock.spectral(real[start:start + args.batch_size].to(device), N=max(1, max(states)), lam=m["lam"],
                                tol=args.tol)
            dec_u.append(dec.u.cpu())
        dec_u = torch.cat(dec_u)
        results[name]["per_state_swd_avg_x1e3"] = {}
        for n in states:
            G = load_generator(ckpt, f"u{n}", device, d)
            xs, _, _ = draw(G, n_fake, m["nz"], device, args.seed, args.batch_size)
            results[name]["per_state_swd_avg_x1e3"][f"u{n}"] = gan_metrics.swd(dec_u[:, n], xs, seed=args.seed)["avg"]

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {"n_real": n_real, "n_fake": n_fake, "real_images": f"last {n_real} of {imgs.source}",
              "spectrum": {"bands": args.spectrum_bands, "lam": args.lam, "t": t.tolist(),
                           "real_mean": s_real.mean(0).tolist()},
              "fid_kid": "computed" if fid_note is None else f"skipped: {fid_note}",
              "results": results, "summary": group_summary(results), "args": vars(args),
              "git": training.git_commit()}
    training.write_json(report, out / "metrics.json")
    plot_figure(sets, spectra, t, out / "samples_spectra.png", args.n_show)
    table = markdown_table(results, fid_note)
    print(table)
    if report["summary"]:
        print("\nmean ± std over the runs of each group:\n" + summary_table(report["summary"]))
    for name, r in results.items():
        if "per_state_swd_avg_x1e3" in r:
            print(f"{name}: SWD avg x1e3 per state: " +
                  ", ".join(f"{k} {v:.1f}" for k, v in r["per_state_swd_avg_x1e3"].items()))
    print(f"wrote {out / 'metrics.json'} and {out / 'samples_spectra.png'}")
    return report


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    try:
        main(args)
    except (gan.GanError, gan_metrics.MetricError, data.DataError) as e:
        sys.exit(f"error: {e}")
