"""RESULTS.md and the README block, rendered from the summary records, one function per section.

The text is a pure function of the ledger (and the committed throughput measurement): no time of
day, no machine paths (datasets by archive name and sha256, files by repository-relative path), a
fixed order; ``python run_experiments.py --report-only`` on a fresh clone writes the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from io_utils import atomic_write_text, read_json

from . import figures
from .plan import REPO
from .profiles import LABELS, MAIN_GAINS
from .stats import ALPHA, Comparison, Spread
from .summary import DatasetSummary, Summary

__all__ = ["README_START", "README_END", "write", "render", "readme_block", "update_readme"]

README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
THROUGHPUT = REPO / "results" / "throughput_cpu.json"


# ------------------------------------------------------------------------------------- format

def _pct(x: Optional[float]) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _pm(s: Spread) -> str:
    if s.mean is None:
        return "–"
    return f"{100 * s.mean:.1f} ± {100 * s.sd:.1f}" if s.sd is not None else f"{100 * s.mean:.1f} (1 seed)"


def _p(p: Optional[float]) -> str:
    return "–" if p is None else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def _diff(c: Optional[Comparison]) -> str:
    if c is None:
        return "–"
    return f"{100 * c.diff:+.1f} [{100 * c.low:+.1f}, {100 * c.high:+.1f}]"


def _rate(s: Spread) -> str:
    return "–" if s.mean is None else f"{s.mean:,.0f}"


def _duration(seconds: float) -> str:
    m = round(seconds / 60)
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{m} min"


def _flags(d: DatasetSummary) -> dict:
    return dict(d.plan.budget)


# ----------------------------------------------------------------------------------- sections

def _header(s: Summary) -> list:
    p = s.profile
    c = s.counts
    out = [f"# Results: does spectral TV augmentation help? (profile `{p.name}`)", "",
           f"Written by `python run_experiments.py --profile {p.name} --report-only` from the run ledger "
           f"`results/runs/{p.name}/`; do not edit by hand. Profile: {p.description.rstrip('.')}.", ""]
    if c["done"] == 0 and not s.runs:
        out += [f"**No runs yet.** The ledger holds no run of this profile: 0 of {s.planned} planned jobs are "
                f"done. Start (or continue) the sweep with `python run_experiments.py --profile {p.name} --commit`; "
                f"every finished job is committed to the ledger and this report is rebuilt from it.", ""]
    else:
        out += [f"**Status:** {c['done']} of {s.planned} planned jobs done, {c['pending']} pending, {c['stale']} stale "
                f"(made by code or settings that have changed since; kept out of the tables, listed at the end). "
                f"`python run_experiments.py --profile {p.name} --dry-run` lists them.", ""]
    return out


def _throughput_note(p) -> list:
    tp = read_json(THROUGHPUT) if p.name == "scale" else None
    if not tp:
        return []
    best = {(r["image_size"], r["batch"], r["layout"]): r for r in tp["best"]}
    rows = ["| image size | batch | 1 run × 2 threads | 2 runs × 1 thread |", "|---:|---:|---:|---:|"]
    for size, batch in sorted({k[:2] for k in best}):
        cells = [best.get((size, batch, lay)) for lay in ("1x2", "2x1")]
        rows.append(f"| {size} | {batch} | " + " | ".join(
            "–" if c is None else f"{c['images_per_s']:,.0f} (tries: {', '.join(f'{t:,.0f}' for t in c['tries'])})"
            for c in cells) + " |")
    return ["The batch size and the layout (runs at once × threads) were chosen by measuring training images/s "
            f"of this network, summed over the runs, with `{tp['command']}` ({tp['machine']['cpu']}, "
            f"{tp['machine']['cores']} cores, {tp['measured']}; `results/throughput_cpu.json`). The best of the "
            "tries counts: other work on the shared machine only slows a try down, a 2-thread run most.", ""] + rows + [""]


def _setup(s: Summary) -> list:
    out = ["## Setup", "", "| dataset | training images | size | epochs | batch | Adam lr | evaluated on | seeds | "
           "jobs done / pending / stale |", "|---|---:|---:|---:|---:|---:|---|---:|---|"]
    for d in s.datasets:
        f, pl = _flags(d), d.plan
        n = f"{f['subset']:,}" if f.get("subset") else "all"
        seeds = len(pl.seeds) + len(pl.extra_seeds)
        out.append(f"| {d.title} | {n} | {f['image-size']}×{f['image-size']} | {f['epochs']} | {f['batch-size']} | "
                   f"{f['lr']:g} | {pl.eval_note} | {seeds} | {d.counts['done']} / {d.counts['pending']} / "
                   f"{d.counts['stale']} |")
    out += ["", "Conditions, all at the same budget (images, epochs, steps): **plain**; **spectral**: each training "
            "image replaced with probability 0.5 by its spectral TV augmentation (bands 1-2 of the TV flow with "
            "λ = 7 amplified by integer gains k in {3, 4}, drawn per image); **crop+flip**: random crop (4 px "
            "reflect padding per 32 px) and horizontal flip, the standard augmentation and the *positive "
            "control*; **spectral + crop+flip**: both. Each seed draws its own training subset, initialisation, "
            "batches and augmentation; the evaluation images are the same for every run. Δ is the difference "
            f"of mean test accuracy to plain in percentage points with its 95% confidence interval; p is "
            f"Welch's t-test (significant below {ALPHA}).", ""]
    out += ["How fast the TV engine itself is (`pock.rof`, `pock.spectral` against scikit-image and the "
            "dissertation's solver) is measured by `bench_pock.py`: see the README's "
            "[benchmark section](README.md#benchmark-of-the-tv-engine).", ""]
    return out + _throughput_note(s.profile)


def _provenance(s: Summary) -> list:
    if not s.machines:
        return []
    out = ["## Provenance", ""]
    out.append("- machines: " + "; ".join(s.machines) + "; " + "; ".join(s.layouts))
    out.append("- data: " + ", ".join(f"`{n}` (sha256 `{h}`)" for n, h in s.data))
    out.append("- code: every run in the tables executed the code as it is now: the fingerprint of the files it ran "
               "(their syntax without comments and docstrings, `experiments/fingerprint.py`) matches them; the runs "
               "started from commit " + " to ".join(f"`{c[:10]}`" for c in s.commits))
    out.append(f"- sweep time: {_duration(s.wall_seconds)} of wall-clock time with at least one run going "
               f"(runs' own times add up to {_duration(sum(r.seconds for r in s.runs if r.status == 'current'))})")
    return out + [""]


def _main_table(d: DatasetSummary) -> list:
    out = ["| condition | seeds | test accuracy % | Δ vs plain, points [95% CI] | Welch p | final train accuracy % "
           "| training images/s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in d.main:
        out.append(f"| {r.label} | {r.acc.n} | {_pm(r.acc)} | {_diff(r.vs_plain)} | "
                   f"{_p(r.vs_plain.p if r.vs_plain else None)} | {_pm(r.train_acc)} | {_rate(r.images_per_s)} |")
    return out + [""]


def _control_sentence(d: DatasetSummary) -> str:
    c = d.control
    if c is None:
        return ("**Positive control:** not enough finished seeds yet (crop+flip and plain need two each), so it is "
                "not yet known whether this budget can show an augmentation effect.")
    numbers = f"crop+flip {100 * c.diff:+.1f} points vs plain (95% CI [{100 * c.low:+.1f}, {100 * c.high:+.1f}], " \
              f"Welch p = {_p(c.p)})"
    if c.significant and c.diff > 0:
        return f"**Positive control:** {numbers}: this budget **can** detect an augmentation effect."
    return (f"**Positive control:** {numbers}: not a significant gain, so this budget **cannot** show that an "
            f"augmentation helps, and a null result for the spectral augmentation here says nothing.")


def _concat(d: DatasetSummary) -> list:
    plain = next((r for r in d.main if r.key == "plain"), None)
    if d.concat is None or plain is None:
        return []
    f = _flags(d)
    out = [f"The dissertation's own budget: plain for {f['epochs']} epochs against *concat* for "
           f"{d.plan.concat_epochs} epochs, where every step trains the batch together with its augmented copy "
           f"(so each epoch trains twice the images).", "",
           "| run | seeds | epochs | steps | images trained | test accuracy % | Δ vs plain [95% CI] | Welch p |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row, factor in ((plain, 1), (d.concat, 2)):
        r0 = row.runs[0]
        out.append(f"| {row.label} | {row.acc.n} | {r0.epochs} | {r0.steps:,} | "
                   f"{factor * r0.train_images * r0.epochs:,} | {_pm(row.acc)} | {_diff(row.vs_plain)} | "
                   f"{_p(row.vs_plain.p if row.vs_plain else None)} |")
    return out + [""]


def _draw(gains: str) -> str:
    lo, hi = gains.split(",")
    if "." in gains:
        return f"uniform reals in [{lo}, {hi})"
    return "integers {" + ", ".join(str(k) for k in range(int(lo), int(hi))) + "}"


def _ablation(d: DatasetSummary, fig: Optional[str]) -> list:
    if not d.ablation:
        return []
    out = ["### Gain ablation", "", "Bands 1-2 amplified by gains k drawn from other ranges, in the spectral "
           "condition's replace mode at the same budget. k < 1 attenuates the fine bands (removes texture); "
           f"k in [{MAIN_GAINS.replace(',', ', ')}) is the dissertation's range and the main `spectral` row.", "",
           "| gains k | draw | seeds | test accuracy % | Δ vs plain [95% CI] | Welch p |",
           "|---|---|---:|---:|---:|---:|"]
    for r in d.ablation:
        out.append(f"| [{r.key.replace(',', ', ')}) | {_draw(r.key)} | {r.acc.n} | {_pm(r.acc)} | "
                   f"{_diff(r.vs_plain)} | {_p(r.vs_plain.p if r.vs_plain else None)} |")
    return out + [""] + ([f"![{d.title} gain ablation]({fig})", ""] if fig else [])


def _dataset(d: DatasetSummary, figs: dict) -> list:
    f = _flags(d)
    n = f"{f['subset']:,}" if f.get("subset") else "All"
    out = [f"## {d.title}", "", f"{n} training images at {f['image-size']}×{f['image-size']}, "
           f"{f['epochs']} epochs, batch {f['batch-size']}; evaluated on {d.plan.eval_note}.", ""]
    if not d.main:
        return out + ["No finished runs yet.", ""]
    out += _main_table(d) + [_control_sentence(d), ""]
    if figs.get("curves"):
        out += [f"![{d.title} learning curves]({figs['curves']})", ""]
    out += _concat(d)
    if figs.get("confusion"):
        out += [f"![{d.title} confusion matrices]({figs['confusion']})", "",
                "Row-normalised confusion matrices of the test script on the seed-0 checkpoints: top-1 "
                + ", ".join(f"{LABELS[r.condition]} {_pct(r.test_top1)}%" for r in d.confusion)
                + " (equal to the training runs' final test accuracy: same checkpoint, same images).", ""]
    return out + _ablation(d, figs.get("ablation"))


def gan_answer(g: dict) -> str:
    """The GAN result in one sentence: the spectral modes' sliced Wasserstein distance against plain's."""
    swd = {k: v["swd_x1e3"]["avg"] for k, v in g["results"].items() if v.get("mode") != "real"}
    real = next((v["swd_x1e3"]["avg"] for v in g["results"].values() if v.get("mode") == "real"), None)
    numbers = ", ".join(f"{k} {v:.1f}" for k, v in swd.items())
    floor = f"; real training faces score {real:.1f}" if real is not None else ""
    if "plain" not in swd or len(swd) < 2:
        return f"sliced Wasserstein distance ×1e3 to held-out faces: {numbers}{floor}."
    best = min((k for k in swd if k != "plain"), key=swd.get)
    verdict = ("generating in the spectral domain does not beat the plain DCGAN" if swd[best] >= swd["plain"] else
               f"the {best} mode comes closer to real faces than the plain DCGAN")
    return (f"sliced Wasserstein distance ×1e3 to held-out faces (lower is better) {numbers}{floor}: {verdict} "
            f"at equal generator updates (one seed each, so no significance test).")


def _gan(s: Summary, figure: Optional[str] = None) -> list:
    if s.gan is None:
        return []
    import gan_lib
    g = s.gan
    with_fid = g.get("fid_kid") == "computed"
    flags = " ".join(f"--{f} {v}" for f, v in s.profile.gan.flags)
    out = ["## GAN on faces (gan.py, gan_test.py)", "",
           f"DCGANs trained by `gan.py {flags}` on CelebA faces, one run per mode (one seed, so no significance "
           f"test), measured by `gan_test.py` against {g['n_real']} held-out faces: sliced Wasserstein distance "
           f"×1e3 (lower is better) and the relative L1 distance of the mean TV spectrum to the real faces'. "
           f"FID/KID: {g.get('fid_kid')}.", "", gan_lib.markdown_table(g["results"], with_fid=with_fid), ""]
    order = dict(s.profile.gan.flags).get("stage-order", "dissertation")
    if "components" in s.profile.gan.modes:
        out += [f"`components` is the dissertation's scheme, trained in {order} stage order: its recombination "
                "telescopes to the u_0 generator's sample, so that is the image evaluated"
                + (", a DCGAN that got 1/(N+1) of the updates (u_0 is trained first)" if order == "dissertation"
                   else "") +
                "; `joint` generates the bands and the residual as channels and sums them, an exact "
                "reconstruction ([docs/gan.md](docs/gan.md)).", ""]
    if figure:
        out += [f"![GAN samples and mean TV spectra]({figure})", "",
                "Samples of each mode beside real faces, and the mean TV spectrum S(t) of each set "
                "(`gan_test.py`'s figure, kept in the ledger).", ""]
    return out + [f"In one sentence: {gan_answer(g)}", ""]


def _stale(s: Summary) -> list:
    old = [r for r in s.runs if r.status != "current"]
    if not old:
        return []
    out = ["## Stale and unplanned runs (not in the tables above)", "",
           "Made by code whose fingerprint differs from the code the runs execute now (`code`), or by other "
           "settings than the profile asks for now (`settings`), or not part of the plan any more. The sweep "
           "redoes the stale ones and replaces their entries.", "",
           "| run | status | why | test accuracy % | code fingerprint | commit |", "|---|---|---|---:|---|---|"]
    for r in old:
        out.append(f"| `{r.id}` | {r.status} | {r.reason} | {_pct(r.test_acc)} | `{r.fingerprint[:12]}` | "
                   f"`{(r.commit or '?')[:10]}` |")
    return out + [""]


def answer(d: DatasetSummary) -> str:
    """The answer for one dataset in one sentence, from the numbers."""
    c, ctl = d.spectral, d.control
    if c is None:
        return "no answer yet (spectral and plain need two finished seeds each)."
    numbers = (f"spectral augmentation changes test accuracy by {100 * c.diff:+.1f} points "
               f"(95% CI [{100 * c.low:+.1f}, {100 * c.high:+.1f}], Welch p = {_p(c.p)})")
    if ctl is None or not (ctl.significant and ctl.diff > 0):
        return f"{numbers}, but crop+flip shows no significant gain at this budget, so it cannot tell."
    if c.significant:
        return f"{numbers}: it {'helps' if c.diff > 0 else 'hurts'}, at a budget where crop+flip helps."
    return f"{numbers}: no detectable effect, at a budget where crop+flip does help ({100 * ctl.diff:+.1f} points)."


def _closing(s: Summary) -> list:
    done = [d for d in s.datasets if d.main]
    if not done:
        return []
    rates = "; ".join(f"{d.title} {_rate(next(r for r in d.main if r.key == 'plain').images_per_s)}"
                      for d in done if any(r.key == "plain" for r in d.main))
    return ["## Closing note", "",
            f"The current runs took {_duration(s.wall_seconds)} of wall-clock time ({s.counts['done']} of "
            f"{s.planned} jobs). Training images/s per run (plain, mean over seeds): {rates}.", ""] + \
        [f"- {d.title}: {answer(d)}" for d in done] + \
        ([f"- GAN on CelebA faces: {gan_answer(s.gan)}"] if s.gan is not None else []) + [""]


def render(s: Summary, figs: dict) -> str:
    """RESULTS.md as text; ``figs`` maps (dataset or None, kind) to a figure's repository-relative path."""
    lines = _header(s)
    if figs.get((None, "accuracy")):
        lines += [f"![test accuracy per condition]({figs[(None, 'accuracy')]})", ""]
    lines += _setup(s) + _provenance(s)
    for d in s.datasets:
        lines += _dataset(d, {k: v for (ds, k), v in figs.items() if ds == d.name})
    lines += _gan(s, figs.get((None, "gan"))) + _stale(s) + _closing(s)
    return "\n".join(lines).rstrip("\n") + "\n"


