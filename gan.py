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
never trained on (gan_test.py measures against them); training uses the first ``--subset`` of the rest.

Budgets: an epoch is a pass over the training images with full batches. A stage ends after ``--epochs``
epochs or, when ``--max-steps`` is given, after its share of that many generator updates, whichever comes
first. ``--max-steps`` counts the generator updates of the whole run: in ``components`` mode it is split
evenly over the N+1 stages, so that all modes compare at the same total number of updates (``--epochs``
is then per stage and should be large enough not to stop a stage first).

Outputs in ``--output-dir``: ``args.json``, ``checkpoint.pt`` (both nets, both optimisers, AMP scalers,
RNG, fixed noise; written atomically each epoch), ``samples_<stage>_e<epoch>.png`` from fixed noise (shared by
all stages), for ``joint`` also ``bands_e<epoch>.png``, ``losses.jsonl`` and ``losses.png``.

Example::

    python gan.py --mode joint --data-dir ../shared/data/celeba.zip --epochs 5 --output-dir runs/gan_joint
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

import bandcache
import data
import training
from gan_models import (BandGenerator, Discriminator, Generator, ModelError, joint_disc_input, weights_init)

MODES = ("plain", "components", "joint")
CHECKPOINT_FORMAT = 1


class GanError(Exception):
    """A user-facing problem (bad data, checkpoint or flags); one line saying what to do."""


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="DCGANs on faces: plain, per TV-flow state, or joint spectral bands",
                                add_help=add_help)
    p.add_argument("--mode", choices=MODES, default="plain", help="what the GAN generates (see the module docstring)")
    p.add_argument("--data-dir", default=None,
                   help="folder or zip in ImageFolder layout (e.g. ../shared/data/celeba.zip); default: torchvision CelebA")
    p.add_argument("--dataset", default="celeba", choices=("celeba", "folder"), help="dataset kind of --data-dir")
    p.add_argument("--split", default="train", help="split folder of --data-dir (torchvision split name when downloading)")
    p.add_argument("--download-root", default="./data", help="where torchvision downloads CelebA")
    p.add_argument("--subset", type=int, default=None, help="train on the first N images (after the hold-out)")
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
    p.add_argument("--tol", type=float, default=1e-4, help="duality gap per pixel of each ROF solve")
    p.add_argument("--cache-dir", default="cache", help="decoded images and spectral band caches")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-samples", type=int, default=64, help="size of the fixed-noise sample grid")
    p.add_argument("--log-every", type=int, default=10, help="steps per line of losses.jsonl")
    p.add_argument("--output-dir", default="runs/gan", help="where the run's files go")
    p.add_argument("--resume", default=None, help="checkpoint.pt (or its run folder) to continue from")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    return p


# ------------------------------------------------------------------------------------------- data

def load_split(dataset, split, data_dir, image_size, download_root, cache_dir, progress=True) -> data.ImageSet:
    """The whole split, grayscale, in file order (gan_test.py reads the same split for its held-out faces)."""
    try:
        return data.load_images(dataset, split, data_dir=data_dir, image_size=image_size, grayscale=True,
                                download_root=download_root, cache_dir=str(Path(cache_dir) / "decoded"),
                                progress=progress)
    except data.DataError as e:
        raise GanError(str(e)) from None


def load_faces(args) -> tuple:
    """The split's images (uint8) and the index range trained on: ``(images, n_train, source)``.

    Training uses ``images[:n_train]``; the last ``holdout`` images are reserved for evaluation.
    """
    imgs = load_split(args.dataset, args.split, args.data_dir, args.image_size, args.download_root, args.cache_dir,
                      not args.no_progress)
    if args.holdout < 0 or (args.subset is not None and args.subset < 1):
        raise GanError(f"--holdout must be >= 0 and --subset >= 1, got {args.holdout} and {args.subset}")
    n_all = len(imgs)
    avail = n_all - args.holdout
    if avail < 1:
        raise GanError(f"{args.data_dir or args.dataset}: {n_all} images leave none to train on after --holdout "
                       f"{args.holdout}; lower --holdout")
    n_train = avail if args.subset is None else min(args.subset, avail)
    if n_train < args.batch_size:
        raise GanError(f"only {n_train} training images (after --holdout {args.holdout}), fewer than --batch-size "
                       f"{args.batch_size}; lower --batch-size or --holdout")
    return imgs.images, n_train, imgs.source


