"""The report's figures, drawn from the summary records; the same records give the same bytes.

PNG files carry no software/version text or time (``metadata={"Software": None}``), matplotlib's
defaults are used whatever the local matplotlibrc says, and everything is drawn in a fixed order,
so ``--report-only`` on another clone writes identical files.
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from toolkit.io_utils import atomic_write_bytes
from toolkit.plots import confusion_colorbar, draw_confusion

from .profiles import CONDITIONS, LABELS, PROTOCOL
from .stats import LAST_K
from .summary import DatasetSummary, Row, Summary

__all__ = ["accuracy", "curves", "delta", "confusion", "ablation", "robustness", "COLORS"]

COLORS = {c: f"C{i}" for i, c in enumerate(CONDITIONS + PROTOCOL)}
DPI = 90
MAX_CLASSES = 12                  # more classes than this cannot be labelled legibly: no confusion figure


@contextmanager
def _subplots(*args, **kwargs):
    """A figure in matplotlib's default style (the report's look does not depend on the user's rc)."""
    plt = _plt()
    with plt.style.context("default"):
        yield plt.subplots(*args, **kwargs)


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> None:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _dots(ax, rows: list, colors: list) -> None:
    """Each seed's primary metric as a dot, the mean ± std as a square with error bar, one column per row."""
    for i, (row, color) in enumerate(zip(rows, colors)):
        xs = [100 * r.primary for r in row.runs]
        ax.plot([i - 0.1] * len(xs), xs, "o", color=color, alpha=0.5, ms=4)
        ax.errorbar([i + 0.1], [100 * row.acc.mean], yerr=[100 * (row.acc.sd or 0)], fmt="s", color=color, capsize=4)
    ax.set_xticks(range(len(rows)), [row.label for row in rows], rotation=20, fontsize=8)
    ax.grid(alpha=0.3)


def accuracy(s: Summary, path: Path) -> Optional[str]:
    """Test accuracy per condition, one panel per dataset."""
    plt = _plt()
    sets = [d for d in s.datasets if d.main]
    if not sets:
        return None
    with plt.style.context("default"):
        fig, axes = plt.subplots(1, len(sets), figsize=(3.8 * len(sets), 3.3), squeeze=False)
        for ax, d in zip(axes[0], sets):
            _dots(ax, list(d.main), [COLORS[r.key] for r in d.main])
            ax.set(title=d.title, ylabel="test accuracy, last 5 epochs (%)")
        fig.suptitle("test accuracy averaged over each run's last 5 epochs: seeds (dots), mean ± std (squares)",
                     fontsize=9)
        fig.tight_layout()
        _save(fig, path)
    return path.name


def _finish_epochs(fig, ax, path: Path, ylabel: str, title: str) -> None:
    """Integer epochs on x, labels, grid and legend; then save."""
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def curves(d: DatasetSummary, path: Path) -> Optional[str]:
    """Test accuracy per epoch, mean over seeds with a ± std band, for the main conditions."""
    if not d.curves:
        return None
    with _subplots(figsize=(5.6, 3.6)) as (fig, ax):
        for c in CONDITIONS:
            if c not in d.curves:
                continue
            ep, m, sd = d.curves[c]
            m100 = [100 * v for v in m]
            n = len(next(r for r in d.main if r.key == c).runs)
            ax.plot(ep, m100, "o-", ms=3, color=COLORS[c], label=f"{LABELS[c]} ({n} seeds)")
            if all(v is not None for v in sd):
                ax.fill_between(ep, [a - 100 * b for a, b in zip(m100, sd)], [a + 100 * b for a, b in zip(m100, sd)],
                                color=COLORS[c], alpha=0.15, lw=0)
        _finish_epochs(fig, ax, path, "test accuracy (%)", f"{d.title}: test accuracy per epoch (mean ± std)")
    return path.name


def delta(d: DatasetSummary, path: Path) -> Optional[str]:
    """spectral - plain test accuracy per epoch with its 95% Welch CI, and the last-5 window shaded."""
    if not d.delta_curve:
        return None
    with _subplots(figsize=(5.6, 3.2)) as (fig, ax):
        ep = [e for e, _ in d.delta_curve]
        ax.fill_between(ep, [100 * c.low for _, c in d.delta_curve], [100 * c.high for _, c in d.delta_curve],
                        color="C1", alpha=0.2, lw=0, label="95% CI (Welch)")
        ax.plot(ep, [100 * c.diff for _, c in d.delta_curve], "o-", ms=3, color="C1", label="spectral - plain")
        ax.axhline(0, color="0.4", lw=1)
        ax.axvspan(ep[max(0, len(ep) - LAST_K)] - 0.5, ep[-1] + 0.5, color="0.9", lw=0, zorder=0,
                   label=f"last {LAST_K} epochs (primary metric)")
        _finish_epochs(fig, ax, path, "Δ test accuracy (points)", f"{d.title}: spectral - plain per epoch")
    return path.name