def readme_block(s: Summary) -> str:
    p, report = s.profile, s.profile.report
    if not any(d.main for d in s.datasets):
        return (f"No runs yet: the ledger `results/runs/{p.name}/` holds 0 of the {s.planned} jobs of the "
                f"`{p.name}` profile ({p.description.split(':')[0]}). `python run_experiments.py --profile {p.name} "
                f"--commit` runs them; [{report}]({report}) then reports them.")
    lines = [f"From the `{p.name}` profile ({s.counts['done']} of {s.planned} jobs done; test accuracy, mean ± std "
             f"over seeds, Δ vs plain with Welch p):", ""]
    for d in s.datasets:
        if not d.main:
            continue
        cells = ", ".join(f"{r.label} {_pm(r.acc)}%" + (f" (Δ {100 * r.vs_plain.diff:+.1f}, p = {_p(r.vs_plain.p)})"
                                                        if r.vs_plain else "") for r in d.main)
        lines.append(f"- {d.title} ({_flags(d)['image-size']} px, {d.main[0].acc.n} seeds): {cells}. "
                     f"{answer(d)[0].upper()}{answer(d)[1:]}")
    if s.gan is not None:
        lines.append(f"- GAN on CelebA faces ({dict(p.gan.flags).get('image-size', 64)} px): "
                     f"{gan_answer(s.gan)}")
    return "\n".join(lines + ["", f"Details, curves, the dissertation's budgets and the ablation: [{report}]({report})."])