def stage_names(args) -> list:
    if args.mode == "components":
        names = [f"u{n}" for n in range(args.states + 1)]
        return names if args.stage_order == "dissertation" else names[::-1]
    return ["image"]


def real_components(images_u8: torch.Tensor, args, source: str, device) -> torch.Tensor:
    """Cached spectral components of the training images as float32 (n, K, 1, H, W) in memory.

    components mode: the TV-flow states u_0..u_N; joint mode: phi_1..phi_K and the residual.
    """
    if args.mode == "components":
        comps = [f"u{n}" for n in range(args.states + 1)]
    else:
        comps = [f"phi{k}" for k in range(1, args.bands + 1)] + ["residual"]
    cached = bandcache.load_or_build(images_u8, cache_dir=Path(args.cache_dir) / "bands", lam=args.lam,
                                     components=comps, tol=args.tol, device=device,
                                     data_key=f"{source}[:{len(images_u8)}]", progress=not args.no_progress)
    # In RAM as float32: a batch is then a plain index, as cheap as for the images.
    return cached.to(torch.float32)


# ------------------------------------------------------------------------------------- networks

def model_args(args, scales=None) -> dict:
    m = {"mode": args.mode, "nz": args.nz, "ngf": args.ngf, "ndf": args.ndf, "image_size": args.image_size, "nc": 1,
         "stages": stage_names(args)}
    if args.mode == "joint":
        m["bands"] = args.bands
        m["scales"] = [float(s) for s in scales] if scales is not None else None
    if args.mode in ("joint", "components"):
        m["lam"] = args.lam
    return m


def build_generator(m: dict) -> nn.Module:
    """The generator a checkpoint's ``model_args`` describe (used by gan_test.py too)."""
    if m["mode"] == "joint":
        return BandGenerator(torch.tensor(m["scales"]), m["nz"], m["ngf"], m["nc"], m["image_size"])
    return Generator(m["nz"], m["ngf"], m["nc"], m["image_size"])


def build_discriminator(m: dict) -> nn.Module:
    nc = m["nc"] * (1 + m["bands"]) if m["mode"] == "joint" else m["nc"]
    return Discriminator(m["ndf"], nc, m["image_size"])


def generate(G: nn.Module, z: torch.Tensor) -> tuple:
    """Images (B, C, H, W) and, for a band generator, the components (else None).

    The generator runs in training mode, i.e. its batch norm uses the statistics of the batch ``z``, as in
    the DCGAN reference: early in training the running averages lag far behind (they start at mean 0,
    variance 1 while the activations are O(0.02)), and eval mode then yields flat grey images.
    """
    G.train()
    out = G(z)
    return out if isinstance(out, tuple) else (out, None)


# -------------------------------------------------------------------------------- checkpoints

def resolve_checkpoint(path) -> Path:
    p = Path(path)
    return p / "checkpoint.pt" if p.is_dir() else p


def load_gan_checkpoint(path) -> dict:
    """A gan.py checkpoint; :class:`GanError` for a missing, foreign or unreadable file."""
    p = resolve_checkpoint(path)
    if not p.exists():
        raise GanError(f"{p}: no generator checkpoint here; pass a run folder written by gan.py (with checkpoint.pt)")
    try:
        ckpt = training.load_checkpoint(p, "GAN checkpoint")
    except training.CheckpointError as e:
        raise GanError(str(e)) from None
    if ckpt.get("kind") != "gan" or "generators" not in ckpt:
        raise GanError(f"{p}: not a gan.py checkpoint (no generators in it); pass a run folder written by gan.py")
    return ckpt


