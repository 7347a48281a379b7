"""RESULTS.md and the README block, rendered from the summary records, one function per section.

The text is a pure function of the ledger (the replicated profile's too, where a profile repeats
another's runs) and the committed throughput, memory-format and unsharp-matching measurements: no time
of day, no machine paths (datasets by archive name and sha256, files by repository-relative path), no
git state of the checkout (the release is what the runs recorded), a fixed order; ``python
run_experiments.py --report-only`` on a fresh clone writes the same bytes.

Every verdict is generated from the numbers by :func:`stats.verdict`: "helps" / "hurts" only with
Welch p < 0.05, "no effect larger than X points" when the whole 95% CI lies within ±X (the profile's
``margin``), "inconclusive" otherwise; "interim" while its seeds fall short of the profile's plan.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from toolkit.io_utils import atomic_write_text, read_json

from . import figures
from .plan import REPO
from .profiles import CONDITIONS, LABELS, MAIN_GAINS, MATCHING, SPECTRAL, TITLES
from .stats import ALPHA, LAST_K, POWER, SLOPE_K, Comparison, Spread, compare, end_slope, spread
from .summary import Contrast, DatasetSummary, GanSummary, Replication, RobustnessSummary, Row, Summary
from .throughput import FORMATS

__all__ = ["README_START", "README_END", "write", "render", "readme_block", "update_readme", "answer",
           "gan_answer", "verdict_line"]

README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"
THROUGHPUT = REPO / "results" / "throughput_cpu.json"
# The memory formats and layouts at the sizes of a profile that trains channels_last (python -m experiments.throughput
# --formats ... --output-dir results/formats).
FORMATS_FILE = "results/formats/throughput_cpu.json"
FORMATS_THROUGHPUT = REPO / FORMATS_FILE
EXAMPLES = REPO / "results" / "examples" / "example_grid.png"
# Made by another script (experiments/fourier_heatmap.py) into the report's figure folder, not drawn here.
FOURIER = "fourier_heatmap"


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


def _ci(k: Comparison, margin: Optional[float]) -> str:
    """A 95% CI in points; to two decimals where a bound lies within 0.1 point of ±``margin``, where one decimal
    would put a bound that the verdict found inside the margin on it (or one outside it inside)."""
    near = margin is not None and any(abs(abs(b) - margin) <= 0.001 for b in (k.low, k.high))
    d = 2 if near else 1
    return f"[{100 * k.low:+.{d}f}, {100 * k.high:+.{d}f}]"


def _word(c: Contrast, note: str = "") -> str:
    """The verdict in bold, said to be interim while its seeds fall short of the profile's plan; ``note`` goes
    into the same parentheses."""
    notes = [note] if note else []
    if c.interim:
        (na, nb), (pa, pb) = c.n, c.planned
        seeds = f"{na}" if (na, pa) == (nb, pb) else f"{na} and {nb}" if pa == pb else f"{na} of {pa} and {nb}"
        notes.insert(0, f"{seeds} of {pb} planned seeds")
    return f"**{c.verdict}**" + (", interim" if c.interim else "") + (f" ({'; '.join(notes)})" if notes else "")


def _and(words: list) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _sizes(plans) -> str:
    """Which image size each dataset was trained at: 'CIFAR-10 at 32 px, Imagenette and Flowers102 at 64 px'."""
    by = {}
    for pl in plans:
        by.setdefault(dict(pl.budget)["image-size"], []).append(TITLES[pl.name])
    return ", ".join(f"{_and(names)} at {size} px" for size, names in by.items())


def _protocols(plans) -> list:
    """The spectral protocols the datasets train, each as (title words, description)."""
    conditions = {c for pl in plans for c in pl.conditions}
    f, out = dict(SPECTRAL), []
    if conditions & {"spectral", "both"}:
        out.append((f"{f['spectral-mode']} mode at equal budget",
                    f"{f['spectral-mode']} mode (each training image replaced by its amplified copy with probability "
                    f"{f['spectral-prob']:g}), at the budget of plain (the same images, epochs and steps)"))
    if "spectral-concat" in conditions:
        out.append(("the dissertation's concat protocol", "the dissertation's concat protocol (every batch trained "
                    "together with its amplified copy, one gain pair per batch)"))
    return out


def _rate(s: Spread) -> str:
    return "–" if s.mean is None else f"{s.mean:,.0f}"


def _duration(seconds: float) -> str:
    m = round(seconds / 60)
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{m} min"


def _flags(d: DatasetSummary) -> dict:
    return dict(d.plan.budget)


# ----------------------------------------------------------------------------------- sections

def _release(s: Summary) -> list:
    """The release whose code made the current runs (from its committed manifest: a clone may lack the tags)."""
    cur = [r for r in s.runs if r.status == "current"]
    tag, name = s.profile.release, s.profile.name
    if not tag or not cur:
        return []
    tagged = sum(1 for r in cur if tag in r.release)
    line = (f"**Release:** every run in the tables executed the code of release `{tag}` (commit "
            f"`{s.release_commit[:12]}`; the syntax digests of its files are in `results/releases/{tag}.json`), so "
            f"later work on main leaves them current. The sweep runs from a worktree of the tag (`git worktree add "
            f"-b sweep-{tag} ../{tag} {tag}`, then `python run_experiments.py --profile {name} --commit` there; its "
            f"commits add only ledger files, and the branch is merged into main)")
    if tagged:
        line += f"; {tagged} of the {len(cur)} runs started from a commit carrying the tag (their `run.json` records it)"
    return [line + ".", ""]


def _header(s: Summary) -> list:
    p = s.profile
    c = s.counts
    words = _and([w for w, _ in _protocols(p.datasets)] or ["no spectral condition"])
    out = [f"# Results: does spectral TV augmentation help? {words[0].upper()}{words[1:]}, {_sizes(p.datasets)} "
           f"(profile `{p.name}`)", "",
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
    return out + _release(s)


def _channels_last(p) -> bool:
    return any(dict(d.budget).get("channels-last") for d in p.datasets)


def _layout(layout: str) -> str:
    """'1x2' as '1 run × 2 threads'."""
    runs, threads = (int(v) for v in layout.split("x"))
    return f"{runs} run{'s' if runs != 1 else ''} × {threads} thread{'s' if threads != 1 else ''}"


def _throughput_note(s: Summary) -> list:
    p = s.profile
    tp = read_json(THROUGHPUT) if p.device == "cpu" and not p.generated_data else None
    if not tp:
        return []
    # A channels_last profile chose its layout with the format (the table of _formats_note), its batch size here.
    chosen = ("The batch size was" if _channels_last(p) else
              "The batch size and the layout (runs at once × threads) were")
    best = {(r["image_size"], r["batch"], r["layout"]): r for r in tp["best"]}
    rows = ["| image size | batch | 1 run × 2 threads | 2 runs × 1 thread |", "|---:|---:|---:|---:|"]
    for size, batch in sorted({k[:2] for k in best}):
        cells = [best.get((size, batch, lay)) for lay in ("1x2", "2x1")]
        rows.append(f"| {size} | {batch} | " + " | ".join(
            "–" if c is None else f"{c['images_per_s']:,.0f} (tries: {', '.join(f'{t:,.0f}' for t in c['tries'])})"
            for c in cells) + " |")
    return [f"{chosen} chosen by measuring training images/s "
            f"of this network, summed over the runs, with `{tp['command']}` ({tp['machine']['cpu']}, "
            f"{tp['machine']['cores']} cores, {tp['measured']}; `results/throughput_cpu.json`). The best of the "
            "tries counts: other work on the shared machine only slows a try down, a 2-thread run most.",
            ""] + rows + [""] + _formats_note(s)


def _formats_note(s: Summary) -> list:
    """For a profile that trains channels_last: the measurement of memory formats and layouts that chose them, with
    channels_last / contiguous in the layout each size's runs used (as the ledger records it; the profile's own
    before any run)."""
    p = s.profile
    tp = read_json(FORMATS_THROUGHPUT) if _channels_last(p) else None
    if not tp:
        return []
    best = {(r["image_size"], r["batch"], r["layout"], r["format"]): r for r in tp["best"]}
    ratios = {(r["image_size"], r["batch"], r["layout"]): r["ratio"] for r in tp["format_ratios"]
              if r["format"] == "channels_last"}
    formats = [f for f in FORMATS if any(k[3] == f for k in best)]
    ran = {}
    for size, layout in s.size_layouts:
        ran.setdefault(size, set()).add(layout)
    default = f"{p.jobs}x{p.threads}"
    rows = ["| image size | batch | layout | " + " | ".join(f"{f}, images/s" for f in formats)
            + " | channels_last / contiguous |", "|---:|---:|---|" + "---:|" * (len(formats) + 1)]
    for size, batch, layout in sorted({k[:3] for k in best}):
        cells = [best.get((size, batch, layout, f)) for f in formats]
        ratio = ratios.get((size, batch, layout))
        rows.append(f"| {size} | {batch} | {_layout(layout)}" + (" (the runs')" if layout in ran.get(size, {default})
                                                                   else "") + " | "
                    + " | ".join("–" if c is None else f"{c['images_per_s']:,.1f}" for c in cells) + " | "
                    + ("–" if ratio is None else f"{ratio:.2f}") + " |")
    at = [f"{ratios[k]:.2f} at {k[0]} px (batch {k[1]}, {_layout(k[2])})" for k in sorted(ratios)
          if k[2] in ran.get(k[0], {default})]
    unmeasured = sorted({dict(d.budget)["image-size"] for d in p.datasets if dict(d.budget).get("channels-last")}
                        - {k[0] for k in best})
    tries = max(len(r["tries"]) for r in tp["best"])
    m = tp["machine"]
    return [f"The memory format and the layout were chosen by measuring the same network's training images/s in each "
            f"format (the same float32 maths in another memory layout or compiled) and layout, with `{tp['command']}` "
            f"({m['cpu']}, {m['cores']} cores, torch {m['torch']}, {tp['measured']}; "
            f"`{FORMATS_FILE}`; {tp['seconds_per_configuration']:g} s timed per "
            f"configuration, the best of {tries} tr{'y' if tries == 1 else 'ies'}). In the layout the runs used, "
            f"channels_last / contiguous is "
            + (_and(at) if at else "not measured") + "."
            + (f" The file holds no measurement at {_and([f'{s} px' for s in unmeasured])}, where the profile trains "
               f"channels_last too." if unmeasured else ""), ""] + rows + [""]


def _matched(flags: dict, amount: list, sigma) -> bool:
    """Whether a condition's unsharp flags are those a matching measured (else the profile set them by hand)."""
    return flags.get("unsharp-amount") == f"{amount[0]:g},{amount[1]:g}" and flags.get("unsharp-sigma") == sigma


