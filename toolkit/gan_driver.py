"""Train and test the GANs; ``gan.py`` and ``gan_test.py`` are thin entry points over this module.

The same pattern as the classifiers (:mod:`classify`): each entry point builds its parser with
:func:`get_train_parser` or :func:`get_test_parser` and runs :func:`train` or :func:`test` through
:func:`cli.run`. The modes, the data split and the metrics are described in ``gan.py``'s and
``gan_test.py``'s docstrings and in ``docs/gan.md``; the reusable parts (networks, sampling,
checkpoint reading, tables) live in :mod:`gan_common`, the figures in :mod:`plots`.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

import pock
from toolkit import checkpoints, cli, data, gan_common, gan_metrics
from toolkit.errors import UserError
from toolkit.gan_models import joint_disc_input, weights_init
from toolkit.io_utils import git_state, write_json, write_jsonl
from toolkit.plots import plot_losses, plot_samples_spectra, save_band_grid, save_grid
from toolkit.training import Dist, epoch_batches, resolve_device, seed_for

__all__ = ["get_train_parser", "get_test_parser", "train", "test"]

REAL, REAL_TRAIN = "real (held-out)", "real (train)"


# ------------------------------------------------------------------------------------ flags

def get_train_parser(prog: str = "gan.py") -> argparse.ArgumentParser:
    """gan.py's command line."""
    p = cli.make_parser(prog, "DCGANs on faces: plain, per TV-flow state, or joint spectral bands")
    p.set_defaults(script=prog)
    cli.add_common_flags(p, "../shared/data/celeba.zip", output_dir="runs/gan")
    p.add_argument("--mode", choices=tuple(gan_common.MODES), default="plain",
                   help="what the GAN generates: " + "; ".join(f"{k}: {v}" for k, v in gan_common.MODES.items()))
    p.add_argument("--dataset", default="celeba", choices=("celeba", "folder"),
                   help="dataset kind: celeba (downloaded when --data-dir is not given) or any folder of faces")
    p.add_argument("--split", default="train",
                   help="split (folder) of --data-dir; torchvision's split name when downloading")
    p.add_argument("--download-root", default="./data", metavar="DIR",
                   help="where torchvision downloads CelebA when --data-dir is not given")
    p.add_argument("--holdout", type=int, default=2000, metavar="N",
                   help="the last N images of the split are never trained on (gan_test.py's real faces)")
    p.add_argument("--image-size", type=int, default=64, metavar="PX",
                   help="side of the square faces in pixels (a power of two >= 16)")
    p.add_argument("--nz", type=int, default=100, metavar="N", help="size of the latent noise vector")
    p.add_argument("--ngf", type=int, default=64, metavar="N", help="generator width: channels of its last layer")
    p.add_argument("--ndf", type=int, default=64, metavar="N",
                   help="discriminator width: channels of its first layer")
    p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate of both networks")
    p.add_argument("--beta1", type=float, default=0.5, help="Adam's beta1 of both networks (DCGAN practice)")
    p.add_argument("--batch-size", type=int, default=128, metavar="N", help="faces per step")
    p.add_argument("--epochs", type=int, default=5, metavar="N",
                   help="passes over the training faces (per stage in components mode)")
    p.add_argument("--max-steps", type=int, default=None, metavar="N",
                   help="generator updates of the whole run (split evenly over the stages in components mode); "
                        "None: --epochs decides")
    p.add_argument("--lam", type=float, default=7.0, help="1/dt of the TV flow (pock.spectral)")
    p.add_argument("--states", type=int, default=3, metavar="N", help="components mode: train on u_0..u_N")
    p.add_argument("--stage-order", choices=("dissertation", "coarse-to-fine"), default="dissertation",
                   help="components mode: u_0 first (dissertation) or u_N first")
    p.add_argument("--n-bands", type=int, default=3, metavar="K",
                   help="joint mode: number of spectral bands generated besides the residual")
    cli.renamed_flag(p, "--bands", "--n-bands K",
                     "a count here; --bands means band indices, as in the augmented classifier scripts")
    p.add_argument("--tol", **cli.TOL_FLAG)
    p.add_argument("--n-samples", type=int, default=64, metavar="N", help="faces in the fixed-noise sample grid")
    p.add_argument("--log-every", type=int, default=10, metavar="N", help="steps per line of losses.jsonl")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    return p