def check_compatible(ckpt: dict, m: dict, path) -> None:
    """Resuming needs the same networks and the same kind of data; name the first flag that differs."""
    saved = ckpt["model_args"]
    for key, flag in (("mode", "--mode"), ("image_size", "--image-size"), ("nz", "--nz"), ("ngf", "--ngf"),
                      ("ndf", "--ndf"), ("stages", "--states/--stage-order"), ("bands", "--bands"), ("lam", "--lam")):
        if saved.get(key) != m.get(key):
            raise GanError(f"{path}: checkpoint was trained with {flag} {saved.get(key)}, this run asks for "
                           f"{m.get(key)}; use the same flags or another --output-dir")


# ------------------------------------------------------------------------------------ figures

def save_grid(x: torch.Tensor, path: Path, nrow: int = 8) -> None:
    import torchvision.utils as vutils
    data.atomic_write(path, lambda tmp: vutils.save_image(x.float().clamp(-1, 1), tmp, format="png", nrow=nrow,
                                                          normalize=True, value_range=(-1, 1), padding=2))


def save_band_grid(img: torch.Tensor, comps: torch.Tensor, scales: torch.Tensor, path: Path, n: int = 8) -> None:
    """Rows: samples; columns: image, phi_1..phi_K, residual (each band stretched to its own scale)."""
    cols = [img[:n].clamp(-1, 1)] + [comps[:n, k] / scales[k] for k in range(comps.shape[1])]
    save_grid(torch.stack(cols, 1).flatten(0, 1), path, nrow=len(cols))