def _measured_on(e: dict) -> str:
    return f"{e['images']} of its '{e['split']}' split ({e['archive']})"


def _matching(s: Summary) -> list:
    """The unsharp controls' matching, from results/unsharp_matching.json, for the datasets whose flags it set: per
    image for ``unsharp`` (its "datasets"), per batch for ``unsharp-concat`` (its "sizes")."""
    with_unsharp = [d for d in s.datasets if d.plan.unsharp]
    with_concat = [d for d in s.datasets if d.plan.protocol_unsharp]
    if not with_unsharp and not with_concat:
        return []
    m = read_json(MATCHING) or {"datasets": {}}
    out = []
    if with_unsharp:
        out += _matching_per_image(m, with_unsharp)
    if with_concat:
        out += _matching_per_batch(m, with_concat)
    return out


def _matching_per_image(m: dict, datasets: list) -> list:
    rows, unmatched = [], []
    for d in datasets:
        e = m["datasets"].get(d.name)
        if e is None or not _matched(dict(d.plan.unsharp), e["amount"], m.get("sigma")):
            unmatched.append(d.title)
            continue
        rows.append(f"| {d.title} | {_measured_on(e)} | {e['image_size']} | "
                    f"{m['sigma']:g} | [{e['amount'][0]:g}, {e['amount'][1]:g}) | {e['spectral_norm']:.2f} | "
                    f"{e['unsharp_norm']:.2f} | {e['spectral_rms_per_pixel']:.3f} |")
    out = ["**The matched control.** `unsharp` replaces an image, with the spectral condition's probability 0.5, by "
           "the linear unsharp mask w = f + a (f - G_s * f) (`toolkit/unsharp.py`), a drawn uniformly per image. Its Gaussian "
           "width s is fixed and its range of a has the ratio of the gains' range (5/3); the range is chosen so that "
           "the mean perturbation size per augmented image, E||w - f||₂ on the [-1, 1] scale the network sees, equals "
           "the spectral augmentation's (bands 1-2, gains {3, 4}, λ = 7, averaged over the four gain pairs), measured "
           "on training images at the sweep's size by `python -m experiments.unsharp_match` "
           "(`results/unsharp_matching.json`). At equal size, spectral - unsharp tells whether the TV bands "
           "matter or just a perturbation of that size.", ""]
    return out + _table_and_misses(["| dataset | measured on | size | s (px) | a | spectral E‖w - f‖ | unsharp E‖w - f‖ | "
                                    "spectral RMS per pixel |", "|---|---|---:|---:|---|---:|---:|---:|"], rows,
                                   unmatched, "Not matched (the profile sets s and a by hand)")


def _table_and_misses(header: list, rows: list, missing: list, why: str) -> list:
    """A table of ``rows`` under ``header`` where there are rows, then the datasets ``missing`` from it and why."""
    return (header + rows + [""] if rows else []) + ([f"{why}: {', '.join(missing)}.", ""] if missing else [])


