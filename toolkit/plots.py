"""Every figure the toolkit draws, one function per kind; the scripts and the report call these.

Matplotlib (the Agg backend, no display needed) and torch are imported inside the functions, so
importing this module costs nothing (the report's figures need no torch); files are written
atomically by :func:`io_utils.save_figure`.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.io_utils import atomic_write, save_figure

__all__ = ["plot_curves", "draw_confusion", "confusion_colorbar", "plot_confusion", "plot_robustness",
           "plot_fourier_heatmaps", "save_grid", "save_band_grid", "plot_losses", "plot_samples_spectra", "WNID_NAMES"]

# Imagenette's class folders are ImageNet WordNet ids; a reader wants the names. Parachute goes by two ids: the
# local archive (../shared/data/README.md) names its folder n03888257, ImageNet's parachute synset; fast.ai's
# published class list writes n03888605.
WNID_NAMES = {"n01440764": "tench", "n02102040": "English springer", "n02979186": "cassette player",
              "n03000684": "chain saw", "n03028079": "church", "n03394916": "French horn",
              "n03417042": "garbage truck", "n03425413": "gas pump", "n03445777": "golf ball",
              "n03888257": "parachute", "n03888605": "parachute"}


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


# --------------------------------------------------------------------------------- classifiers

def plot_curves(records: list, path: Path, title: str = "") -> None:
    """Loss and accuracy per epoch (train, and test where evaluated)."""
    plt = _plt()
    ep = [r["epoch"] for r in records]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    a1.plot(ep, [r["loss"] for r in records], "o-", label="train")
    a2.plot(ep, [r["train_acc"] for r in records], "o-", label="train")
    tests = [(r["epoch"], r["test_loss"], r["test_acc"]) for r in records if "test_acc" in r]
    if tests:
        a1.plot([t[0] for t in tests], [t[1] for t in tests], "s-", label="test")
        a2.plot([t[0] for t in tests], [t[2] for t in tests], "s-", label="test")
    a1.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    a2.set(xlabel="epoch", ylabel="top-1 accuracy", title="accuracy", ylim=(0, 1))
    from matplotlib.ticker import MaxNLocator
    for a in (a1, a2):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.grid(alpha=0.3)
        a.legend()
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def draw_confusion(ax, counts, classes, title: str, *, max_labels: int = 20, label_chars: int = 16,
                   fontsize: float = 7, annotate: bool = True):
    """A row-normalised confusion matrix on ``ax`` (true class down, predicted across); returns the image.

    ``counts`` is the (K, K) matrix of counts (tensor, array or nested lists). Class names label the
    axes up to ``max_labels`` classes (a WordNet id by its name, :data:`WNID_NAMES`), cut to
    ``label_chars`` characters; ``annotate`` writes each non-zero count in its cell.
    """
    import numpy as np
    cm = np.asarray(counts, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    k = len(cm)
    if k <= max_labels:
        names = [WNID_NAMES.get(str(c), str(c))[:label_chars] for c in classes]
        ax.set_xticks(range(k), names, rotation=90, fontsize=fontsize)
        ax.set_yticks(range(k), names, fontsize=fontsize)
        if annotate:
            for i in range(k):
                for j in range(k):
                    if cm[i, j]:
                        ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=fontsize - 1,
                                color="white" if norm[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return im


def confusion_colorbar(fig, im, axes, fraction: float = 0.046) -> None:
    """The colour bar of :func:`draw_confusion`'s matrices (one or several panels sharing the scale 0..1)."""
    fig.colorbar(im, ax=axes, fraction=fraction, label="fraction of the true class")