def plot_losses(records: list, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rec = [r for r in records if "loss_d" in r and "epoch_seconds" not in r]
    if not rec:
        return
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
    data.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


# ------------------------------------------------------------------------------------ training

def stage_budgets(max_steps, n_stages: int) -> list:
    if max_steps is None:
        return [None] * n_stages
    return [max_steps * (s + 1) // n_stages - max_steps * s // n_stages for s in range(n_stages)]


def main(args) -> dict:
    try:
        device = training.resolve_device(args.device)
    except ValueError as e:
        raise GanError(str(e)) from None
    amp = device.type == "cuda" and not args.no_amp
    for flag, v in (("--epochs", args.epochs), ("--batch-size", args.batch_size), ("--states", args.states),
                    ("--bands", args.bands), ("--nz", args.nz), ("--ngf", args.ngf), ("--ndf", args.ndf)):
        if v < 1:
            raise GanError(f"{flag} must be positive, got {v}")
    if args.max_steps is not None and args.max_steps < len(stage_names(args)):
        raise GanError(f"--max-steps {args.max_steps} leaves a stage without updates; give at least "
                       f"{len(stage_names(args))}")
    ckpt = None
    if args.resume:
        # Checked before the data and band cache are loaded, so that a wrong checkpoint fails at once.
        ckpt = load_gan_checkpoint(args.resume)
        check_compatible(ckpt, model_args(args), resolve_checkpoint(args.resume))
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    images_u8, n_train, source = load_faces(args)
    train_u8 = images_u8[:n_train]
    real_img = data.to_unit_range(train_u8)
    comps = real_components(train_u8, args, source, device) if args.mode != "plain" else None
    scales = None
    if args.mode == "joint":
        # The largest magnitude of each component bounds the generator's tanh output range.
        scales = comps.abs().amax(dim=(0, 2, 3, 4)).clamp_min(1e-3)
    m = model_args(args, scales)
    # The training set lives on the device (a few hundred MB at most): a batch is one index operation.
    real_img = real_img.to(device)
    comps = comps.to(device) if comps is not None else None

    if ckpt is not None and m.get("scales") is not None:
        # The scales are part of the generator: keep the trained ones, not this data's.
        m["scales"] = ckpt["model_args"]["scales"]
    try:
        G, D = build_generator(m).to(device), build_discriminator(m).to(device)
    except ModelError as e:
        raise GanError(str(e)) from None
    G.apply(weights_init)
    D.apply(weights_init)
    opt_g = torch.optim.Adam(G.parameters(), lr=args.lr, betas=(args.beta1, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=args.lr, betas=(args.beta1, 0.999))
    scaler_g = torch.amp.GradScaler("cuda", enabled=amp)
    scaler_d = torch.amp.GradScaler("cuda", enabled=amp)
    stages = m["stages"]
    budgets = stage_budgets(args.max_steps, len(stages))
    fixed_noise = torch.randn(args.n_samples, args.nz, 1, 1, generator=torch.Generator().manual_seed(args.seed))
    zgen = torch.Generator().manual_seed(training.seed_for(args.seed, 11))
    state = {"stage": 0, "epoch": 0, "stage_step": 0, "global_step": 0}
    generators = {}
    records = []
    if ckpt is not None:
        G.load_state_dict(ckpt["generator"])
        D.load_state_dict(ckpt["discriminator"])
        opt_g.load_state_dict(ckpt["opt_g"])
        opt_d.load_state_dict(ckpt["opt_d"])
        scaler_g.load_state_dict(ckpt["scaler_g"])
        scaler_d.load_state_dict(ckpt["scaler_d"])
        fixed_noise = ckpt["fixed_noise"]
        zgen.set_state(ckpt["zgen"])
        training.set_rng_state(ckpt["rng"], device)
        state = dict(ckpt["state"])
        generators = dict(ckpt["generators"])
        records = [r for r in _read_jsonl(out / "losses.jsonl") if r.get("global_step", 0) <= state["global_step"]]
        print(f"resumed from {resolve_checkpoint(args.resume)}: stage {stages[state['stage']]} after "
              f"{state['epoch']} epochs, {state['global_step']} generator updates done")
    training.write_json({**vars(args), "git": training.git_commit(), "n_train": n_train, "source": source,
                         "model_args": m}, out / "args.json")

    def save():
        ckpt_out = {"kind": "gan", "format": CHECKPOINT_FORMAT, "model_args": m, "args": vars(args),
                    "generator": G.state_dict(), "discriminator": D.state_dict(), "opt_g": opt_g.state_dict(),
                    "opt_d": opt_d.state_dict(), "scaler_g": scaler_g.state_dict(), "scaler_d": scaler_d.state_dict(),
                    "generators": generators, "fixed_noise": fixed_noise, "zgen": zgen.get_state(),
                    "rng": training.rng_state(device), "state": state, "n_train": n_train, "source": source}
        training.save_checkpoint(ckpt_out, out / "checkpoint.pt")
        training.write_jsonl(records, out / "losses.jsonl")
        plot_losses(records, out / "losses.png", f"{args.mode} DCGAN")

    bce = nn.BCEWithLogitsLoss()
    n = n_train
    bs = args.batch_size
    from tqdm import tqdm
    # A resumed run continues its current stage (which a larger --epochs or --max-steps may extend); the
    # earlier stages are final once a later one has started from their weights.
    for s in range(state["stage"], len(stages)):
        if s != state["stage"]:
            state.update(stage=s, epoch=0, stage_step=0)
        name = stages[s]
        if args.mode == "components":
            real = comps[:, int(name[1:])]
        else:
            real = real_img
        budget = budgets[s]
        while state["epoch"] < args.epochs and (budget is None or state["stage_step"] < budget):
            epoch = state["epoch"]
            G.train()
            D.train()
            batches = [b for b in training.epoch_batches(n, bs, training.seed_for(args.seed, s), epoch, training.Dist())
                       if len(b) == bs]
            if budget is not None:
                batches = batches[:budget - state["stage_step"]]
            sums = torch.zeros(4, dtype=torch.float64)
            window = torch.zeros(4, dtype=torch.float64)
            n_win = 0
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for idx in tqdm(batches, desc=f"{args.mode} {name} epoch {epoch + 1}/{args.epochs}", unit="batch",
                            disable=args.no_progress, leave=False, mininterval=1.0):
                idx = idx.to(device)
                x = real[idx]
                if args.mode == "joint":
                    x = joint_disc_input(x, comps[idx], G.scales)
                z = torch.randn(bs, args.nz, 1, 1, generator=zgen).to(device)
                ones = torch.ones(bs, device=device)
                zeros = torch.zeros(bs, device=device)
                # Discriminator step: real batch labelled 1, generated batch 0 (Goodfellow et al. 2014).
                opt_d.zero_grad(set_to_none=True)
                with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                    out_real = D(x)
                    img, cmp = generate(G, z)
                    fake = joint_disc_input(img, cmp, G.scales) if cmp is not None else img
                    out_fake = D(fake.detach())
                    loss_d = bce(out_real.float(), ones) + bce(out_fake.float(), zeros)
                scaler_d.scale(loss_d).backward()
                scaler_d.step(opt_d)
                scaler_d.update()
                # Generator step with the non-saturating loss -log D(G(z)) (DCGAN practice).
                opt_g.zero_grad(set_to_none=True)
                with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                    out_g = D(fake)
                    loss_g = bce(out_g.float(), ones)
                scaler_g.scale(loss_g).backward()
                scaler_g.step(opt_g)
                scaler_g.update()
                stats = torch.stack([loss_d.detach(), loss_g.detach(), torch.sigmoid(out_real.detach().float()).mean(),
                                     torch.sigmoid(out_fake.detach().float()).mean()]).double().cpu()
                sums += stats
                window += stats
                n_win += 1
                state["stage_step"] += 1
                state["global_step"] += 1
                if n_win == args.log_every:
                    records.append(_record(name, epoch, state, window / n_win))
                    window.zero_()
                    n_win = 0
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
            if n_win:
                records.append(_record(name, epoch, state, window / n_win))
            state["epoch"] += 1
            ep = _record(name, epoch, state, sums / max(len(batches), 1))
            ep.update(epoch_seconds=round(seconds, 3), steps=len(batches),
                      seconds_per_step=round(seconds / max(len(batches), 1), 5))
            records.append(ep)
            print(f"{args.mode} {name} epoch {epoch + 1}: loss_D {ep['loss_d']:.3f} loss_G {ep['loss_g']:.3f} "
                  f"D(x) {ep['d_real']:.3f} D(G(z)) {ep['d_fake']:.3f}  {len(batches)} steps in {seconds:.1f} s")
            with torch.no_grad():
                img, cmp = generate(G, fixed_noise.to(device))
            save_grid(img.cpu(), out / f"samples_{name}_e{state['epoch']:03d}.png")
            if cmp is not None:
                save_band_grid(img.cpu(), cmp.cpu(), G.scales.cpu(), out / f"bands_e{state['epoch']:03d}.png")
            generators[name] = {k: v.detach().cpu().clone() for k, v in G.state_dict().items()}
            save()
        # Stage done: the next stage starts from these weights and optimiser states (the dissertation's
        # initialisation from the previous state's GAN).
        generators[name] = {k: v.detach().cpu().clone() for k, v in G.state_dict().items()}
        save()
    print(f"done: {state['global_step']} generator updates; checkpoint {out / 'checkpoint.pt'}")
    return {"global_step": state["global_step"], "records": records}


def _record(stage: str, epoch: int, state: dict, s: torch.Tensor) -> dict:
    return {"stage": stage, "epoch": epoch + 1, "global_step": state["global_step"], "loss_d": float(s[0]),
            "loss_g": float(s[1]), "d_real": float(s[2]), "d_fake": float(s[3])}


def _read_jsonl(path: Path) -> list:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    try:
        main(args)
    except (GanError, ModelError, data.DataError) as e:
        sys.exit(f"error: {e}")