def _matching_per_batch(m: dict, datasets: list) -> list:
    rows, unmatched = [], []
    for d in datasets:
        size = str(_flags(d)["image-size"])
        e = m.get("sizes", {}).get(d.name, {}).get(size, {}).get("per-batch")
        if e is None or not _matched(dict(d.plan.protocol_unsharp), e["amount"], e["sigma"]):
            unmatched.append(d.title)
            continue
        rows.append(f"| {d.title} | {_measured_on(e)} | {e['image_size']} | {e['batch_size']} | {e['sigma']:g} | "
                    f"[{e['amount'][0]:g}, {e['amount'][1]:g}) | {e['spectral_norm']:.2f} | {e['unsharp_norm']:.2f} | "
                    f"{e['spectral_norm_sd']:.2f} / {e['unsharp_norm_sd']:.2f} |")
    out = [f"**The protocol's matched control.** `unsharp-concat` ({LABELS['unsharp-concat']}) trains every batch "
           f"together with its unsharp-masked copy, w = f + a (f - G_s * f), as `spectral-concat` trains it with its "
           f"amplified copy. Per batch one amount a is drawn (uniformly from its range), as spectral concat draws one "
           f"gain pair per batch, so the size of the perturbation a step trains on varies from batch to batch: the "
           f"range of a is chosen so that the copies' perturbation size E||w - f||₂ (a batch's mean, on the [-1, 1] "
           f"scale) is matched in the mean and in the spread over batches (its standard deviation; the spectral "
           f"copies' over the four equally likely gain pairs), measured on training images at the profile's image "
           f"size by `python -m experiments.unsharp_match --per-batch` (`results/unsharp_matching.json`, under "
           f"\"sizes\"). At equal size, {LABELS['spectral-concat']} - {LABELS['unsharp-concat']} tells whether the TV "
           f"bands matter in the dissertation's protocol.", ""]
    return out + _table_and_misses(["| dataset | measured on | size | batch | s (px) | a | spectral E‖w - f‖ | "
                                    "unsharp E‖w - f‖ | sd over batches, spectral / unsharp |",
                                    "|---|---|---:|---:|---:|---|---:|---:|---:|"], rows, unmatched,
                                   "Not matched per batch at the profile's image size")


def _examples(s: Summary) -> list:
    """The committed example grid (drawn from the archives by ``python -m experiments.examples``, not here)."""
    if s.profile.generated_data or not EXAMPLES.is_file():
        return []
    rel = EXAMPLES.relative_to(REPO).as_posix()
    return [f"![what each condition does to a training image]({rel})", "",
            "What the conditions do to one training image of CIFAR-10 (32 px) and Imagenette (64 px): the TV bands "
            "phi_1 and phi_2, the spectral augmentation at each gain, the ablation's ranges (at their middle) and the "
            "matched unsharp mask (at the middle of its range), each with its perturbation size ‖w - f‖ "
            f"(`python -m experiments.examples`, committed as `{rel}`).", ""]


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
    margin = f"{100 * s.profile.margin:g}"
    out += ["", _conditions([d.plan for d in s.datasets]), ""] + _protocol_note([d.plan for d in s.datasets]) + [
            f"**Primary metric** (declared before the runs): each run's mean test accuracy over its last {LAST_K} "
            f"epochs (all of a shorter run), since constant-lr Adam moves test accuracy by points from one epoch to the next; the final "
            f"epoch's accuracy is the second column. Δ is the difference of the mean to plain in percentage points "
            f"with its 95% confidence interval, p Welch's t-test. **Verdicts** are generated from the numbers: "
            f"*helps* / *hurts* only with p < {ALPHA}; *no effect larger than {margin} points* when the whole 95% CI "
            f"lies within ±{margin} points; *inconclusive* otherwise. **Power:** the smallest difference the seeds "
            f"detect with probability {POWER:.0%} (two-sided α = {ALPHA}): the δ at which a two-sample t-test with "
            f"the pooled standard deviation σ of the two arms and n₁ + n₂ - 2 degrees of freedom rejects with that "
            f"probability (noncentral t with noncentrality δ / (σ √(1/n₁ + 1/n₂)); "
            f"`experiments/stats.py: min_detectable_difference`).", ""]
    out += _matching(s) + _examples(s)
    out += ["How fast the TV engine itself is (`pock.rof`, `pock.spectral` against scikit-image and the "
            "dissertation's solver) is measured by `bench_pock.py`: see the README's "
            "[benchmark section](README.md#benchmark-of-the-tv-engine).", ""]
    return out + _throughput_note(s)


# What each condition of a main table at one budget does (the dissertation's protocol has its own note).
_CONDITION_TEXT = {
    "spectral": "each training image replaced with probability 0.5 by its spectral TV augmentation (bands 1-2 of the "
                "TV flow with λ = 7 amplified by integer gains k in {3, 4}, drawn per image)",
    "unsharp": "the matched non-spectral control (below)",
    "cropflip": "random crop (4 px reflect padding per 32 px) and horizontal flip, the standard augmentation and the "
                "*positive control*",
    "both": "both"}


def _conditions(plans: list) -> str:
    """The conditions the datasets train at their main budget, each with what it does, and which dataset trains
    fewer of them."""
    trained = [c for c in CONDITIONS if any(c in pl.conditions for pl in plans)]
    listed = "; ".join(f"**{LABELS[c]}**" + (f": {_CONDITION_TEXT[c]}" if c in _CONDITION_TEXT else "")
                       for c in trained)
    fewer = [f"{TITLES[pl.name]} trains only {_and([LABELS[c] for c in trained if c in pl.conditions])}"
             + (" (and the dissertation's protocol, below)" if pl.protocol else "")
             for pl in plans if any(c not in pl.conditions for c in trained)]
    return (f"Conditions, all at the same budget (images, epochs, steps): {listed}."
            + (f" Of these, {'; '.join(fewer)}." if fewer else "") + " Each seed draws its own training subset, "
            "initialisation, batches and augmentation; the evaluation images are the same for every run.")


def _protocol_note(plans: list) -> list:
    """The dissertation's protocol and its control, for the profiles that train them in the main table."""
    at = [f"{TITLES[pl.name]} {pl.concat_epochs}" for pl in plans if "spectral-concat" in pl.conditions]
    if not at:
        return []
    return [f"The dissertation's protocol, in the same tables: **{LABELS.get('spectral-concat')}**: every batch "
            f"trained together with its amplified copy, one gain pair drawn per batch; "
            f"**{LABELS.get('unsharp-concat')}**: its matched control, every batch with its unsharp-masked copy, one "
            f"amount per batch. Both train for the dissertation's augmented epochs ({', '.join(at)}), which may differ "
            f"from plain's; their Δ is against plain at its own budget.", ""]


def _provenance(s: Summary) -> list:
    if not s.machines:
        return []
    out = ["## Provenance", ""]
    out.append("- machines: " + "; ".join(s.machines) + "; " + "; ".join(s.layouts))
    out.append("- data: " + ", ".join(f"`{n}` (sha256 `{h}`)" for n, h in s.data))
    if s.release_commit:
        tag = s.profile.release
        code = (f"- code: every run in the tables executed the code of release `{tag}` (commit "
                f"`{s.release_commit[:12]}`): the fingerprint of the files it ran (their syntax without comments and "
                f"docstrings, `toolkit/fingerprint.py`) matches the release's (`results/releases/{tag}.json`), "
                f"so later work on main leaves them current; the runs started from commit ")
    else:
        code = ("- code: every run in the tables executed the code as it is now: the fingerprint of the files it ran "
                "(their syntax without comments and docstrings, `toolkit/fingerprint.py`) matches them; the runs "
                "started from commit ")
    out.append(code + " to ".join(f"`{c[:10]}`" for c in s.commits))
    current = [r for r in s.runs if r.status == "current"]
    resumed = sum(r.resumed for r in current)
    out.append(f"- sweep time: {_duration(s.wall_seconds)} of wall-clock time with at least one run going "
               f"(runs' own times add up to {_duration(sum(r.seconds for r in current))}"
               + (f"; {resumed} {'run was' if resumed == 1 else 'runs were'} resumed from checkpoints after an "
                  f"interruption, and only {'its' if resumed == 1 else 'their'} last attempt is timed" if resumed else "")
               + ")")
    return out + [""]