def update_readme(readme: Path, block: str) -> bool:
    """Replace the text between the results markers of ``readme``; False when it has no such block."""
    readme = Path(readme)
    if not readme.is_file():
        return False
    text = readme.read_text()
    i, j = text.find(README_START), text.find(README_END)
    if i < 0 or j < i:
        return False
    atomic_write_text(readme, text[: i + len(README_START)] + "\n" + block.strip() + "\n" + text[j:])
    return True


def _figures(s: Summary, folder: Path, rel: str) -> dict:
    """Draw every figure into ``folder`` (emptied of old ones first); their paths as the report links them."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    figs = {(None, "accuracy"): figures.accuracy(s, folder / "accuracy.png")}
    for d in s.datasets:
        figs[(d.name, "curves")] = figures.curves(d, folder / f"{d.name}_curves.png")
        figs[(d.name, "confusion")] = figures.confusion(d, folder / f"{d.name}_confusion.png")
        figs[(d.name, "ablation")] = figures.ablation(d, folder / f"{d.name}_ablation.png")
    return {k: f"{rel}/{v}" for k, v in figs.items() if v}


def write(s: Summary, out_dir: Path) -> list:
    """Write the report, its figures and (for the main profile) the README block under ``out_dir``."""
    out_dir = Path(out_dir)
    rel = f"results/{s.profile.name}"
    figs = _figures(s, out_dir / rel, rel)
    if s.gan_figure is not None:
        # linked where the ledger keeps it rather than copied: the image is a run's output, not drawn here
        figs[(None, "gan")] = Path(os.path.relpath(s.gan_figure, out_dir)).as_posix()
    atomic_write_text(out_dir / s.profile.report, render(s, figs))
    written = [s.profile.report] + sorted({v for k, v in figs.items() if k != (None, "gan")})
    if s.profile.readme and update_readme(out_dir / "README.md", readme_block(s)):
        written.append("README.md")
    return written