def get_test_parser(prog: str = "gan_test.py") -> argparse.ArgumentParser:
    """gan_test.py's command line."""
    p = cli.make_parser(prog, "SWD, TV-spectrum and (optionally) FID/KID of gan.py runs")
    p.set_defaults(script=prog)
    p.add_argument("--run", action="append", required=True, metavar="DIR",
                   help="a gan.py output folder (repeat for several)")
    p.add_argument("--n-real", type=int, default=1000, metavar="N",
                   help="held-out real faces (the last ones of the split)")
    p.add_argument("--n-fake", type=int, default=None, metavar="N",
                   help="generated samples per run; None: --n-real")
    p.add_argument("--data-dir", default=None, metavar="PATH",
                   help="the runs' --data-dir, read from another place (e.g. ../shared/data/celeba.zip); "
                        "None: the runs' own")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="root of the caches: decoded images in <cache-dir>/decoded; None: the runs' --cache-dir")
    p.add_argument("--spectrum-bands", type=int, default=5, metavar="N", help="bands N of the TV spectrum")
    p.add_argument("--lam", type=float, default=7.0, help="1/dt of the TV flow for the spectrum (pock.spectral)")
    p.add_argument("--tol", **cli.TOL_FLAG)
    p.add_argument("--inception-weights", default=None, metavar="PATH",
                   help=f"local FID Inception weights ({gan_metrics.FID_WEIGHTS_NAME}) to compute FID and KID; "
                        f"None: both are skipped")
    p.add_argument("--floor-draws", type=int, default=1, metavar="K",
                   help="SWD noise floor: K disjoint draws of --n-real training-pool faces, each against the "
                        "held-out faces (mean ± std of the SWD avg in metrics.json); 1: the real (train) row only")
    p.add_argument("--per-state", action="store_true", help="components runs: SWD of every state's generator too")
    p.add_argument("--n-show", type=int, default=36, metavar="N", help="samples per set in the figure")
    p.add_argument("--device", **cli.COMMON_FLAGS["--device"])
    p.add_argument("--seed", type=int, default=0, help="seed of the latent samples and of the SWD projections")
    p.add_argument("--batch-size", type=int, default=250, metavar="N",
                   help="images per generator, spectrum and metric batch")
    p.add_argument("--output-dir", default="runs/gan_test", metavar="DIR",
                   help="where metrics.json and samples_spectra.png go")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    return p


# --------------------------------------------------------------------------------- training

def check_args(args) -> None:
    """gan.py's flags, each against its range (one line naming the flag), before any data is read."""
    P, P0 = cli.POSITIVE, cli.POSITIVE_OR_NONE
    cli.check_flags(args, [("--epochs", P), ("--batch-size", P), ("--states", P), ("--n-bands", P), ("--nz", P),
                           ("--ngf", P), ("--ndf", P), ("--image-size", cli.POWER_OF_TWO), ("--lr", P),
                           ("--beta1", cli.HALF_OPEN_UNIT), ("--lam", P), ("--tol", P0), ("--max-steps", P0),
                           ("--holdout", cli.NON_NEGATIVE), ("--n-samples", P), ("--log-every", P)])
    n_stages = len(gan_common.stage_names(args.mode, args.states, args.stage_order))
    if args.max_steps is not None and args.max_steps < n_stages:
        raise UserError(f"--max-steps {args.max_steps} leaves a stage without updates; give at least {n_stages}")


def check_test_args(args) -> None:
    """gan_test.py's flags, each against its range, before any checkpoint is read or sample drawn."""
    P, P0 = cli.POSITIVE, cli.POSITIVE_OR_NONE
    cli.check_flags(args, [("--n-real", P), ("--n-fake", P0), ("--spectrum-bands", P), ("--lam", P), ("--tol", P0),
                           ("--floor-draws", P), ("--n-show", P), ("--batch-size", P)])
    n_real, n_fake = args.n_real, args.n_fake or args.n_real
    if n_real < 2 or n_fake < 2:
        raise UserError(f"--n-real {n_real} / --n-fake {n_fake}: the metrics need at least 2 images per set")


@dataclass
class TrainingData:
    """The training faces on the device, as images in [-1, 1] and, for the spectral modes, components."""
    faces: gan_common.Faces
    images: torch.Tensor
    comps: Optional[torch.Tensor]
    scales: Optional[torch.Tensor]    # joint: the largest magnitude of each component