def _last(d: DatasetSummary) -> str:
    """The primary metric's window in words: a run shorter than LAST_K epochs averages all of them."""
    k = min(LAST_K, _flags(d)["epochs"])
    return f"last {k} epochs" if k > 1 else "last epoch"


def _main_table(d: DatasetSummary, base: str = "plain") -> list:
    rows = d.main
    out = [f"| condition | seeds | test accuracy, {_last(d)} % | Δ vs {base}, points [95% CI] | Welch p | "
           f"final epoch % | Δ final epoch [95% CI] | train accuracy, last epoch % | training images/s |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r.label} | {r.acc.n} | {_pm(r.acc)} | {_diff(r.vs_plain)} | "
                   f"{_p(r.vs_plain.p if r.vs_plain else None)} | {_pm(r.final)} | {_diff(r.vs_plain_final)} | "
                   f"{_pm(r.train_acc)} | {_rate(r.images_per_s)} |")
    return out + ["", "Train accuracy is the running accuracy over the last epoch's training batches, as trained: "
                      "augmented, with dropout on. Training images/s: each run's median over its epochs (evaluation "
                      "excluded), so that an epoch slowed by other work on the shared machine does not set it; mean "
                      "over seeds.", ""]


def verdict_line(c: Optional[Contrast], what: str) -> str:
    """``what``: Δ [CI], p, the verdict in bold, and the power of the seeds."""
    if c is None or c.comparison is None:
        return f"{what}: no answer yet (each side needs two finished seeds)."
    k = c.comparison
    power = (f"; with {c.n[0]} and {c.n[1]} seeds (pooled sd {100 * c.sd:.2f} points) the smallest difference "
             f"detectable at {POWER:.0%} power is {100 * c.mdd:.1f} points" if c.mdd is not None else "")
    return f"{what}: {100 * k.diff:+.1f} points (95% CI {_ci(k, c.margin)}, Welch p = {_p(k.p)}): {_word(c)}{power}."


def _control_shown(c: Contrast) -> bool:
    """Whether the positive control shows that this budget can detect an augmentation effect: its generated
    verdict (:func:`stats.verdict`) is "helps"."""
    return c.verdict == "helps"


# Said when crop+flip - plain is not "helps": either no significant difference or a significant loss.
_CONTROL_NOT_SHOWN = "is not a significant gain at this budget, so it is not shown that the budget can detect an " \
                     "augmentation effect"


def _control_sentence(d: DatasetSummary) -> str:
    c = d.contrasts.get("control")
    if c is None or c.comparison is None:
        return ("Positive control: not enough finished seeds yet (crop+flip and plain need two each), so it is "
                "not yet known whether this budget can show an augmentation effect.")
    k = c.comparison
    line = verdict_line(c, "Positive control, crop+flip - plain")
    if _control_shown(c):
        return line + f" An effect of {100 * k.diff:+.1f} points is detectable at this budget."
    # The spectral CI still bounds the spectral effect; what is missing is evidence that this budget can show any
    # augmentation effect at all, so the sentence says that rather than dismissing the null result.
    return line + f" Crop+flip {_CONTROL_NOT_SHOWN}; a null spectral result is bounded only by its own CI."


def _verdicts(d: DatasetSummary) -> list:
    lines = [("spectral", "spectral - plain"), ("unsharp", "unsharp mask - plain"),
             ("bands", "spectral - unsharp mask (the TV bands against a perturbation of the same size)"),
             ("protocol", f"{LABELS.get('spectral-concat')} - plain"),
             ("protocol-unsharp", f"{LABELS.get('unsharp-concat')} - plain"),
             ("protocol-bands", f"{LABELS.get('spectral-concat')} - {LABELS.get('unsharp-concat')} (the TV bands "
                                f"against a perturbation of the same size, in the dissertation's protocol)")]
    out = [f"- {verdict_line(d.contrasts.get(k), what)}" for k, what in lines
           if k in d.contrasts or k == "spectral"]
    return out + [f"- {_control_sentence(d)}", ""]


def _still_learning(row: Optional[Row]) -> str:
    if row is None or not row.runs:
        return ""
    last = sum(1 for r in row.runs if r.curve and r.peak_epoch == r.curve[-1][0])
    return f"{last} of {len(row.runs)} {row.label} seeds reach their best test accuracy at the last epoch"


def _still_learning_both(rows: dict) -> str:
    """The sentence of :func:`_still_learning` for crop+flip and for both, leaving out a row with no runs yet."""
    parts = [p for p in (_still_learning(rows.get("cropflip")), _still_learning(rows.get("both"))) if p]
    return " " + "; ".join(parts) + "." if parts else ""


def _ends(rows: dict) -> tuple:
    """The slopes of crop+flip and both over their last SLOPE_K epochs in words, and why lower is not shown yet:
    the arms that still rise (95% CI of the slope above 0) and those with one seed (no interval)."""
    arms = [rows[k] for k in ("cropflip", "both") if k in rows]
    parts, why = [], []
    for row in arms:
        sl = end_slope([r.curve for r in row.runs])
        if sl.low is None:
            why.append(f"{row.label} has no interval of its slope (one seed)")
        elif sl.rises:
            why.append(f"{row.label} still rises at the end (the 95% CI of its slope lies above 0)")
        if sl.mean is not None:
            parts.append(f"{row.label} {100 * sl.mean:+.2f} points/epoch" + (
                f" (95% CI [{100 * sl.low:+.2f}, {100 * sl.high:+.2f}], {sl.n} seeds)" if sl.low is not None else ""))
    window = [e for e, _ in arms[0].runs[0].curve[-SLOPE_K:]] if arms and arms[0].runs[0].curve else []
    span = f"epochs {window[0]}-{window[-1]}" if len(window) > 1 else "the last epochs"
    text = (f"the slopes of test accuracy over {span} (least squares per seed; mean and 95% t interval over seeds) "
            f"are {'; '.join(parts)}") if parts else "no curve gives a slope"
    return text, why