def confusion(d: DatasetSummary, path: Path) -> Optional[str]:
    """Row-normalised confusion matrices of the tested checkpoints side by side (:func:`plots.draw_confusion`),
    with class names and a colour bar; none for more than MAX_CLASSES classes."""
    plt = _plt()
    if not d.confusion or len(d.confusion[0].confusion[0]) > MAX_CLASSES:
        return None
    with plt.style.context("default"):
        fig, axes = plt.subplots(1, len(d.confusion), figsize=(4.6 * len(d.confusion) + 0.8, 4.6), squeeze=False,
                                 layout="constrained")
        for ax, r in zip(axes[0], d.confusion):
            classes, rows = r.confusion
            im = draw_confusion(ax, rows, classes, f"{LABELS[r.condition]}, seed {r.seed}: "
                                                  f"top-1 {100 * r.test_top1:.1f}%",
                                max_labels=MAX_CLASSES, annotate=False)
            ax.title.set_fontsize(8)
        confusion_colorbar(fig, im, list(axes[0]), fraction=0.03)
        _save(fig, path)
    return path.name


def ablation(d: DatasetSummary, path: Path) -> Optional[str]:
    """Test accuracy per gain range, against the plain runs' mean ± std (grey band)."""
    plt = _plt()
    rows: list[Row] = list(d.ablation)
    plain = next((r for r in d.main if r.key == "plain"), None)
    if not rows:
        return None
    with plt.style.context("default"):
        fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(rows), 3.4))
        if plain is not None and plain.acc.mean is not None:
            m, sd = 100 * plain.acc.mean, 100 * (plain.acc.sd or 0)
            ax.axhspan(m - sd, m + sd, color="0.85", lw=0, label="plain mean ± std")
            ax.axhline(m, color="0.5", lw=1)
            ax.legend(fontsize=7)
        _dots(ax, [Row(r.key, f"k in [{r.key.replace(',', ', ')})", r.runs, r.acc, r.train_acc, r.images_per_s,
                       r.vs_plain) for r in rows], ["C1"] * len(rows))
        ax.set(ylabel="test accuracy (%)", title=f"{d.title}: gain range of bands 1-2 (spectral, replace)")
        ax.title.set_fontsize(9)
        fig.tight_layout()
        _save(fig, path)
    return path.name


def robustness(d: DatasetSummary, path: Path) -> Optional[str]:
    """Δ accuracy vs plain on corrupted images, for the mean and per family: one point with its 95% CI bar per
    condition, side by side within each group."""
    rb = d.robustness
    if rb is None or not rb.contrasts:
        return None
    groups = ("mean",) + rb.families
    others = [row for row in rb.rows if row.key != "plain"]
    width = 0.8 / len(others)
    points = {i: [(j - 0.4 + width * (i + 0.5), c.comparison) for j, m in enumerate(groups)
                  if (c := rb.contrasts.get((row.key, m))) is not None and c.comparison is not None]
              for i, row in enumerate(others)}
    if not any(points.values()):                  # no condition has two seeds on both sides yet
        return None
    with _subplots(figsize=(1.6 + 0.35 * len(groups) * (len(others) + 1), 3.4)) as (fig, ax):
        for i, row in enumerate(others):
            pts = points[i]
            if not pts:
                continue
            ax.errorbar([x for x, _ in pts], [100 * k.diff for _, k in pts],
                        yerr=[[100 * (k.diff - k.low) for _, k in pts], [100 * (k.high - k.diff) for _, k in pts]],
                        fmt="o", ms=4, capsize=3, color=COLORS.get(row.key, f"C{len(COLORS) + i}"), label=row.label)
        ax.axhline(0, color="0.4", lw=1)
        ax.set_xlim(-0.5, len(groups) - 0.5)      # every group's slot, even while only one condition has points
        ax.set_xticks(range(len(groups)), ["mean corruption" if g == "mean" else g for g in groups], fontsize=8)
        ax.set(ylabel="Δ accuracy vs plain (points)", title=f"{d.title}: corrupted test images, Δ vs plain, 95% CI")
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        _save(fig, path)
    return path.name