def prepare_data(args, device) -> TrainingData:
    faces = gan_common.load_faces(args)
    comps = gan_common.real_components(faces, args, device) if args.mode != "plain" else None
    # The largest magnitude of each component bounds the generator's tanh output range.
    scales = comps.abs().amax(dim=(0, 2, 3, 4)).clamp_min(1e-3) if args.mode == "joint" else None
    # The training set lives on the device (a few hundred MB at most): a batch is one index operation.
    return TrainingData(faces, data.to_unit_range(faces.images).to(device),
                        comps.to(device) if comps is not None else None, scales)


@dataclass
class GanRun:
    """Everything a checkpoint holds: the nets, their optimisers and the progress of the run."""
    m: dict
    G: nn.Module
    D: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler_g: torch.amp.GradScaler
    scaler_d: torch.amp.GradScaler
    fixed_noise: torch.Tensor
    zgen: torch.Generator
    state: dict = field(default_factory=lambda: {"stage": 0, "epoch": 0, "stage_step": 0, "global_step": 0})
    generators: dict = field(default_factory=dict)   # stage name -> its generator's final weights
    records: list = field(default_factory=list)      # the lines of losses.jsonl


def build_run(args, m: dict, device, amp: bool) -> GanRun:
    G, D = gan_common.build_generator(m).to(device), gan_common.build_discriminator(m).to(device)
    G.apply(weights_init)
    D.apply(weights_init)
    return GanRun(m, G, D, torch.optim.Adam(G.parameters(), lr=args.lr, betas=(args.beta1, 0.999)),
                  torch.optim.Adam(D.parameters(), lr=args.lr, betas=(args.beta1, 0.999)),
                  torch.amp.GradScaler("cuda", enabled=amp), torch.amp.GradScaler("cuda", enabled=amp),
                  torch.randn(args.n_samples, args.nz, 1, 1, generator=torch.Generator().manual_seed(args.seed)),
                  torch.Generator().manual_seed(seed_for(args.seed, 11)))


# The networks and their optimiser and scaler states, under the checkpoint's keys "model", "optimizer", "scaler".
_PARTS = {"model": ("G", "D"), "optimizer": ("opt_g", "opt_d"), "scaler": ("scaler_g", "scaler_d")}


def to_checkpoint(run: GanRun, args, td: TrainingData, device) -> dict:
    """The run in the checkpoint vocabulary shared with the classifiers (:func:`checkpoints.make`)."""
    parts = {key: dict(zip(("G", "D"), (getattr(run, a).state_dict() for a in attrs)))
             for key, attrs in _PARTS.items()}
    rng = {**checkpoints.rng_state(device), "latent": run.zgen.get_state()}
    return checkpoints.make("gan", meta=run.m, args=args, **parts, epoch=run.state["epoch"],
                            step=run.state["global_step"], rng=rng, metrics=run.records, stage=run.state["stage"],
                            stage_step=run.state["stage_step"], generators=run.generators,
                            fixed_noise=run.fixed_noise,
                            data={"n_train": len(td.faces.images), "n_images": td.faces.n_images,
                                  "source": td.faces.source})


def restore(run: GanRun, ckpt: dict, device) -> None:
    for key, attrs in _PARTS.items():
        for net, attr in zip(("G", "D"), attrs):
            # A scaler saved without --amp holds no state; an --amp run resumed from it starts a fresh one.
            if ckpt[key][net] or key != "scaler":
                getattr(run, attr).load_state_dict(ckpt[key][net])
    run.fixed_noise = ckpt["fixed_noise"]
    run.zgen.set_state(ckpt["rng"]["latent"])
    checkpoints.set_rng_state(ckpt["rng"], device)
    run.state = {"stage": ckpt["stage"], "epoch": ckpt["epoch"], "stage_step": ckpt["stage_step"],
                 "global_step": ckpt["step"]}
    run.generators, run.records = dict(ckpt["generators"]), list(ckpt["metrics"])


def _to_device(t: torch.Tensor, device) -> torch.Tensor:
    """``t`` on ``device``; to a GPU from pinned memory, an asynchronous copy where a pageable one would wait."""
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t