def _lower_or_slower(d: DatasetSummary) -> list:
    both = d.contrasts.get("both")
    if both is None:
        return []
    f = _flags(d)
    rows = {r.key: r for r in d.main}
    out = ["### Lower or slower? spectral + crop+flip against crop+flip", "",
           f"- at {f['epochs']} epochs: " + verdict_line(both, "spectral + crop+flip - crop+flip")
           + _still_learning_both(rows)]
    if not d.long:
        return out + ["", f"Not yet run at more epochs, so it is open whether the combination is lower or slower; "
                          f"at {f['epochs']} epochs, {_ends(rows)[0]}.", ""]
    lrows = {r.key: r for r in d.long}
    e2 = d.plan.long_epochs
    out += [f"- at {e2} epochs: " + verdict_line(d.long_contrast, "spectral + crop+flip - crop+flip")
            + _still_learning_both(lrows), ""]
    out += [f"| condition | seeds | epochs | test accuracy, last {LAST_K} epochs (all of a shorter run) % | "
            f"final epoch % |",
            "|---|---:|---:|---:|---:|"]
    for r in list(d.main) + list(d.long):
        if r.key in ("cropflip", "both"):
            out.append(f"| {r.label} | {r.acc.n} | {r.runs[0].epochs} | {_pm(r.acc)} | {_pm(r.final)} |")
    out.append("")
    short, long = both.verdict, d.long_contrast.verdict if d.long_contrast else "no answer yet"
    ends, why = _ends(lrows)
    if long == "hurts" and not why:
        word = (f"**lower**: spectral + crop+flip stays below crop+flip at {e2} epochs, and neither arm still "
                f"rises: {ends}")
    elif long == "hurts":
        word = (f"**below at {e2} epochs; lower or slower still open**: {'; '.join(why)}, so more epochs may yet "
                f"change the gap; {ends}")
    elif short == "hurts" and long != "no answer yet":
        word = (f"**slower**, not lower: the gap at {f['epochs']} epochs is gone at {e2} epochs ({long})"
                if long != "inconclusive" else
                f"not significant any more at {e2} epochs, but the interval is too wide to call it slower: "
                f"**inconclusive**")
    else:
        word = f"at {f['epochs']} epochs {short}, at {e2} epochs {long}"
    return out + [f"Which it was: {word}.", ""]


def _metric(m: str, rb: RobustnessSummary) -> str:
    """A robustness metric's column name: a band setting such as removed_k0 reads 'bands removed, k = 0'."""
    what, sep, k = m.rpartition("_k")
    if m in rb.bands and sep:
        return f"bands {what}, k = {k}"
    return {"clean": "clean", "mean": "mean corruption"}.get(m, m)


def _robust_setup(d: DatasetSummary) -> str:
    rb = d.robustness
    first = rb.rows[0].runs[0].robustness
    fams = "; ".join(f"{fam}: {', '.join(n for n, f, _ in first.corruptions if f == fam)}" for fam in rb.families)
    sets = "; ".join(f"{n:,} images of the '{split}' split (drawn with seed {seed}) at {size} px, corrupted by "
                     f"{lib} at severities 1-{sev}" for n, split, seed, size, lib, sev in rb.settings)
    bands = "; ".join(_metric(b, rb) for b in rb.bands)
    return (f"Each run's checkpoint tested again ({rb.runs} runs, `test/robustness.json` in the ledger): clean and "
            f"under common corruptions on {sets}, and with its TV bands modified ({bands or 'none'}). The families "
            f"({fams}) average their corruptions over every severity; *mean corruption* averages every included "
            f"corruption and severity. Accuracy in %, mean ± std over seeds; Δ vs plain in points with its 95% CI "
            f"and Welch p, and the verdict by the rules above.")


def _robust_delta(rb: RobustnessSummary) -> list:
    """Δ vs plain per metric (rows) and condition (columns), each cell with its CI, p and verdict."""
    others = [row for row in rb.rows if row.key != "plain"]
    if not rb.contrasts:
        return ["No Δ vs plain yet: plain and each condition need two seeds with a robustness measurement.", ""]
    out = ["| Δ vs plain, points [95% CI], Welch p: verdict | " + " | ".join(r.label for r in others) + " |",
           "|---|" + "---|" * len(others)]
    for m in rb.metrics:
        cells = []
        for row in others:
            c = rb.contrasts.get((row.key, m))
            k = c.comparison if c is not None else None
            cells.append("–" if k is None else
                         f"{100 * k.diff:+.1f} {_ci(k, c.margin)}, p {_p(k.p)}: **{c.verdict}**")
        out.append(f"| {_metric(m, rb)} | " + " | ".join(cells) + " |")
    short = [f"{row.label} {len(row.runs)} of {row.planned}" for row in rb.rows if len(row.runs) < row.planned]
    if short and rb.contrasts:
        out += ["", f"Interim: verdicts from fewer seeds than planned ({', '.join(short)})."]
    return out + [""]


def _robustness(d: DatasetSummary, fig: Optional[str]) -> list:
    rb = d.robustness
    if rb is None:
        return []
    out = ["### Robustness: corrupted and band-modified test images", "", _robust_setup(d), "",
           "| condition | seeds | " + " | ".join(_metric(m, rb) + " %" for m in rb.metrics) + " |",
           "|---|---:|" + "---:|" * len(rb.metrics)]
    for row in rb.rows:
        out.append(f"| {row.label} | {len(row.runs)} | "
                   + " | ".join(_pm(row.acc[m]) if m in row.acc else "–" for m in rb.metrics) + " |")
    out += [""] + _robust_delta(rb)
    out += [f"- {verdict_line(rb.contrasts.get((row.key, 'mean')), f'Mean corruption accuracy, {row.label} - plain')}"
            for row in rb.rows if row.key != "plain"]
    if rb.left_out:
        out += ["", "Corruptions left out: " + "; ".join(f"{name} ({why}; {k} of {rb.runs} runs)"
                                                        for name, why, k in rb.left_out) + "."]
    out.append("")
    return out + ([f"![{d.title} robustness, Δ vs plain per corruption family]({fig})", ""] if fig else [])


def _fourier(fig: Optional[str], data: Optional[dict], expected: tuple = ()) -> list:
    """The Fourier heat map that ``python -m experiments.fourier_heatmap`` makes, with one sentence from its JSON
    (``{"norm", "images", "conditions": {label: {"error": [[...]], "clean_error"}}, ...}``, errors as fractions);
    ``expected``: the conditions it is to map (CIFAR-10's main table), those not in it yet said so."""
    if not fig or not data:
        return []
    missing = [LABELS.get(c, c) for c in expected if c not in data["conditions"]]
    words = []
    for name, c in data["conditions"].items():
        e = [v for line in c["error"] for v in line if v == v]        # v == v: skips a frequency left NaN
        if e:
            clean = f"clean {100 * c['clean_error']:.1f}%, " if c.get("clean_error") is not None else ""
            words.append(f"{LABELS.get(name, name)} {100 * sum(e) / len(e):.1f}% ({clean}highest {100 * max(e):.1f}%)")
    scale = f" ({data['norm_scale']})" if data.get("norm_scale") else ""
    return ["## Fourier heat map", "", f"![Fourier heat map]({fig})", "",
            f"Test error under an additive Fourier-basis perturbation of L2 norm {data['norm']:g}{scale}, one "
            f"frequency at a time, on {data['images']:,} test images (`python -m experiments.fourier_heatmap`), "
            f"averaged over the map's frequencies: {', '.join(words)}."
            + (f" Not mapped yet: {_and(missing)}." if missing else ""),
            ""]


