"""Train DCGANs on grayscale faces, in the image domain or in the spectral TV domain.

Modes
-----
plain
    One DCGAN on the images (the baseline).
components
    The dissertation's scheme: one DCGAN per TV-flow state u_n (n = 0..N, default N = 3), trained one after
    another, each stage's generator and discriminator starting from the previous stage's weights. The
    dissertation then "recombines" the generated states as phi_sum(1) + f_r(1); that expression telescopes
    algebraically to u_0, so the generated image of this mode is the u_0 generator's sample, and the other
    stages influence it only through the weight initialisation (``--stage-order coarse-to-fine`` trains
    u_N first and u_0 last, which at least lets the coarser stages precede the image).
joint
    One DCGAN whose generator outputs the spectral bands phi_1..phi_K and the residual as channels; the image
    is their sum, so the reconstruction is exact. Its discriminator sees the image together with the bands.
    The real bands come from :func:`pock.spectral`, computed once per dataset and cached (bandcache).

Data: ``--data-dir`` is a folder or zip in ImageFolder layout (``../shared/data/celeba.zip`` holds 10,000 real
64x64 faces); without it torchvision's CelebA is downloaded. The last ``--holdout`` images of the split are
never trained on (gan_test.py measures against them); training uses the rest, or ``--subset`` of it drawn
with ``--seed``.

Budgets: an epoch is a pass over the training images with full batches. A stage ends after ``--epochs``
epochs or, when ``--max-steps`` is given, after its share of that many generator updates, whichever comes
first. ``--max-steps`` counts the generator updates of the whole run: in ``components`` mode it is split
evenly over the N+1 stages, so that all modes compare at the same total number of updates (``--epochs``
is then per stage and should be large enough not to stop a stage first).

Outputs in ``--output-dir``: ``args.json``, ``checkpoint.pt`` (both nets, both optimisers, AMP scalers,
RNG, fixed noise, the loss records; written atomically each epoch; ``--resume`` continues from it),
``samples_<stage>_e<epoch>.png`` from fixed noise (shared by all stages), for ``joint`` also
``bands_e<epoch>.png``, ``losses.jsonl`` and ``losses.png``.

Example::

    python gan.py --mode joint --data-dir ../shared/data/celeba.zip --epochs 5 --output-dir runs/gan_joint
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

import checkpoints
import cli
import data
import gan_lib
import pock
from cli import UserError
from gan_models import joint_disc_input, weights_init
from io_utils import atomic_write, save_figure, write_jsonl
from training import Dist, epoch_batches, resolve_device, seed_for


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gan.py", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description="DCGANs on faces: plain, per TV-flow state, or joint spectral bands")
    p.set_defaults(script="gan.py")
    cli.add_common_flags(p, "../shared/data/celeba.zip", output_dir="runs/gan")
    p.add_argument("--mode", choices=tuple(gan_lib.MODES), default="plain",
                   help="what the GAN generates: " + "; ".join(f"{k}: {v}" for k, v in gan_lib.MODES.items()))
    p.add_argument("--dataset", default="celeba", choices=("celeba", "folder"), help="dataset kind of --data-dir")
    p.add_argument("--split", default="train", help="split folder of --data-dir (torchvision split name when downloading)")
    p.add_argument("--download-root", default="./data", help="where torchvision downloads CelebA")
    p.add_argument("--holdout", type=int, default=2000,
                   help="the last N images of the split are never trained on (gan_test.py's real faces)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--nz", type=int, default=100, help="latent size")
    p.add_argument("--ngf", type=int, default=64, help="generator width")
    p.add_argument("--ndf", type=int, default=64, help="discriminator width")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--beta1", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=5, help="epochs (per stage in components mode)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="generator updates of the whole run (split evenly over the stages in components mode)")
    p.add_argument("--lam", type=float, default=7.0, help="1/dt of the TV flow (pock.spectral)")
    p.add_argument("--states", type=int, default=3, help="components mode: train on u_0..u_N for N = this")
    p.add_argument("--stage-order", choices=("dissertation", "coarse-to-fine"), default="dissertation",
                   help="components mode: u_0 first (dissertation) or u_N first")
    p.add_argument("--bands", type=int, default=3, help="joint mode: K spectral bands generated besides the residual")
    p.add_argument("--tol", type=float, default=pock.SPECTRAL_TOL,
                   help="duality gap per pixel of the first TV-flow step (later steps tighter; see pock.spectral)")
    p.add_argument("--n-samples", type=int, default=64, help="size of the fixed-noise sample grid")
    p.add_argument("--log-every", type=int, default=10, help="steps per line of losses.jsonl")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    return p


# ------------------------------------------------------------------------------------------ steps

def check_args(args) -> None:
    for flag, v in (("--epochs", args.epochs), ("--batch-size", args.batch_size), ("--states", args.states),
                    ("--bands", args.bands), ("--nz", args.nz), ("--ngf", args.ngf), ("--ndf", args.ndf)):
        if v < 1:
            raise UserError(f"{flag} must be positive, got {v}")
    n_stages = len(gan_lib.stage_names(args.mode, args.states, args.stage_order))
    if args.max_steps is not None and args.max_steps < n_stages:
        raise UserError(f"--max-steps {args.max_steps} leaves a stage without updates; give at least {n_stages}")


@dataclass
class TrainingData:
    """The training faces on the device, as images in [-1, 1] and, for the spectral modes, components."""
    faces: gan_lib.Faces
    images: torch.Tensor
    comps: Optional[torch.Tensor]
    scales: Optional[torch.Tensor]    # joint: the largest magnitude of each component


def prepare_data(args, device) -> TrainingData:
    faces = gan_lib.load_faces(args)
    comps = gan_lib.real_components(faces, args, device) if args.mode != "plain" else None
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
    G, D = gan_lib.build_generator(m).to(device), gan_lib.build_discriminator(m).to(device)
    G.apply(weights_init)
    D.apply(weights_init)
    return GanRun(m, G, D, torch.optim.Adam(G.parameters(), lr=args.lr, betas=(args.beta1, 0.999)),
                  torch.optim.Adam(D.parameters(), lr=args.lr, betas=(args.beta1, 0.999)),
                  torch.amp.GradScaler("cuda", enabled=amp), torch.amp.GradScaler("cuda", enabled=amp),
                  torch.randn(args.n_samples, args.nz, 1, 1, generator=torch.Generator().manual_seed(args.seed)),
                  torch.Generator().manual_seed(seed_for(args.seed, 11)))


_MODULES = ("G", "D", "opt_g", "opt_d", "scaler_g", "scaler_d")


def to_checkpoint(run: GanRun, args, td: TrainingData, device) -> dict:
    return {"kind": "gan", "format": gan_lib.CHECKPOINT_FORMAT, "model_args": run.m, "args": vars(args),
            **{k: getattr(run, k).state_dict() for k in _MODULES}, "generators": run.generators,
            "fixed_noise": run.fixed_noise, "zgen": run.zgen.get_state(), "rng": checkpoints.rng_state(device),
            "state": run.state, "records": run.records, "n_train": len(td.faces.images),
            "n_images": td.faces.n_images, "source": td.faces.source}


def restore(run: GanRun, ckpt: dict, device) -> None:
    for k in _MODULES:
        # A scaler saved without --amp holds no state; an --amp run resumed from it starts a fresh one.
        if ckpt[k] or not k.startswith("scaler"):
            getattr(run, k).load_state_dict(ckpt[k])
    run.fixed_noise = ckpt["fixed_noise"]
    run.zgen.set_state(ckpt["zgen"])
    checkpoints.set_rng_state(ckpt["rng"], device)
    run.state, run.generators, run.records = dict(ckpt["state"]), dict(ckpt["generators"]), list(ckpt["records"])


def train_step(run: GanRun, x: torch.Tensor, bce, device, amp: bool) -> torch.Tensor:
    """One discriminator and one generator update; returns loss_D, loss_G, D(x), D(G(z))."""
    G, D, bs, joint = run.G, run.D, x.shape[0], run.m["mode"] == "joint"
    z = torch.randn(bs, run.m["nz"], 1, 1, generator=run.zgen).to(device)
    ones, zeros = torch.ones(bs, device=device), torch.zeros(bs, device=device)
    # Discriminator step: real batch labelled 1, generated batch 0 (Goodfellow et al. 2014).
    run.opt_d.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
        out_real = D(x)
        img, cmp = gan_lib.forward(G, z)
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
    return torch.stack([loss_d.detach(), loss_g.detach(), torch.sigmoid(out_real.detach().float()).mean(),
                        torch.sigmoid(out_fake.detach().float()).mean()]).double().cpu()


def _record(stage: str, epoch: int, state: dict, s: torch.Tensor) -> dict:
    return {"stage": stage, "epoch": epoch + 1, "global_step": state["global_step"], "loss_d": float(s[0]),
            "loss_g": float(s[1]), "d_real": float(s[2]), "d_fake": float(s[3])}


def train_epoch(run: GanRun, s: int, name: str, td: TrainingData, args, device, amp: bool) -> None:
    """One pass over the training faces in full batches (or what is left of the stage's budget)."""
    from tqdm import tqdm
    state, budget = run.state, gan_lib.stage_budgets(args.max_steps, len(run.m["stages"]))[s]
    real = td.comps[:, int(name[1:])] if args.mode == "components" else td.images
    batches = [b for b in epoch_batches(len(real), args.batch_size, seed_for(args.seed, s), state["epoch"], Dist())
               if len(b) == args.batch_size]
    if budget is not None:
        batches = batches[:budget - state["stage_step"]]
    run.G.train()
    run.D.train()
    bce = nn.BCEWithLogitsLoss()
    sums, window = torch.zeros(4, dtype=torch.float64), []
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for idx in tqdm(batches, desc=f"{args.mode} {name} epoch {state['epoch'] + 1}/{args.epochs}", unit="batch",
                    disable=args.no_progress, leave=False, mininterval=1.0):
        idx = idx.to(device)
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
    img, cmp = gan_lib.sample(run.G, run.fixed_noise.to(device))
    save_grid(img.cpu(), out / f"samples_{name}_e{run.state['epoch']:03d}.png")
    if cmp is not None:
        save_band_grid(img.cpu(), cmp.cpu(), run.G.scales.cpu(), out / f"bands_e{run.state['epoch']:03d}.png")
    # The stage's generator so far; the next stage starts from these weights and optimiser states
    # (the dissertation's initialisation from the previous state's GAN).
    run.generators[name] = {k: v.detach().cpu().clone() for k, v in run.G.state_dict().items()}
    checkpoints.save(out / "checkpoint.pt", to_checkpoint(run, args, td, device))
    write_jsonl(out / "losses.jsonl", run.records)
    plot_losses(run.records, out / "losses.png", f"{args.mode} DCGAN")


# ------------------------------------------------------------------------------------ figures

def save_grid(x: torch.Tensor, path: Path, nrow: int = 8) -> None:
    import torchvision.utils as vutils
    atomic_write(path, lambda tmp: vutils.save_image(x.float().clamp(-1, 1), tmp, format="png", nrow=nrow,
                                                     normalize=True, value_range=(-1, 1), padding=2))


def save_band_grid(img: torch.Tensor, comps: torch.Tensor, scales: torch.Tensor, path: Path, n: int = 8) -> None:
    """Rows: samples; columns: image, phi_1..phi_K, residual (each band stretched to its own scale)."""
    cols = [img[:n].clamp(-1, 1)] + [comps[:n, k] / scales[k] for k in range(comps.shape[1])]
    save_grid(torch.stack(cols, 1).flatten(0, 1), path, nrow=len(cols))


def plot_losses(records: list, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rec = [r for r in records if "epoch_seconds" not in r]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    steps = [r["global_step"] for r in rec]
    ax.plot(steps, [r["loss_d"] for r in rec], label="discriminator")
    ax.plot(steps, [r["loss_g"] for r in rec], label="generator")
    for r0, r1 in zip(rec, rec[1:]):
        if r1["stage"] != r0["stage"]:
            ax.axvline(r0["global_step"], color="0.6", lw=0.8, ls="--")
            ax.text(r0["global_step"], ax.get_ylim()[1], f" {r1['stage']}", va="top", fontsize=7)
    ax.set(xlabel="generator updates", ylabel="BCE loss", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


# --------------------------------------------------------------------------------------- main

def main(args) -> dict:
    check_args(args)
    device = resolve_device(args.device)
    amp = bool(args.amp and device.type == "cuda")
    out = Path(args.output_dir)
    resume = checkpoints.resume_path(args.resume, out)
    # A wrong checkpoint fails before the data and the band cache are loaded.
    ckpt = gan_lib.load_checkpoint(resume) if resume is not None else None
    if ckpt is not None:
        gan_lib.check_compatible(ckpt, gan_lib.model_args(args), resume)
    torch.manual_seed(args.seed)
    td = prepare_data(args, device)
    # A resumed joint generator keeps the scales it was trained with, not this data's.
    m = ckpt["model_args"] if ckpt is not None else gan_lib.model_args(args, td.scales)
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
        budget = gan_lib.stage_budgets(args.max_steps, len(m["stages"]))[s]
        while run.state["epoch"] < args.epochs and (budget is None or run.state["stage_step"] < budget):
            train_epoch(run, s, m["stages"][s], td, args, device, amp)
            save_epoch(run, m["stages"][s], args, td, device, out)
    print(f"done: {run.state['global_step']} generator updates; checkpoint {out / 'checkpoint.pt'}")
    return {"global_step": run.state["global_step"], "records": run.records}


if __name__ == "__main__":
    cli.run(main, get_args_parser())