def train_step(run: GanRun, x: torch.Tensor, bce, device, amp: bool) -> torch.Tensor:
    """One discriminator and one generator update; returns loss_D, loss_G, D(x), D(G(z))."""
    G, D, bs, joint = run.G, run.D, x.shape[0], run.m["mode"] == "joint"
    # The latent draw stays on the CPU generator (reproducible, checkpointed).
    z = _to_device(torch.randn(bs, run.m["nz"], 1, 1, generator=run.zgen), device)
    ones, zeros = torch.ones(bs, device=device), torch.zeros(bs, device=device)
    # Discriminator step: real batch labelled 1, generated batch 0 (Goodfellow et al. 2014).
    run.opt_d.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
        out_real = D(x)
        img, cmp = gan_common.forward(G, z)
        fake = joint_disc_input(img, cmp, G.scales) if joint else img
        out_fake = D(fake.detach())
        loss_d = bce(out_real.float(), ones) + bce(out_fake.float(), zeros)
    run.scaler_d.scale(loss_d).backward()
    run.scaler_d.step(run.opt_d)
    run.scaler_d.update()
    # Generator step with the non-saturating loss -log D(G(z)) (DCGAN practice).
    run.opt_g.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
        loss_g = bce(D(fake).float(), ones)
    run.scaler_g.scale(loss_g).backward()
    run.scaler_g.step(run.opt_g)
    run.scaler_g.update()
    # Stays on the device: reading it back every step would wait for the GPU at every step.
    return torch.stack([loss_d.detach(), loss_g.detach(), torch.sigmoid(out_real.detach().float()).mean(),
                        torch.sigmoid(out_fake.detach().float()).mean()]).double()


def _record(stage: str, epoch: int, state: dict, s: torch.Tensor) -> dict:
    s = s.cpu()                                      # one host-device synchronisation per record
    return {"stage": stage, "epoch": epoch + 1, "global_step": state["global_step"], "loss_d": float(s[0]),
            "loss_g": float(s[1]), "d_real": float(s[2]), "d_fake": float(s[3])}


def train_epoch(run: GanRun, s: int, name: str, td: TrainingData, args, device, amp: bool) -> None:
    """One pass over the training faces in full batches (or what is left of the stage's budget)."""
    from tqdm import tqdm
    state, budget = run.state, gan_common.stage_budgets(args.max_steps, len(run.m["stages"]))[s]
    real = td.comps[:, int(name[1:])] if args.mode == "components" else td.images
    batches = [b for b in epoch_batches(len(real), args.batch_size, seed_for(args.seed, s), state["epoch"], Dist())
               if len(b) == args.batch_size]
    if budget is not None:
        batches = batches[:budget - state["stage_step"]]
    run.G.train()
    run.D.train()
    bce = nn.BCEWithLogitsLoss()
    sums, window = torch.zeros(4, dtype=torch.float64, device=device), []
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for idx in tqdm(batches, desc=f"{args.mode} {name} epoch {state['epoch'] + 1}/{args.epochs}", unit="batch",
                    disable=args.no_progress, leave=False, mininterval=1.0):
        idx = _to_device(idx, device)
        x = joint_disc_input(real[idx], td.comps[idx], run.G.scales) if args.mode == "joint" else real[idx]
        stats = train_step(run, x, bce, device, amp)
        sums += stats
        window.append(stats)
        state["stage_step"] += 1
        state["global_step"] += 1
        if len(window) == args.log_every:
            run.records.append(_record(name, state["epoch"], state, torch.stack(window).mean(0)))
            window = []
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    if window:
        run.records.append(_record(name, state["epoch"], state, torch.stack(window).mean(0)))
    ep = _record(name, state["epoch"], state, sums / max(len(batches), 1))
    ep.update(epoch_seconds=round(seconds, 3), steps=len(batches),
              seconds_per_step=round(seconds / max(len(batches), 1), 5))
    run.records.append(ep)
    state["epoch"] += 1
    print(f"{args.mode} {name} epoch {state['epoch']}: loss_D {ep['loss_d']:.3f} loss_G {ep['loss_g']:.3f} "
          f"D(x) {ep['d_real']:.3f} D(G(z)) {ep['d_fake']:.3f}  {len(batches)} steps in {seconds:.1f} s")


