"""The report's figures, drawn from the summary records; the same records give the same bytes.

PNG files carry no software/version text or time (``metadata={"Software": None}``), matplotlib's
defaults are used whatever the local matplotlibrc says, and everything is drawn in a fixed order,
so ``--report-only`` on another clone writes identical files.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Optional

from io_utils import atomic_write_bytes
from plots import draw_confusion

from .profiles import CONDITIONS, LABELS
from .summary import DatasetSummary, Row, Summary

__all__ = ["accuracy", "curves", "confusion", "ablation", "COLORS"]

COLORS = {c: f"C{i}" for i, c in enumerate(CONDITIONS)}
DPI = 90


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
    """Each seed as a dot, the mean ± std as a square with error bar, one column per row."""
    for i, (row, color) in enumerate(zip(rows, colors)):
        xs = [100 * r.test_acc for r in row.runs]
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
            ax.set(title=d.title, ylabel="test accuracy (%)")
        fig.suptitle("test accuracy: seeds (dots), mean ± std (squares)", fontsize=9)
        fig.tight_layout()
        _save(fig, path)
    return path.name


def curves(d: DatasetSummary, path: Path) -> Optional[str]:
    """Test accuracy per epoch, mean over seeds with a ± std band, for the four conditions."""
    plt = _plt()
    if not d.curves:
        return None
    with plt.style.context("default"):
        fig, ax = plt.subplots(figsize=(5.6, 3.6))
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
        from matplotlib.ticker import MaxNLocator
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="epoch", ylabel="test accuracy (%)", title=f"{d.title}: test accuracy per epoch (mean ± std)")
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        _save(fig, path)
    return path.name


def confusion(d: DatasetSummary, path: Path) -> Optional[str]:
    """Row-normalised confusion matrices of the tested checkpoints, side by side."""
    plt = _plt()
    if not d.confusion:
        return None
    with plt.style.context("default"):
        fig, axes = plt.subplots(1, len(d.confusion), figsize=(4.2 * len(d.confusion), 4.0), squeeze=False)
        for ax, r in zip(axes[0], d.confusion):
            classes, rows = r.confusion
            draw_confusion(ax, rows, classes, f"{LABELS[r.condition]}, seed {r.seed}: top-1 {100 * r.test_top1:.1f}%",
                           max_labels=12, label_chars=10, fontsize=6, annotate=False)
            ax.title.set_fontsize(8)
        fig.tight_layout()
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