def _color(d: DatasetSummary) -> list:
    if not d.color:
        return []
    gray = {r.key: r for r in d.main}
    spectral = [r for row in d.color if row.key == "spectral" for r in row.runs]
    vec = sum(1 for r in spectral if r.vectorial_tv)
    out = ["### Colour", "", "RGB input (`--color`) beside the gray runs, same budget and seeds; the spectral "
           f"augmentation decomposes the three channels together with vectorial TV ({vec} of {len(spectral)} "
           f"colour spectral runs record `vectorial_tv: true` in args.json; `--channelwise-tv` would decompose each "
           f"channel on its own).", "",
           f"| condition | gray seeds | gray, {_last(d)} % | colour seeds | colour, {_last(d)} % "
           f"| colour Δ vs colour plain [95% CI] | Welch p |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in d.color:
        g = gray.get(r.key)
        out.append(f"| {r.label} | {g.acc.n if g else 0} | {_pm(g.acc) if g else '–'} | {r.acc.n} | {_pm(r.acc)} | "
                   f"{_diff(r.vs_plain)} | {_p(r.vs_plain.p if r.vs_plain else None)} |")
    return out + ["", f"- {verdict_line(d.color_contrast, 'Colour, spectral - plain')}", ""]


def _concat(d: DatasetSummary) -> list:
    plain = next((r for r in d.main if r.key == "plain"), None)
    if d.concat is None or plain is None:
        return []
    f = _flags(d)
    out = [f"The dissertation's own budget: plain for {f['epochs']} epochs against *concat* for "
           f"{d.plan.concat_epochs} epochs, where every step trains the batch together with its augmented copy "
           f"(so each epoch trains twice the images).", "",
           f"| run | seeds | epochs | steps | images trained | test accuracy, last {LAST_K} epochs (all of a "
           f"shorter run) % | "
           f"Δ vs plain [95% CI] | Welch p |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row, factor in ((plain, 1), (d.concat, 2)):
        r0 = row.runs[0]
        out.append(f"| {row.label} | {row.acc.n} | {r0.epochs} | {r0.steps:,} | "
                   f"{factor * r0.train_images * r0.epochs:,} | {_pm(row.acc)} | {_diff(row.vs_plain)} | "
                   f"{_p(row.vs_plain.p if row.vs_plain else None)} |")
    return out + [""]


def _release_of(name: str, tag: str) -> str:
    return f"{name} (release `{tag}`)" if tag else name


def _replication(d: DatasetSummary, profile) -> list:
    """The conditions ``profile`` trains as the profile it replicates did (same budget and flags, the memory layout
    aside), compared on the primary metric, with one generated sentence: a condition agrees when the 95% CI of
    the difference includes 0."""
    rep: Optional[Replication] = d.replication
    if rep is None:
        return []
    ours, other = profile.name, rep.profile
    out = [f"### Replication of {other}", "",
           f"The conditions {_release_of(ours, profile.release)} trains as {_release_of(other, rep.release)} did: the "
           f"same script, budget and flags, the memory layout aside (the same maths). Primary metric (test "
           f"accuracy, {_last(d)}) in %, mean ± std over each profile's current seeds; Δ = {ours} - {other} in points "
           f"with its 95% CI and Welch p. They agree when the 95% CI of Δ includes 0.", "",
           f"| condition | {ours} seeds | {ours} % | {other} seeds | {other} % | Δ {ours} - {other} [95% CI] | "
           f"Welch p |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rep.rows:
        out.append(f"| {r.label} | {r.ours.n} | {_pm(r.ours)} | {r.theirs.n} | {_pm(r.theirs)} | "
                   f"{_diff(r.comparison)} | {_p(r.comparison.p if r.comparison else None)} |")
    parts, pending = [], {}
    agree = [r.label for r in rep.rows if r.agrees]
    if agree:
        parts.append(f"{_and(agree)} agree{'s' if len(agree) == 1 else ''} with {other} (the 95% CI of Δ includes 0)")
    for r in rep.rows:
        k = r.comparison
        if r.agrees is False:
            gap = min(abs(k.low), abs(k.high))
            parts.append(f"{r.label} does not: Δ = {100 * k.diff:+.1f} points (95% CI {_ci(k, None)}, Welch p = "
                         f"{_p(k.p)}), at least {100 * gap:.1f} points from agreement")
        elif r.agrees is None:
            short = [f"{_finished(s.n)} in {name}" for name, s in ((ours, r.ours), (other, r.theirs)) if s.n < 2]
            pending.setdefault(" and ".join(short) or "no spread on either side", []).append(r.label)
    if pending:
        parts.append("not yet for " + ", ".join(f"{_and(labels)} ({why})" for why, labels in pending.items())
                     + ("; each side needs two finished seeds" if any("seed" in why for why in pending) else ""))
    text = "; ".join(parts)
    return out + ["", f"Do {ours}'s clean numbers replicate {other}'s? {text[0].upper()}{text[1:]}.", ""]


def _finished(n: int) -> str:
    return "no finished seed" if n == 0 else f"{n} finished seed{'s' if n != 1 else ''}"


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
           f"| gains k | draw | seeds | test accuracy, {_last(d)} % | Δ vs plain [95% CI] | Welch p |",
           "|---|---|---:|---:|---:|---:|"]
    for r in d.ablation:
        out.append(f"| [{r.key.replace(',', ', ')}) | {_draw(r.key)} | {r.acc.n} | {_pm(r.acc)} | "
                   f"{_diff(r.vs_plain)} | {_p(r.vs_plain.p if r.vs_plain else None)} |")
    return out + [""] + ([f"![{d.title} gain ablation]({fig})", ""] if fig else [])


def _confusion(d: DatasetSummary, fig: Optional[str]) -> list:
    if not d.confusion:
        return []
    tops = ", ".join(f"{LABELS[r.condition]} {_pct(r.test_top1)}%" for r in d.confusion)
    if not fig:
        return [f"Confusion matrices: none drawn, since {len(d.confusion[0].confusion[0])} classes are too many to "
                f"label; the test script's matrices are in the ledger (`confusion_matrix.csv`). Top-1 of the seed-0 "
                f"checkpoints: {tops}.", ""]
    return [f"![{d.title} confusion matrices]({fig})", "",
            "Row-normalised confusion matrices of the test script on the seed-0 checkpoints: top-1 " + tops
            + " (equal to the training runs' final-epoch test accuracy: same checkpoint, same images).", ""]


def _dataset(d: DatasetSummary, figs: dict, profile) -> list:
    f = _flags(d)
    n = f"{f['subset']:,}" if f.get("subset") else "All"
    out = [f"## {d.title}", "", f"{n} training images at {f['image-size']}×{f['image-size']}, "
           f"{f['epochs']} epochs, batch {f['batch-size']}; evaluated on {d.plan.eval_note}.", ""]
    if not d.main:
        return out + ["No finished runs yet.", ""]
    out += _main_table(d) + _verdicts(d)
    for kind, alt in (("curves", "learning curves"), ("delta", "spectral - plain per epoch")):
        if figs.get(kind):
            out += [f"![{d.title} {alt}]({figs[kind]})", ""]
    out += _replication(d, profile) + _lower_or_slower(d) + _robustness(d, figs.get("robustness"))
    out += _color(d) + _concat(d)
    out += _confusion(d, figs.get("confusion"))
    return out + _ablation(d, figs.get("ablation"))


def _gan_sets(g: GanSummary) -> dict:
    return {name: (mode, updates, swd, spec) for name, mode, updates, swd, spec in g.sets}


def _floor(g: GanSummary) -> str:
    if g.floor is None:
        return ""
    return (f"real vs held-out real faces score {g.floor.mean:.1f}" + (f" ± {g.floor.sd:.1f}" if g.floor.sd else "")
            + f" ({g.floor.n} draws of {g.n_real} faces; the noise floor)")


def gan_answer(g: GanSummary) -> str:
    """The GAN result in one sentence: the spectral modes' SWD against the plain DCGAN at matched updates."""
    sets = _gan_sets(g)
    numbers = ", ".join(f"{k} {_mean_sd(v[2])}" for k, v in sets.items())
    floor = f"; {_floor(g)}" if g.floor is not None else ""
    base = (f"sliced Wasserstein distance ×1e3 to held-out faces (lower is better; mean ± std over "
            f"{len(g.seeds)} seed{'s' if len(g.seeds) != 1 else ''}) {numbers}{floor}")
    words = []
    for mode, ref in (("components", "plain-matched"), ("joint", "plain"), ("components", "plain")):
        if mode in sets and ref in sets and not any(w.startswith(mode) for w in words):
            c = compare(sets[mode][2], sets[ref][2])
            who = f"{ref} at the {sets[ref][1]} updates its evaluated generator got"
            words.append(f"{mode} vs {who}: " + ("not testable with one seed" if c is None else
                         f"{'closer to' if c.diff < 0 else 'further from'} real faces (Welch p = {_p(c.p)})"
                         if c.significant else f"no significant difference (Welch p = {_p(c.p)})"))
    return base + (": " + "; ".join(words) if words else "") + "."


def _mean_sd(xs) -> str:
    s = spread(xs)
    return f"{s.mean:.1f}" + (f" ± {s.sd:.1f}" if s.sd is not None else "")


def _gan(s: Summary, figure: Optional[str] = None) -> list:
    g = s.gan
    if g is None:
        return []
    flags = " ".join(f"--{f} {v}" for f, v in s.profile.gan.flags)
    out = ["## GAN on faces (gan.py, gan_test.py)", "",
           f"DCGANs trained by `gan.py {flags}` on CelebA faces, {len(g.seeds)} seed(s) per mode, measured by "
           f"`gan_test.py` against {g.n_real} held-out faces: sliced Wasserstein distance ×1e3 (lower is better) and "
           f"the relative L1 distance of the mean TV spectrum to the real faces'. FID/KID: {g.fid_kid}.", "",
           "| set | mode | G updates of the evaluated generator | seeds | SWD avg ×1e3 | spectrum distance |",
           "|---|---|---:|---:|---:|---:|"]
    for name, mode, updates, swd, spec in g.sets:
        sd = spread(spec)
        out.append(f"| {name} | {mode} | {updates if updates is not None else '–'} | {len(swd)} | {_mean_sd(swd)} | "
                   f"{sd.mean:.3f}" + (f" ± {sd.sd:.3f}" if sd.sd is not None else "") + " |")
    if g.floor is not None:
        out += ["", f"Noise floor: {_floor(g)}: SWD differences within its spread say nothing."]
    out.append("")
    order = dict(s.profile.gan.flags).get("stage-order", "dissertation")
    if "components" in s.profile.gan.modes:
        out += [f"`components` is the dissertation's scheme, trained in {order} stage order: its recombination "
                "telescopes to the u_0 generator's sample, so that is the image evaluated, a DCGAN that got only "
                "its stage's share of the updates (the column above)"
                + ("; `plain-matched` is a plain DCGAN given exactly that many updates, the fair comparison for it"
                   if s.profile.gan.matched_plain else "")
                + ("; `joint` generates the bands and the residual as channels and sums them, an exact "
                   "reconstruction" if "joint" in s.profile.gan.modes else "") + " ([docs/gan.md](docs/gan.md)).", ""]
    if figure:
        out += [f"![GAN samples and mean TV spectra]({figure})", "",
                f"Samples of each mode beside real faces, and the mean TV spectrum S(t) of each set, seed "
                f"{g.seeds[0]} (`gan_test.py`'s figure, kept in the ledger).", ""]
    return out + [f"In one sentence: {gan_answer(g)}", ""]


def _stale(s: Summary) -> list:
    old = [r for r in s.runs if r.status != "current"]
    if not old:
        return []
    out = ["## Stale and unplanned runs (not in the tables above)", "",
           "Made by code whose fingerprint differs from the code the runs execute now "
           + (f"(the release `{s.profile.release}`'s; `code`)" if s.release_commit else "(`code`)") + ", or by other "
           "settings than the profile asks for now (`settings`), or not part of the plan any more. The sweep "
           "redoes the stale ones and replaces their entries.", "",
           "| run | status | why | final test accuracy % | code fingerprint | commit |", "|---|---|---|---:|---|---|"]
    for r in old:
        out.append(f"| `{r.id}` | {r.status} | {r.reason} | {_pct(r.test_acc)} | `{r.fingerprint[:12]}` | "
                   f"`{(r.commit or '?')[:10]}` |")
    return out + [""]


def _needs(d: DatasetSummary, a: str, b: str) -> str:
    """Why ``a - b`` has no answer yet: the arms short of two finished seeds."""
    n = {r.key: r.acc.n for r in d.main}
    short = [LABELS.get(k, k) for k in (a, b) if n.get(k, 0) < 2]
    if not short:
        return "no answer yet (neither arm has any spread)"
    return f"no answer yet ({_and(short)} " + ("needs two finished seeds)" if len(short) == 1 else
                                                "need two finished seeds each)")


def _answer(c: Contrast, what: str, first: bool) -> str:
    """``what``'s Δ, 95% CI, Welch p and verdict (with the power of its seeds); ``first``: it names the metric."""
    k = c.comparison
    return (f"{what}{f' on the last-{LAST_K}-epoch test accuracy' if first else ''} is {100 * k.diff:+.1f} points "
            f"(95% CI {_ci(k, c.margin)}, Welch p = {_p(k.p)}): "
            + _word(c, f"smallest difference detectable at {POWER:.0%} power: {100 * c.mdd:.1f} points"
                    if c.mdd is not None else ""))


def answer(d: DatasetSummary) -> str:
    """The answers for one dataset in one sentence, from the numbers (primary metric): spectral - plain (replace
    mode) with its controls, and where the plan trains the dissertation's protocol, spectral concat - plain and
    spectral concat - unsharp concat. Answers come first; each one still missing names the arms short of seeds."""
    answered, missing = [], []
    c = d.contrasts.get("spectral")
    if c is not None and c.comparison is not None:
        out = _answer(c, "spectral - plain", first=True)
        b = d.contrasts.get("bands")
        if b is not None and b.comparison is not None:
            out += (f"; against the unsharp mask of the same perturbation size {100 * b.comparison.diff:+.1f} points "
                    f"(95% CI {_ci(b.comparison, b.margin)}): {_word(b)}")
        ctl = d.contrasts.get("control")
        if ctl is not None and ctl.comparison is not None and not _control_shown(ctl):
            out += f"; crop+flip ({100 * ctl.comparison.diff:+.1f} points) {_CONTROL_NOT_SHOWN}"
        answered.append(out)
    elif "spectral" in d.plan.conditions:
        missing.append(f"spectral - plain: {_needs(d, 'spectral', 'plain')}")
    if "spectral-concat" in d.plan.conditions:
        against = ["plain"] + (["unsharp-concat"] if "unsharp-concat" in d.plan.conditions else [])
        for key, b in zip(("protocol", "protocol-bands"), against):
            what, c = f"{LABELS['spectral-concat']} - {LABELS[b]}", d.contrasts.get(key)
            if c is not None and c.comparison is not None:
                answered.append(_answer(c, what, first=not answered))
            else:
                missing.append(f"{what}: {_needs(d, 'spectral-concat', b)}")
    return "; ".join(answered + missing) + "."


def _holds(done: list) -> str:
    """What the answers hold for: the protocols tested and each dataset's image size; and what they do not."""
    plans = [d.plan for d in done]
    other = [] if any("spectral-concat" in pl.conditions for pl in plans) else ["concatenated batches"]
    if max(dict(pl.budget)["image-size"] for pl in plans) < 256:
        other.append("256 px images")
    return (f"Each answer holds for the protocol tested, the spectral augmentation in "
            f"{_and([d for _, d in _protocols(plans)] or ['no spectral condition'])}, and for the image size it "
            f"names ({_sizes(plans)})" + (f"; the dissertation's {_and(other)} are other settings." if other else "."))


def _closing(s: Summary) -> list:
    done = [d for d in s.datasets if d.main]
    if not done:
        return []
    rates = "; ".join(f"{d.title} {_rate(next(r for r in d.main if r.key == 'plain').images_per_s)}"
                      for d in done if any(r.key == "plain" for r in d.main))
    return ["## Closing note", "",
            f"The current runs took {_duration(s.wall_seconds)} of wall-clock time ({s.counts['done']} of "
            f"{s.planned} jobs). Training images/s per run (plain; a run's median epoch, mean over seeds): {rates}.", "",
            _holds(done), ""] + \
        [f"- {d.title} ({_flags(d)['image-size']} px): {answer(d)}" for d in done] + \
        ([f"- GAN on CelebA faces: {gan_answer(s.gan)}"] if s.gan is not None else []) + [""]


def render(s: Summary, figs: dict, fourier: Optional[dict] = None) -> str:
    """RESULTS.md as text; ``figs`` maps (dataset or None, kind) to a figure's repository-relative path;
    ``fourier``: the Fourier heat map's JSON where its figure is in ``figs``."""
    lines = _header(s)
    if figs.get((None, "accuracy")):
        lines += [f"![test accuracy per condition]({figs[(None, 'accuracy')]})", ""]
    lines += _setup(s) + _provenance(s)
    for d in s.datasets:
        lines += _dataset(d, {k: v for (ds, k), v in figs.items() if ds == d.name}, s.profile)
    cifar = [d.plan for d in s.datasets if d.name == "cifar10"]
    lines += _fourier(figs.get((None, "fourier")), fourier,
                      tuple(c for c in cifar[0].main if c in cifar[0].conditions) if cifar else ())
    lines += _gan(s, figs.get((None, "gan"))) + _stale(s) + _closing(s)
    return "\n".join(lines).rstrip("\n") + "\n"


def readme_block(s: Summary) -> str:
    p, report = s.profile, s.profile.report
    if not any(d.main for d in s.datasets):
        return (f"No runs yet: the ledger `results/runs/{p.name}/` holds 0 of the {s.planned} jobs of the "
                f"`{p.name}` profile ({p.description.split(':')[0]}). `python run_experiments.py --profile {p.name} "
                f"--commit` runs them; [{report}]({report}) then reports them.")
    lines = [f"From the `{p.name}` profile ({s.counts['done']} of {s.planned} jobs done"
             + (f", release `{p.release}`" if p.release else "") + f"; test accuracy averaged over each run's last "
             f"{LAST_K} epochs, mean ± std over seeds):", ""]
    for d in s.datasets:
        if not d.main:
            continue
        cells = ", ".join(f"{r.label} {_pm(r.acc).replace(' (1 seed)', '% (1 seed)')}".rstrip(")") + ")"
                          if r.acc.n == 1 else f"{r.label} {_pm(r.acc)}%" for r in d.main)
        n = d.main[0].acc.n
        lines.append(f"- {d.title} ({_flags(d)['image-size']} px, {n} seed{'s' if n != 1 else ''}): {cells}. "
                     f"{answer(d)[0].upper()}{answer(d)[1:]}")
    if s.gan is not None:
        lines.append(f"- GAN on CelebA faces ({dict(p.gan.flags).get('image-size', 64)} px): "
                     f"{gan_answer(s.gan)[0].upper()}{gan_answer(s.gan)[1:]}")
    return "\n".join(lines + ["", f"Details, curves, the controls, colour and the ablation: [{report}]({report})."])


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
        if old.stem != FOURIER:
            old.unlink()
    figs = {(None, "accuracy"): figures.accuracy(s, folder / "accuracy.png")}
    for d in s.datasets:
        figs[(d.name, "curves")] = figures.curves(d, folder / f"{d.name}_curves.png")
        figs[(d.name, "delta")] = figures.delta(d, folder / f"{d.name}_delta.png")
        figs[(d.name, "confusion")] = figures.confusion(d, folder / f"{d.name}_confusion.png")
        figs[(d.name, "ablation")] = figures.ablation(d, folder / f"{d.name}_ablation.png")
        figs[(d.name, "robustness")] = figures.robustness(d, folder / f"{d.name}_robustness.png")
    return {k: f"{rel}/{v}" for k, v in figs.items() if v}


def write(s: Summary, out_dir: Path) -> list:
    """Write the report, its figures and (for the main profile) the README block under ``out_dir``."""
    out_dir = Path(out_dir)
    rel = f"results/{s.profile.name}"
    figs = _figures(s, out_dir / rel, rel)
    if s.gan is not None and s.gan.figure is not None:
        # linked where the ledger keeps it rather than copied: the image is a run's output, not drawn here
        figs[(None, "gan")] = Path(os.path.relpath(s.gan.figure, out_dir)).as_posix()
    heat = out_dir / rel / FOURIER
    fourier = read_json(heat.with_suffix(".json")) if heat.with_suffix(".png").is_file() else None
    if fourier:
        figs[(None, "fourier")] = f"{rel}/{FOURIER}.png"
    atomic_write_text(out_dir / s.profile.report, render(s, figs, fourier))
    written = [s.profile.report] + sorted({v for k, v in figs.items() if k not in ((None, "gan"), (None, "fourier"))})
    if s.profile.readme and update_readme(out_dir / "README.md", readme_block(s)):
        written.append("README.md")
    return written