def save_epoch(run: GanRun, name: str, args, td: TrainingData, device, out: Path) -> None:
    """Sample grids from the fixed noise, the stage's generator, the checkpoint, losses.jsonl/png."""
    img, cmp = gan_common.sample(run.G, run.fixed_noise.to(device))
    save_grid(img.cpu(), out / f"samples_{name}_e{run.state['epoch']:03d}.png")
    if cmp is not None:
        save_band_grid(img.cpu(), cmp.cpu(), run.G.scales.cpu(), out / f"bands_e{run.state['epoch']:03d}.png")
    # The stage's generator so far; the next stage starts from these weights and optimiser states
    # (the dissertation's initialisation from the previous state's GAN).
    run.generators[name] = {k: v.detach().cpu().clone() for k, v in run.G.state_dict().items()}
    checkpoints.save(out / "checkpoint.pt", to_checkpoint(run, args, td, device))
    write_jsonl(out / "losses.jsonl", run.records)
    plot_losses(run.records, out / "losses.png", f"{args.mode} DCGAN")


def train(args) -> dict:
    check_args(args)
    device = resolve_device(args.device)
    amp = bool(args.amp and device.type == "cuda")
    out = Path(args.output_dir)
    resume = checkpoints.resume_path(args.resume, out)
    # A wrong checkpoint fails before the data and the band cache are loaded.
    ckpt = gan_common.load_checkpoint(resume) if resume is not None else None
    if ckpt is not None:
        gan_common.check_compatible(ckpt, gan_common.model_meta(args), resume)
    torch.manual_seed(args.seed)
    td = prepare_data(args, device)
    # A resumed joint generator keeps the scales it was trained with, not this data's.
    m = ckpt["meta"] if ckpt is not None else gan_common.model_meta(args, td.scales)
    run = build_run(args, m, device, amp)
    if ckpt is not None:
        restore(run, ckpt, device)
        print(f"resumed from {resume}: stage {m['stages'][run.state['stage']]} after {run.state['epoch']} epochs, "
              f"{run.state['global_step']} generator updates done")
    out.mkdir(parents=True, exist_ok=True)
    checkpoints.write_args(out, args)
    # A resumed run continues its current stage (which a larger --epochs or --max-steps may extend); the
    # earlier stages are final once a later one has started from their weights.
    for s in range(run.state["stage"], len(m["stages"])):
        if s != run.state["stage"]:
            run.state.update(stage=s, epoch=0, stage_step=0)
        budget = gan_common.stage_budgets(args.max_steps, len(m["stages"]))[s]
        while run.state["epoch"] < args.epochs and (budget is None or run.state["stage_step"] < budget):
            train_epoch(run, s, m["stages"][s], td, args, device, amp)
            save_epoch(run, m["stages"][s], args, td, device, out)
    print(f"done: {run.state['global_step']} generator updates; checkpoint {out / 'checkpoint.pt'}")
    return {"global_step": run.state["global_step"], "records": run.records}


# ---------------------------------------------------------------------------------- testing

def load_runs(paths: list, n_real: int) -> dict:
    """``{name: (folder, checkpoint)}``, checked to be comparable: one image size, one dataset, enough held out."""
    runs = {}
    for d in paths:
        name = Path(d).resolve().name
        while name in runs:
            name += "'"
        runs[name] = (Path(d), gan_common.load_checkpoint(d))
    first_dir, first = next(iter(runs.values()))
    ref, size = first["args"], first["meta"]["image_size"]
    for d, ckpt in runs.values():
        m, a = ckpt["meta"], ckpt["args"]
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
    ref, size = next(iter(runs.values()))[1]["args"], next(iter(runs.values()))[1]["meta"]["image_size"]
    imgs = gan_common.load_split(ref["dataset"], ref["split"], args.data_dir or ref["data_dir"], size,
                              ref["download_root"], args.cache_dir or ref["cache_dir"], not args.no_progress)
    for d, ckpt in runs.values():
        if len(imgs) != ckpt["data"]["n_images"]:
            raise UserError(f"{d}: trained on a split of {ckpt['data']['n_images']} images, but "
                            f"{args.data_dir or ref['data_dir']} holds {len(imgs)}, so its held-out faces are "
                            f"others; pass the run's data with --data-dir")
        # The decode key (after '#') of a zip hashes its content and the decoding, not where it lies, so a
        # copy of the run's archive elsewhere matches; a folder's key includes its path and file times.
        if _decode_key(ckpt["data"]["source"]) != _decode_key(imgs.source):
            raise UserError(f"{d}: trained on {ckpt['data']['source']}, but the real faces would come from "
                            f"{imgs.source}, other data (or a moved folder); pass the run's own data with "
                            f"--data-dir, so that the held-out faces are the ones it never saw")
    pool = len(imgs) - max(ckpt["args"]["holdout"] for _, ckpt in runs.values())
    if draws > 1 and draws * n_real > pool:
        raise UserError(f"--floor-draws {draws} x --n-real {n_real} faces exceed the {pool} faces before the "
                        f"held-out ones; lower --floor-draws or --n-real")
    pool_draws = [data.to_unit_range(imgs.images[i * n_real:min((i + 1) * n_real, pool)]) for i in range(draws)]
    return data.to_unit_range(imgs.images[len(imgs) - n_real:]), pool_draws, imgs.source


