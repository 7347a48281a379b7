"""Evaluate GANs trained by gan.py against held-out real faces.

For each ``--run`` folder the trained generator draws ``--n-fake`` samples (from a fixed seed, batch norm on
batch statistics as in training; sampling leaves the generator unchanged),
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

A "real (train)" row compares the first ``--n-real`` faces before the held-out ones (the training pool) with the
held-out ones: the value two
independent real samples give, i.e. the floor under which no generator can be told apart at this sample size.
``--floor-draws`` K repeats it on K disjoint draws of ``--n-real`` faces from the training pool, so that the floor
comes with its spread (``swd_floor`` in metrics.json: each draw's SWD avg, their mean and standard deviation).

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
import statistics
from pathlib import Path

import torch

import cli
import data
import gan_lib
import gan_metrics
import pock
from cli import UserError
from io_utils import git_state, save_figure, write_json
from training import resolve_device

REAL, REAL_TRAIN = "real (held-out)", "real (train)"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gan_test.py", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description="SWD, TV-spectrum and (optionally) FID/KID of gan.py runs")
    p.set_defaults(script="gan_test.py")
    p.add_argument("--run", action="append", required=True, help="a gan.py output folder (repeat for several)")
    p.add_argument("--n-real", type=int, default=1000, help="held-out real faces (the last ones of the split)")
    p.add_argument("--n-fake", type=int, default=None, help="generated samples per run (None: --n-real)")
    p.add_argument("--data-dir", default=None, metavar="PATH",
                   help="the runs' --data-dir, read from another place (e.g. ../shared/data/celeba.zip)")
    p.add_argument("--cache-dir", default=None, help="root of the caches (None: the runs' --cache-dir)")
    p.add_argument("--spectrum-bands", type=int, default=5, help="bands N of the TV spectrum")
    p.add_argument("--lam", type=float, default=7.0, help="1/dt of the TV flow for the spectrum")
    p.add_argument("--tol", type=float, default=pock.SPECTRAL_TOL,
                   help="duality gap per pixel of the first TV-flow step (later steps tighter; see pock.spectral)")
    p.add_argument("--inception-weights", default=None,
                   help=f"local FID Inception weights ({gan_metrics.FID_WEIGHTS_NAME}) to compute FID and KID")
    p.add_argument("--floor-draws", type=int, default=1, metavar="K",
                   help="SWD noise floor: K disjoint draws of --n-real training-pool faces, each against the "
                        "held-out faces (mean ± std of the SWD avg in metrics.json); 1: the real (train) row only")
    p.add_argument("--per-state", action="store_true", help="components runs: SWD of every state's generator too")
    p.add_argument("--n-show", type=int, default=36, help="samples per set in the figure")
    p.add_argument("--device", **cli.COMMON_FLAGS["--device"])
    p.add_argument("--seed", type=int, default=0, help="seed of the latent samples and of the SWD projections")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--output-dir", default="runs/gan_test", help="where metrics.json and the figure go")
    p.add_argument("--no-progress", action="store_true")
    return p


# ------------------------------------------------------------------------------------------ steps

def load_runs(paths: list, n_real: int) -> dict:
    """``{name: (folder, checkpoint)}``, checked to be comparable: one image size, one dataset, enough held out."""
    runs = {}
    for d in paths:
        name = Path(d).resolve().name
        while name in runs:
            name += "'"
        runs[name] = (Path(d), gan_lib.load_checkpoint(d))
    first_dir, first = next(iter(runs.values()))
    ref, size = first["args"], first["model_args"]["image_size"]
    for d, ckpt in runs.values():
        m, a = ckpt["model_args"], ckpt["args"]
        if m["image_size"] != size:
            raise UserError(f"{d}: generator makes {m['image_size']}x{m['image_size']} images but {first_dir} makes "
                            f"{size}x{size}; compare runs of one --image-size")
        if (a["dataset"], a["split"], a["data_dir"]) != (ref["dataset"], ref["split"], ref["data_dir"]):
            raise UserError(f"{d}: trained on {a['data_dir'] or a['dataset']}/{a['split']} but {first_dir} on "
                            f"{ref['data_dir'] or ref['dataset']}/{ref['split']}; compare runs of one dataset")
        if a["holdout"] < n_real:
            raise UserError(f"{d}: only {a['holdout']} held-out real images (its --holdout), too few for --n-real "
                            f"{n_real}; lower --n-real or retrain with a larger --holdout")
    return runs


def real_faces(args, runs: dict, n_real: int, draws: int = 1) -> tuple:
    """The held-out faces (the last ``n_real`` of the runs' split), ``draws`` disjoint draws of ``n_real`` faces
    from the start of the rest (the first is the "real (train)" set), their source."""
    ref, size = next(iter(runs.values()))[1]["args"], next(iter(runs.values()))[1]["model_args"]["image_size"]
    imgs = gan_lib.load_split(ref["dataset"], ref["split"], args.data_dir or ref["data_dir"], size,
                              ref["download_root"], args.cache_dir or ref["cache_dir"], not args.no_progress)
    for d, ckpt in runs.values():
        if len(imgs) != ckpt["n_images"]:
            raise UserError(f"{d}: trained on a split of {ckpt['n_images']} images, but "
                            f"{args.data_dir or ref['data_dir']} holds {len(imgs)}, so its held-out faces are "
                            f"others; pass the run's data with --data-dir")
        if ckpt["source"] != imgs.source:
            print(f"warning: {d} was trained on {ckpt['source']}, the real faces come from {imgs.source}")
    pool = len(imgs) - max(ckpt["args"]["holdout"] for _, ckpt in runs.values())
    if draws > 1 and draws * n_real > pool:
        raise UserError(f"--floor-draws {draws} x --n-real {n_real} faces exceed the {pool} faces before the "
                        f"held-out ones; lower --floor-draws or --n-real")
    pool_draws = [data.to_unit_range(imgs.images[i * n_real:min((i + 1) * n_real, pool)]) for i in range(draws)]
    return data.to_unit_range(imgs.images[len(imgs) - n_real:]), pool_draws, imgs.source


def generate_sets(args, runs: dict, n_fake: int, device) -> tuple:
    """Samples of each run's generator, and the results rows that describe them."""
    sets, results = {}, {}
    for name, (d, ckpt) in runs.items():
        m = ckpt["model_args"]
        stage = gan_lib.main_stage(m["mode"])
        x, comps, err = gan_lib.draw(gan_lib.load_generator(ckpt, stage, device, d), n_fake, m["nz"], device,
                                     args.seed, args.batch_size)
        sets[name] = x
        group = m["mode"] if m["stages"][0] in ("image", "u0") else f"{m['mode']} ({'/'.join(m['stages'])})"
        if ckpt["args"].get("max_steps") is not None:
            # Seeds of one budget form a group; the same mode at another budget is another group.
            group += f" @{ckpt['args']['max_steps']} steps"
        results[name] = {"run": str(d), "mode": m["mode"], "group": group,
                         "generator_updates": ckpt["state"]["global_step"], "stage_evaluated": stage,
                         # components: the evaluated u_0 generator got only its stage's share of the updates
                         "evaluated_generator_updates": sum(r["steps"] for r in ckpt["records"]
                                                            if r.get("stage") == stage and "steps" in r),
                         "n_fake": n_fake, "seed": ckpt["args"]["seed"]}
        if comps is not None:
            results[name]["max_abs_image_minus_sum_of_bands"] = err
    return sets, results


def add_spectra(results: dict, sets: dict, args, device) -> tuple:
    """Mean TV spectrum of every set and its distance to the held-out faces'; returns (spectra, t)."""
    from tqdm import tqdm
    bar = tqdm(total=sum(len(x) for x in sets.values()), desc="TV spectra", unit="img", disable=args.no_progress,
               mininterval=1.0)
    spectra = {name: gan_metrics.tv_spectrum(x, N=args.spectrum_bands, lam=args.lam, tol=args.tol,
                                             batch_size=args.batch_size, device=device, progress=bar)
               for name, x in sets.items()}
    bar.close()
    for name, s in spectra.items():
        if name in results:
            results[name]["spectrum_mean"] = s.mean(0).tolist()
            results[name]["spectrum_distance"] = gan_metrics.spectrum_distance(s, spectra[REAL])
    return spectra, torch.arange(1, args.spectrum_bands + 1, dtype=torch.float32) / args.lam


def add_fid(results: dict, sets: dict, args, device):
    """FID and KID when the Inception weights are at hand; returns why they were skipped, or None."""
    note = gan_metrics.fid_unavailable_reason(args.inception_weights)
    if note is not None:
        print(f"FID/KID skipped: {note}")
        return note
    fk = gan_metrics.fid_kid(sets[REAL], {k: v for k, v in sets.items() if k != REAL},
                             gan_metrics.inception_from_weights(args.inception_weights), device=str(device))
    for name, v in fk.items():
        results[name].update(v)
    return None


def add_per_state(results: dict, runs: dict, real: torch.Tensor, args, device, n_fake: int) -> None:
    """components runs: SWD of each state's generator against the held-out faces' own TV-flow state u_n."""
    for name, (d, ckpt) in runs.items():
        m = ckpt["model_args"]
        if m["mode"] != "components":
            continue
        states = sorted(int(s[1:]) for s in ckpt["generators"])
        dec_u = torch.cat([pock.spectral(real[i:i + args.batch_size].to(device), N=max(1, max(states)),
                                         lam=m["lam"], tol=args.tol).u.cpu()
                           for i in range(0, len(real), args.batch_size)])
        results[name]["per_state_swd_avg_x1e3"] = {}
        for n in states:
            G = gan_lib.load_generator(ckpt, f"u{n}", device, d)
            xs, _, _ = gan_lib.draw(G, n_fake, m["nz"], device, args.seed, args.batch_size)
            results[name]["per_state_swd_avg_x1e3"][f"u{n}"] = gan_metrics.swd(dec_u[:, n], xs, seed=args.seed)["avg"]


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
    save_figure(fig, path, dpi=110)


def print_tables(report: dict) -> None:
    print(gan_lib.markdown_table(report["results"], with_fid=report["fid_kid"] == "computed"))
    if report["summary"]:
        print("\nmean ± std over the runs of each group:\n" + gan_lib.summary_table(report["summary"]))
    fl = report["swd_floor"]
    if fl["std"] is not None:
        print(f"\nSWD avg noise floor, {fl['draws']} draws of {fl['n']} real faces against the held-out ones: "
              f"{fl['mean']:.1f} ± {fl['std']:.1f}")
    for name, r in report["results"].items():
        if "per_state_swd_avg_x1e3" in r:
            print(f"{name}: SWD avg x1e3 per state: " +
                  ", ".join(f"{k} {v:.1f}" for k, v in r["per_state_swd_avg_x1e3"].items()))


# --------------------------------------------------------------------------------------- main

def main(args) -> dict:
    device = resolve_device(args.device)
    n_real, n_fake = args.n_real, args.n_fake or args.n_real
    if n_real < 2 or n_fake < 2:
        raise UserError(f"--n-real {n_real} / --n-fake {n_fake}: the metrics need at least 2 images per set")
    if args.spectrum_bands < 1 or args.floor_draws < 1:
        raise UserError(f"--spectrum-bands and --floor-draws must be positive, got {args.spectrum_bands} and "
                        f"{args.floor_draws}")
    runs = load_runs(args.run, n_real)
    real, pool_draws, source = real_faces(args, runs, n_real, args.floor_draws)
    real_train = pool_draws[0]
    fakes, results = generate_sets(args, runs, n_fake, device)
    sets = {REAL: real, REAL_TRAIN: real_train, **fakes}
    results = {REAL_TRAIN: {"mode": "real", "n": len(real_train)}, **results}
    print(f"{n_real} held-out real faces, {n_fake} samples per run; SWD ...")
    for name in results:
        results[name]["swd_x1e3"] = gan_metrics.swd(real, sets[name], seed=args.seed)
    floor = [results[REAL_TRAIN]["swd_x1e3"]["avg"]] + [gan_metrics.swd(real, x, seed=args.seed)["avg"]
                                                         for x in pool_draws[1:]]
    spectra, t = add_spectra(results, sets, args, device)
    fid_note = add_fid(results, sets, args, device)
    if args.per_state:
        add_per_state(results, runs, real, args, device, n_fake)
    report = {"n_real": n_real, "n_fake": n_fake, "real_images": f"last {n_real} of {source}",
              "spectrum": {"bands": args.spectrum_bands, "lam": args.lam, "t": t.tolist(),
                           "real_mean": spectra[REAL].mean(0).tolist()},
              "fid_kid": "computed" if fid_note is None else f"skipped: {fid_note}",
              "swd_floor": {"draws": len(floor), "n": len(real_train), "avg": floor, "mean": statistics.fmean(floor),
                            "std": statistics.stdev(floor) if len(floor) > 1 else None},
              "results": results, "summary": gan_lib.group_summary(results), "args": vars(args), "git": git_state()}
    out = Path(args.output_dir)
    write_json(out / "metrics.json", report)
    plot_figure(sets, spectra, t, out / "samples_spectra.png", args.n_show)
    print_tables(report)
    print(f"wrote {out / 'metrics.json'} and {out / 'samples_spectra.png'}")
    return report


if __name__ == "__main__":
    cli.run(main, get_args_parser())