def plot_confusion(cm: torch.Tensor, classes: list, path: Path, title: str = "") -> None:
    """The test scripts' ``confusion_matrix.png``: one matrix with its counts and a colour bar."""
    plt = _plt()
    size = min(16, max(4.5, 0.35 * cm.shape[0]))
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = draw_confusion(ax, cm, classes, title or "confusion matrix")
    confusion_colorbar(fig, im, ax)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def plot_robustness(result: dict, path: Path, title: str = "") -> None:
    """The test scripts' ``robustness.png``: accuracy against severity, one line per corruption, a colour per family.

    ``result`` is a ``robustness.json`` (:mod:`toolkit.robustness`); the clean accuracy and the band edits
    are horizontal lines, and the corruptions left out are named below the axes.
    """
    plt = _plt()
    family_colors = {"noise": "tab:blue", "blur": "tab:orange", "weather": "tab:green", "digital": "tab:red"}
    styles = ["o-", "s--", "^-.", "D:"]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    seen: dict = {}
    for name, v in result["corruptions"].items():
        k = seen[v["family"]] = seen.get(v["family"], -1) + 1
        ax.plot(range(1, len(v["accuracy"]) + 1), v["accuracy"], styles[k % len(styles)], ms=4,
                color=family_colors.get(v["family"], "0.4"), label=f"{name} ({v['family']})")
    ax.axhline(result["clean"], color="black", lw=1.2, label=f"clean {result['clean']:.3f}")
    for (name, acc), ls in zip(result["bands"].items(), (":", "-.")):
        ax.axhline(acc, color="0.45", lw=1.2, ls=ls, label=f"bands 1-2 {name} {acc:.3f}")
    mca = result.get("mean_corruption_accuracy")
    ax.set(xlabel="severity", ylabel="top-1 accuracy", ylim=(0, 1), xticks=range(1, 6),
           title=title + (f"  (mean corruption accuracy {mca:.3f})" if mca is not None else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.01, 0.5))
    if result.get("left_out"):
        ax.text(0, -0.16, "left out: " + ", ".join(result["left_out"]), transform=ax.transAxes, fontsize=6.5,
                va="top", wrap=True)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def _frequency_panel(ax, m, title: str, **imshow):
    """A centred (fftshift) frequency map on axes labelled in cycles per image; returns the image."""
    h, w = m.shape
    im = ax.imshow(m, extent=(-(w // 2) - 0.5, w - w // 2 - 0.5, h - h // 2 - 0.5, -(h // 2) - 0.5), **imshow)
    ax.set_title(title, fontsize=9)
    return im


def plot_fourier_heatmaps(maps: dict, path: Path, title: str = "", reference: str = "plain") -> None:
    """Fourier heat maps (test error per frequency, zero frequency at the centre), one panel per condition
    on one colour scale, and below, each condition minus ``reference`` where that condition is present."""
    import numpy as np
    plt = _plt()
    maps = {k: np.asarray(v, dtype=float) for k, v in maps.items()}
    diffs = {k: v - maps[reference] for k, v in maps.items()
             if reference in maps and k != reference and v.shape == maps[reference].shape}
    cols, rows = len(maps), 1 + bool(diffs)
    fig, axes = plt.subplots(rows, cols, figsize=(2.8 * cols + 1, 2.7 * rows + 0.4), squeeze=False,
                             layout="constrained")
    for ax in axes[:, 0]:
        ax.set_ylabel("vertical frequency")
    for ax in axes[-1]:
        ax.set_xlabel("horizontal frequency")
    top = max(float(np.nanmax(v)) for v in maps.values()) or 1.0
    for ax, (name, m) in zip(axes[0], maps.items()):
        im = _frequency_panel(ax, m, name, cmap="viridis", vmin=0, vmax=top)
    fig.colorbar(im, ax=list(axes[0]), fraction=0.046, label="test error")
    if diffs:
        span = max(float(np.nanmax(np.abs(d))) for d in diffs.values()) or 1.0
        for ax, (name, d) in zip(axes[1], diffs.items()):
            im = _frequency_panel(ax, d, f"{name} - {reference}", cmap="RdBu_r", vmin=-span, vmax=span)
        for top_ax, ax in zip(axes[0][len(diffs):], axes[1][len(diffs):]):
            ax.axis("off")
            top_ax.set_xlabel("horizontal frequency")
        fig.colorbar(im, ax=list(axes[1]), fraction=0.046, label="error difference")
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure(fig, path, dpi=110)


# ---------------------------------------------------------------------------------------- GANs

def save_grid(x: torch.Tensor, path: Path, nrow: int = 8) -> None:
    """Images in [-1, 1], ``nrow`` per row, as one PNG."""
    import torchvision.utils as vutils
    atomic_write(path, lambda tmp: vutils.save_image(x.float().clamp(-1, 1), tmp, format="png", nrow=nrow,
                                                     normalize=True, value_range=(-1, 1), padding=2))


def save_band_grid(img: torch.Tensor, comps: torch.Tensor, scales: torch.Tensor, path: Path, n: int = 8) -> None:
    """Rows: samples; columns: image, phi_1..phi_K, residual (each band stretched to its own scale)."""
    import torch
    cols = [img[:n].clamp(-1, 1)] + [comps[:n, k] / scales[k] for k in range(comps.shape[1])]
    save_grid(torch.stack(cols, 1).flatten(0, 1), path, nrow=len(cols))


def plot_losses(records: list, path: Path, title: str) -> None:
    """Discriminator and generator loss against generator updates; dashed lines where a stage begins."""
    plt = _plt()
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


def plot_samples_spectra(sets: dict, spectra: dict, t: torch.Tensor, path: Path, n_show: int) -> None:
    """gan_test.py's figure: a grid of samples per set, and below, every set's mean TV spectrum S(t)."""
    plt = _plt()
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