def _decode_key(source: str) -> str:
    return source.rpartition("#")[2]


def generate_sets(args, runs: dict, n_fake: int, device) -> tuple:
    """Samples of each run's generator, and the results rows that describe them."""
    sets, results = {}, {}
    for name, (d, ckpt) in runs.items():
        m = ckpt["meta"]
        stage = gan_common.main_stage(m["mode"])
        x, comps, err = gan_common.draw(gan_common.load_generator(ckpt, stage, device, d), n_fake, m["nz"], device,
                                     args.seed, args.batch_size)
        sets[name] = x
        group = m["mode"] if m["stages"][0] in ("image", "u0") else f"{m['mode']} ({'/'.join(m['stages'])})"
        if ckpt["args"].get("max_steps") is not None:
            # Seeds of one budget form a group; the same mode at another budget is another group.
            group += f" @{ckpt['args']['max_steps']} steps"
        results[name] = {"run": str(d), "mode": m["mode"], "group": group,
                         "generator_updates": ckpt["step"], "stage_evaluated": stage,
                         # components: the evaluated u_0 generator got only its stage's share of the updates
                         "evaluated_generator_updates": sum(r["steps"] for r in ckpt["metrics"]
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
        m = ckpt["meta"]
        if m["mode"] != "components":
            continue
        states = sorted(int(s[1:]) for s in ckpt["generators"])
        dec_u = torch.cat([pock.spectral(real[i:i + args.batch_size].to(device), N=max(1, max(states)),
                                         lam=m["lam"], tol=args.tol).u.cpu()
                           for i in range(0, len(real), args.batch_size)])
        results[name]["per_state_swd_avg_x1e3"] = {}
        for n in states:
            G = gan_common.load_generator(ckpt, f"u{n}", device, d)
            xs, _, _ = gan_common.draw(G, n_fake, m["nz"], device, args.seed, args.batch_size)
            results[name]["per_state_swd_avg_x1e3"][f"u{n}"] = gan_metrics.swd(dec_u[:, n], xs, seed=args.seed)["avg"]


def print_tables(report: dict) -> None:
    print(gan_common.markdown_table(report["results"], with_fid=report["fid_kid"] == "computed"))
    if report["summary"]:
        print("\nmean ± std over the runs of each group:\n" + gan_common.summary_table(report["summary"]))
    fl = report["swd_floor"]
    if fl["std"] is not None:
        print(f"\nSWD avg noise floor, {fl['draws']} draws of {fl['n']} real faces against the held-out ones: "
              f"{fl['mean']:.1f} ± {fl['std']:.1f}")
    for name, r in report["results"].items():
        if "per_state_swd_avg_x1e3" in r:
            print(f"{name}: SWD avg x1e3 per state: " +
                  ", ".join(f"{k} {v:.1f}" for k, v in r["per_state_swd_avg_x1e3"].items()))


def test(args) -> dict:
    check_test_args(args)
    device = resolve_device(args.device)
    n_real, n_fake = args.n_real, args.n_fake or args.n_real
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
              "results": results, "summary": gan_common.group_summary(results), "args": vars(args), "git": git_state()}
    out = Path(args.output_dir)
    write_json(out / "metrics.json", report)
    plot_samples_spectra(sets, spectra, t, out / "samples_spectra.png", args.n_show)
    print_tables(report)
    print(f"wrote {out / 'metrics.json'} and {out / 'samples_spectra.png'}")
    return report
