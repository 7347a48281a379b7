"""The report's verdicts (interim, rounding near the margin, lower or slower), the end-of-run slope, the
robustness section, the closing answers, the matching and throughput notes, the replication of another profile
and the Fourier heat-map hook, on synthetic ledgers built from the committed smoke ledger."""

import json
import math
import re
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from test_experiments import LEDGER, ROOT, _as_current
from experiments import release, report, summary, throughput
from experiments.plan import plan
from experiments.profiles import LABELS, MATCHING, PROFILES
from toolkit import fingerprint
from experiments.stats import Comparison, end_slope, min_detectable_difference, slope
from toolkit.plots import WNID_NAMES

SMOKE = PROFILES["smoke"]
MAIN = ("plain", "spectral", "unsharp", "cropflip", "both")


# ------------------------------------------------------------------------------------------ stats

def test_end_slope_is_the_mean_of_per_seed_least_squares_slopes_with_a_t_interval():
    # k = 3: the first point of each curve lies outside the window and must not count.
    curves = [[(0, 9.0), (1, 0.10), (2, 0.12), (3, 0.17)],
              [(0, 9.0), (1, 0.20), (2, 0.20), (3, 0.23)],
              [(0, 9.0), (1, 0.10), (2, 0.15), (3, 0.20)]]
    # By hand: x mean 2, Sxx = 2; Sxy = 0.03 + 0.04, 0.01 + 0.02, 0.05 + 0.05.
    assert [slope(c[1:]) for c in curves] == pytest.approx([0.035, 0.015, 0.05])
    mean = (0.035 + 0.015 + 0.05) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in (0.035, 0.015, 0.05)) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)          # t(0.975, 2 df)
    s = end_slope(curves, k=3)
    assert (s.n, s.mean, s.low, s.high) == pytest.approx((3, mean, mean - half, mean + half))
    assert s.rises is False and end_slope([[(1, 0.1), (2, 0.2)]] * 2, k=3).rises is True
    assert end_slope(curves[:1], k=3).low is None and slope([(1, 0.5)]) is None


def _contrast(low, high, n=(4, 4), planned=(7, 7)):
    k = Comparison((low + high) / 2, low, high, 1.0, 6.0, 0.49)
    return summary.Contrast("spectral", "plain", k, None, "no effect larger than 2 points", n, 0.008, 0.02,
                            planned, 0.02)


def test_verdicts_say_interim_and_show_bounds_near_the_margin_to_two_decimals():
    line = report.verdict_line(_contrast(-0.0105, 0.0192), "spectral - plain")
    assert "95% CI [-1.05, +1.92]" in line
    assert "**no effect larger than 2 points**, interim (4 of 7 planned seeds)" in line
    line = report.verdict_line(_contrast(-0.0105, 0.0150, n=(3, 4)), "x")
    assert "95% CI [-1.1, +1.5]" in line and "interim (3 and 4 of 7 planned seeds)" in line
    assert "interim (3 of 3 and 4 of 7 planned seeds)" in report.verdict_line(
        _contrast(-0.0105, 0.0150, n=(3, 4), planned=(3, 7)), "x")
    assert "interim" not in report.verdict_line(_contrast(-0.0105, 0.0150, n=(7, 7)), "x")


# ------------------------------------------------------------------------------- synthetic ledgers

def _curve(path: Path, accs: list) -> None:
    """Give a run the test accuracy curve ``accs`` (and its last value as its final accuracy)."""
    metrics = path / "train" / "metrics.jsonl"
    lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
    assert len(lines) == len(accs)
    metrics.write_text("".join(json.dumps(dict(m, test_acc=a)) + "\n" for m, a in zip(lines, accs)))
    res = json.loads((path / "train" / "results.json").read_text())
    (path / "train" / "results.json").write_text(json.dumps(dict(res, test_acc=accs[-1])))


@pytest.mark.parametrize("both, word", [
    ([0.40, 0.40, 0.40], "**lower**: spectral + crop+flip stays below crop+flip at 3 epochs, and neither arm still "
                         "rises"),
    ([0.30, 0.35, 0.40], "**below at 3 epochs; lower or slower still open**: spectral + crop+flip still rises at "
                         "the end"),
])
def test_lower_only_when_neither_arm_still_rises(tmp_path, both, word):
    led = _as_current(tmp_path / "ledger")
    for seed in (0, 1):
        _curve(led / "smoke" / "cifar10" / f"cropflip-3ep/seed{seed}", [0.50 + seed / 100] * 3)
        _curve(led / "smoke" / "cifar10" / f"both-3ep/seed{seed}", [a + seed / 100 for a in both])
    md = report.render(summary.summarize(SMOKE, led), {})
    which = next(x for x in md.splitlines() if x.startswith("Which it was:"))
    assert word in which and "the slopes of test accuracy over epochs 1-3" in which, which
    assert re.search(r"crop\+flip \+0\.00 points/epoch \(95% CI \[\+0\.00, \+0\.00\], 2 seeds\)", which)


FAMILIES = {"noise": ("gaussian_noise", "shot_noise"), "blur": ("defocus_blur", "glass_blur"), "weather": ("fog",),
            "digital": ("jpeg_compression",)}
# Per condition: how far from plain the noise and blur families move (fractions); the rest stays put.
SHIFT = {"plain": (0, 0), "spectral": (0.10, -0.10), "unsharp": (0, 0), "cropflip": (0.001, 0.0), "both": (0.1, 0),
         "spectral-concat": (0.05, 0), "unsharp-concat": (0, 0)}


def _robustness(condition: str, seed: int) -> dict:
    noise, blur = SHIFT[condition]
    eps = seed / 500                              # seeds differ a little, the same in every condition
    fam = {"noise": 0.30 + noise + eps, "blur": 0.30 + blur + eps, "weather": 0.50 + eps / 10, "digital": 0.60}
    corr = {n: {"family": f, "accuracy": [fam[f]] * 5} for f, names in FAMILIES.items() for n in names
            if n != "glass_blur"}
    return {"images": 1000, "subset_seed": 7, "split": "test", "image_size": 32, "clean": 0.70 + eps,
            "corruptions": corr, "left_out": {"glass_blur": "too slow on a CPU"},
            "mean_corruption_accuracy": sum(fam[v["family"]] for v in corr.values()) / len(corr), "families": fam,
            "bands": {"removed_k0": 0.40 + eps, "amplified_k3.5": 0.45 + eps + noise},
            "library": "imagecorruptions-imaug 1.1.5", "seconds": {"generate": 12.0, "evaluate": 3.0}}


def _robust_ledger(dest: Path) -> Path:
    led = _as_current(dest)
    for c in MAIN:
        for seed in (0, 1):
            test = led / "smoke" / "cifar10" / c / f"seed{seed}" / "test"
            test.mkdir(exist_ok=True)
            (test / "robustness.json").write_text(json.dumps(_robustness(c, seed), indent=1))
    return led


def _relabelled(root: Path, prof, jobs, accuracy=None, manifest=None) -> Path:
    """Smoke runs copied under ``root`` as ``prof``'s ``jobs``, current against today's code (or the release
    ``manifest``'s); ``accuracy(job)``, where given, is the test accuracy of each of the run's epochs."""
    fingerprints = {}
    for j in jobs:
        entry = root / prof.name / j.id
        shutil.copytree(LEDGER / "smoke" / "cifar10" / "plain" / f"seed{min(j.seed, 1)}", entry)
        if j.scripts not in fingerprints:
            fingerprints[j.scripts] = (release.release_fingerprint(j.scripts, manifest) if manifest
                                       else fingerprint.fingerprint(j.scripts))[0]
        run = json.loads((entry / "run.json").read_text())
        run.update(id=j.id, profile=prof.name, dataset=j.dataset, table=j.table, condition=j.condition, seed=j.seed,
                   spec=j.spec(), fingerprint=fingerprints[j.scripts])
        (entry / "run.json").write_text(json.dumps(run))
        if accuracy is not None:
            _curve(entry, [accuracy(j)] * 2)          # the smoke runs have two epochs
    return root


def _write(out: Path, led: Path, profile=SMOKE) -> str:
    out.mkdir(parents=True, exist_ok=True)
    report.write(summary.summarize(profile, led), out)
    return (out / profile.report).read_text()


def test_robustness_tables_verdicts_left_out_and_figure(tmp_path):
    led = _robust_ledger(tmp_path / "ledger")
    md = _write(tmp_path / "a", led)
    assert md == _write(tmp_path / "b", led)
    fig = tmp_path / "a" / "results" / "smoke" / "cifar10_robustness.png"
    assert fig.read_bytes() == (tmp_path / "b" / "results" / "smoke" / "cifar10_robustness.png").read_bytes()
    assert "### Robustness: corrupted and band-modified test images" in md
    assert ("| condition | seeds | clean % | mean corruption % | noise % | blur % | weather % | digital % | "
            "bands removed, k = 0 % | bands amplified, k = 3.5 % |") in md
    assert "| plain | 2 | 70.1 ± 0.1 | " in md and "| spectral + crop+flip | 2 |" in md
    rows = {x.split(" | ")[0][2:]: x.split(" | ")[1:] for x in md.splitlines() if x.startswith("| ")}
    header = rows["Δ vs plain, points [95% CI], Welch p: verdict"]
    assert header[:4] == ["spectral", "unsharp mask", "crop+flip", "spectral + crop+flip |"]
    assert rows["noise"][0].endswith("**helps**") and rows["blur"][0].endswith("**hurts**")
    assert rows["digital"][0] == "–"                 # no spread in either arm: no test
    assert re.match(r"\+0\.1 \[-0\.\d, \+0\.\d\], p [\d.]+: \*\*no effect larger than 2 points\*\*",
                    rows["noise"][2]), rows["noise"][2]
    assert rows["bands amplified, k = 3.5"][0].endswith("**helps**")
    assert "- Mean corruption accuracy, spectral - plain: " in md and "Interim" not in md
    assert "Corruptions left out: glass_blur (too slow on a CPU; 10 of 10 runs)." in md
    assert ("1,000 images of the 'test' split (drawn with seed 7) at 32 px, corrupted by imagecorruptions-imaug "
            "1.1.5 at severities 1-5") in md and "noise: gaussian_noise, shot_noise; blur: defocus_blur;" in md
    assert "![CIFAR-10 robustness, Δ vs plain per corruption family](results/smoke/cifar10_robustness.png)" in md


def test_robustness_verdicts_are_interim_while_seeds_are_short(tmp_path):
    ds = SMOKE.datasets[0]
    more = replace(SMOKE, datasets=(replace(ds, extra_seeds=(2,)),))
    md = report.render(summary.summarize(more, _robust_ledger(tmp_path / "ledger")), {})
    assert ("Interim: verdicts from fewer seeds than planned (plain 2 of 3, spectral 2 of 3, unsharp mask 2 of 3, "
            "crop+flip 2 of 3, spectral + crop+flip 2 of 3).") in md
    assert re.search(r"Mean corruption accuracy, spectral - plain: .*\*\*, interim \(2 of 3 planned seeds\)", md)


def test_robustness_takes_the_conditions_the_ledger_has(tmp_path):
    """robust128's CIFAR-10 main table, the dissertation's protocol and its control included, from smoke runs
    relabelled as its jobs (the release's manifest left aside: the runs count against today's code)."""
    prof = replace(PROFILES["robust128"], release="")
    jobs = [j for j in plan(prof) if j.dataset == "cifar10" and j.table == "main"]
    assert {"spectral-concat", "unsharp-concat"} <= {j.condition for j in jobs}
    _relabelled(tmp_path / "ledger", prof, jobs)
    for j in jobs:
        entry = tmp_path / "ledger" / prof.name / j.id
        (entry / "test").mkdir(exist_ok=True)
        (entry / "test" / "robustness.json").write_text(json.dumps(_robustness(j.condition, j.seed)))
    s = summary.summarize(prof, tmp_path / "ledger")
    rb = s.datasets[[d.name for d in s.datasets].index("cifar10")].robustness
    assert [r.key for r in rb.rows] == ["plain", "spectral", "unsharp", "cropflip", "spectral-concat", "unsharp-concat"]
    md = report.render(s, {})
    assert "| spectral concat, per batch | 3 | " in md
    assert "Mean corruption accuracy, spectral concat, per batch - plain: +2.0 points" in md
    assert re.search(r"- spectral concat, per batch - unsharp concat, per batch \(the TV bands against a "
                     r"perturbation of the same size, in the dissertation's protocol\): [+-]0\.0 points", md)
    assert "![CIFAR-10 confusion" not in md and "Confusion matrices" not in md   # robust128 names none


# Three seeds per arm, sd 1 point, means 5 points apart: by hand, Welch's t = 5 / (1 * sqrt(2/3)) = 6.12 with 4 df,
# 95% CI 5 ± t(0.975, 4) sqrt(2/3) = 5 ± 2.27 points, two-sided p = 0.0036.
FIVE_APART = "+5.0 points (95% CI [+2.7, +7.3], Welch p = 0.004)"


def _closing_line(md: str, title: str) -> str:
    return next(x for x in md.splitlines() if x.startswith(f"- {title} ("))


def test_closing_note_answers_the_protocol_while_spectral_is_still_missing(tmp_path):
    """robust128's Imagenette trains spectral (replace mode) last: with three seeds of plain and the protocol's two
    conditions, its closing line answers the protocol, and says which arm the spectral answer waits for."""
    prof = replace(PROFILES["robust128"], release="")
    level = {"plain": 0.50, "spectral-concat": 0.55}
    jobs = [j for j in plan(prof) if j.dataset == "imagenette" and j.table == "main" and j.seed < 3
            and j.condition in ("plain", "spectral-concat", "unsharp-concat")]
    # unsharp concat: mean 0.55 - 0.01, sd 2 points, so spectral concat - unsharp concat is +1.0 and inconclusive
    led = _relabelled(tmp_path / "ledger", prof, jobs, lambda j: level[j.condition] + j.seed / 100
                      if j.condition in level else 0.53 + 2 * j.seed / 100)
    s = summary.summarize(prof, led)
    line = _closing_line(report.render(s, {}), "Imagenette")
    power = f"smallest difference detectable at 80% power: {100 * min_detectable_difference(0.01, 3, 3):.1f} points"
    assert line.startswith(f"- Imagenette (128 px): spectral concat, per batch - plain on the last-5-epoch test "
                           f"accuracy is {FIVE_APART}: **helps**, interim (3 of 6 planned seeds; {power}); "), line
    assert re.search(r"; spectral concat, per batch - unsharp concat, per batch is \+1\.0 points \(95% CI "
                     r"\[-\d\.\d, \+\d\.\d\], Welch p = 0\.\d{3}\): \*\*inconclusive\*\*, interim \(3 of 6 planned "
                     r"seeds; smallest", line), line
    assert line.endswith("; spectral - plain: no answer yet (spectral needs two finished seeds).")
    d = next(d for d in s.datasets if d.name == "imagenette")
    assert report.answer(d) in line and report.answer(d).count("no answer yet") == 1


def test_closing_note_names_every_arm_short_of_seeds():
    s = summary.summarize(replace(PROFILES["robust128"], release=""), LEDGER)          # no robust128 run there
    d = next(d for d in s.datasets if d.name == "cifar10")
    assert report.answer(d) == (
        "spectral - plain: no answer yet (spectral and plain need two finished seeds each); spectral concat, per "
        "batch - plain: no answer yet (spectral concat, per batch and plain need two finished seeds each); spectral "
        "concat, per batch - unsharp concat, per batch: no answer yet (spectral concat, per batch and unsharp concat, "
        "per batch need two finished seeds each).")


def test_without_the_protocol_the_answer_is_spectral_with_its_controls(tmp_path):
    """A plan without the dissertation's protocol (smoke, like scale2) keeps its one answer and its controls."""
    line = _closing_line(report.render(summary.summarize(SMOKE, _as_current(tmp_path / "ledger")), {}), "CIFAR-10")
    assert re.fullmatch(r"- CIFAR-10 \(32 px\): spectral - plain on the last-5-epoch test accuracy is [+-]\d+\.\d "
                        r"points \(95% CI \[.*\], Welch p = [\d.]+\): \*\*\w+\*\* \(smallest difference detectable "
                        r"at 80% power: [\d.]+ points\); against the unsharp mask of the same perturbation size "
                        r"[+-]\d+\.\d points \(95% CI \[.*\]\): \*\*\w+\*\*; crop\+flip \([+-]\d+\.\d points\) is not "
                        r"a significant gain at this budget, [^;]*\.", line), line


def _setup_text(profile, tmp_path) -> str:
    return report.render(summary.summarize(profile, tmp_path / "empty"), {})


def test_per_batch_matching_rows_come_from_the_matching_file(tmp_path):
    md = _setup_text(PROFILES["robust128"], tmp_path)
    sizes = json.loads(MATCHING.read_text())["sizes"]
    for title, name, size in (("Imagenette", "imagenette", 128), ("CIFAR-10", "cifar10", 32)):
        e = sizes[name][str(size)]["per-batch"]
        assert (f"| {title} | 512 of its 'train' split ({name}.zip) | {size} | 128 | 1 | [{e['amount'][0]:g}, "
                f"{e['amount'][1]:g}) | {e['spectral_norm']:.2f} | {e['unsharp_norm']:.2f} | "
                f"{e['spectral_norm_sd']:.2f} / {e['unsharp_norm_sd']:.2f} |") in md
    assert "Per batch one amount a is drawn" in md and "matched in the mean and in the spread over batches" in md
    # A plan whose unsharp-concat flags are not the measured ones gets no row, and says so.
    prof = PROFILES["robust128"]
    cifar = prof.dataset("cifar10")
    hand = replace(cifar, protocol_unsharp=tuple((f, "1,2" if f == "unsharp-amount" else v)
                                                 for f, v in cifar.protocol_unsharp))
    md = _setup_text(replace(prof, datasets=(prof.dataset("imagenette"), hand)), tmp_path)
    assert "Not matched per batch at the profile's image size: CIFAR-10." in md
    assert "| CIFAR-10 | 512 of its 'train' split (cifar10.zip) | 32 | 128 |" not in md
    assert "| Imagenette | 512 of its 'train' split (imagenette.zip) | 128 | 128 |" in md
    assert "The protocol's matched control" not in _setup_text(PROFILES["scale2"], tmp_path)


def _conditions_line(md: str) -> str:
    return next(x for x in md.splitlines() if x.startswith("Conditions, all at the same budget"))


def test_setup_lists_the_conditions_the_profile_trains(tmp_path):
    robust = _conditions_line(_setup_text(PROFILES["robust128"], tmp_path))
    assert "spectral + crop+flip" not in robust
    assert "horizontal flip, the standard augmentation and the *positive control*. Of these, Imagenette trains only " \
           "plain and spectral (and the dissertation's protocol, below). Each seed draws" in robust
    scale2 = _conditions_line(_setup_text(PROFILES["scale2"], tmp_path))
    assert "**unsharp mask**: the matched non-spectral control (below); **crop+flip**" in scale2
    assert "**spectral + crop+flip**: both. Each seed draws" in scale2 and "Of these" not in scale2
    assert "unsharp mask" not in _conditions_line(_setup_text(PROFILES["scale"], tmp_path))   # it had no control


def test_a_channels_last_profile_shows_the_format_measurement(tmp_path, monkeypatch):
    best = [{"image_size": size, "batch": 128, "layout": layout, "format": fmt, "images_per_s": rate, "tries": [rate]}
            for size, layout, fmt, rate in ((32, "1x2", "contiguous", 500.0), (32, "1x2", "channels_last", 550.0),
                                            (32, "2x1", "contiguous", 600.0), (32, "2x1", "channels_last", 600.0),
                                            (128, "1x2", "contiguous", 30.0), (128, "1x2", "channels_last", 40.0),
                                            (128, "1x2", "compile", 33.0))]
    measured = {"command": "python -m experiments.throughput --formats contiguous,channels_last,compile",
                "measured": "2030-01-02", "machine": {"cpu": "Some CPU", "cores": 2, "torch": "9.9"},
                "seconds_per_configuration": 30.0, "best": best, "format_ratios": throughput.format_ratios(best)}
    path = tmp_path / "formats.json"
    path.write_text(json.dumps(measured))
    monkeypatch.setattr(report, "FORMATS_THROUGHPUT", path)
    md = _setup_text(PROFILES["robust128"], tmp_path)
    assert ("with `python -m experiments.throughput --formats contiguous,channels_last,compile` (Some CPU, 2 cores, "
            "torch 9.9, 2030-01-02;") in md
    # no run yet: the profile's layout (1 x 2) at every size
    assert ("In the layout the runs used, channels_last / contiguous is 1.10 at 32 px (batch 128, 1 run × 2 threads) "
            "and 1.33 at 128 px (batch 128, 1 run × 2 threads).") in md and "The file holds no measurement" not in md
    assert ("| image size | batch | layout | contiguous, images/s | channels_last, images/s | compile, images/s | "
            "channels_last / contiguous |") in md
    assert "| 32 | 128 | 1 run × 2 threads (the runs') | 500.0 | 550.0 | – | 1.10 |" in md
    assert "| 32 | 128 | 2 runs × 1 thread | 600.0 | 600.0 | – | 1.00 |" in md
    assert "| 128 | 128 | 1 run × 2 threads (the runs') | 30.0 | 40.0 | 33.0 | 1.33 |" in md
    # runs at 32 px recorded two runs of one thread: that row is theirs, 128 px keeps the profile's
    ran = replace(summary.summarize(PROFILES["robust128"], tmp_path / "empty"), size_layouts=((32, "2x1"),))
    md = report.render(ran, {})
    assert ("channels_last / contiguous is 1.00 at 32 px (batch 128, 2 runs × 1 thread) and 1.33 at 128 px (batch 128, "
            "1 run × 2 threads).") in md
    assert "| 32 | 128 | 1 run × 2 threads | 500.0 | 550.0 | – | 1.10 |" in md
    assert "| 32 | 128 | 2 runs × 1 thread (the runs') | 600.0 | 600.0 | – | 1.00 |" in md
    assert "The batch size was chosen by measuring" in md
    scale2 = _setup_text(PROFILES["scale2"], tmp_path)
    assert "channels_last" not in scale2 and "The batch size and the layout (runs at once × threads) were" in scale2


def test_replication_compares_the_conditions_both_profiles_train_at_one_budget(tmp_path):
    """robust128's CIFAR-10 runs against scale2's (judged against scale2's release, as the report does): plain
    agrees, spectral does not, unsharp has one robust128 seed and crop+flip none."""
    root = tmp_path / "ledger"
    prof, other = replace(PROFILES["robust128"], release=""), PROFILES["scale2"]

    def main(p, conditions):
        return [j for j in plan(p) if j.dataset == "cifar10" and j.table == "main" and j.seed < 3
                and conditions.get(j.condition, 0) > j.seed]

    _relabelled(root, prof, main(prof, {"plain": 3, "spectral": 3, "unsharp": 1}),
                lambda j: 0.60 + j.seed / 100)
    ours = {"plain": 0.605, "spectral": 0.55, "unsharp": 0.60}
    _relabelled(root, other, main(other, {"plain": 3, "spectral": 3, "unsharp": 3}),
                lambda j: ours[j.condition] + j.seed / 100, manifest=release.load(other.release))
    md = report.render(summary.summarize(prof, root), {})
    assert md.count("### Replication of scale2") == 1
    section = md[md.index("## CIFAR-10"):]
    assert "### Replication of scale2" in section and "### Replication" not in md[md.index("## Imagenette"):
                                                                                  md.index("## CIFAR-10")]
    assert "The conditions robust128 trains as scale2 (release `results-v2`) did:" in section
    assert "| plain | 3 | 61.0 ± 1.0 | 3 | 61.5 ± 1.0 | -0.5 [-2.8, +1.8] |" in section
    assert "| spectral | 3 | 61.0 ± 1.0 | 3 | 56.0 ± 1.0 | +5.0 [+2.7, +7.3] | 0.004 |" in section
    assert "| unsharp mask | 1 | 60.0 (1 seed) | 3 | 61.0 ± 1.0 | – | – |" in section
    assert "| crop+flip | 0 | – | 0 | – | – | – |" in section
    assert ("Do robust128's clean numbers replicate scale2's? Plain agrees with scale2 (the 95% CI of Δ includes 0); "
            f"spectral does not: Δ = {FIVE_APART}, at least 2.7 points from "
            "agreement; not yet for unsharp mask (1 finished seed in robust128), crop+flip (no finished seed in "
            "robust128 and no finished seed in scale2); each side needs two finished seeds.") in section
    assert "Replication" not in report.render(summary.summarize(other, root), {})


def test_runs_without_robustness_leave_the_report_as_it_was():
    s = summary.summarize(SMOKE, LEDGER)
    assert all(r.robustness is None for r in s.runs) and all(d.robustness is None for d in s.datasets)
    assert "Robustness" not in report.render(s, {})


def test_fourier_heat_map_is_linked_with_a_sentence_from_its_json(tmp_path):
    out = tmp_path / "out"
    folder = out / "results" / "smoke"
    folder.mkdir(parents=True)
    (folder / "fourier_heatmap.png").write_bytes(b"made by another script")
    (folder / "fourier_heatmap.json").write_text(json.dumps(
        {"conditions": {"plain": {"error": [[0.2, 0.4], [0.6, 0.8]], "clean_error": 0.25},
                        "spectral": {"error": [[0.1, 0.3], [0.5, 0.3]]}}, "norm": 4, "images": 500}))
    md = _write(out, _as_current(tmp_path / "ledger"))
    assert (folder / "fourier_heatmap.png").read_bytes() == b"made by another script"     # kept, not redrawn
    assert "![Fourier heat map](results/smoke/fourier_heatmap.png)" in md
    assert ("perturbation of L2 norm 4, one frequency at a time, on 500 test images (`python -m "
            "experiments.fourier_heatmap`), averaged over the map's frequencies: plain 50.0% (clean 25.0%, highest "
            "80.0%), spectral 30.0% (highest 50.0%).") in md
    # the map is to cover CIFAR-10's main conditions: the ones it lacks are named
    plan = SMOKE.dataset("cifar10")
    missing = [LABELS[c] for c in plan.main if c in plan.conditions and c not in ("plain", "spectral")]
    assert missing and f"Not mapped yet: {report._and(missing)}." in md


# ------------------------------------------------------------------------------ class names

# Imagenette's classes as fast.ai lists them.
IMAGENETTE = {"n01440764": "tench", "n02102040": "English springer", "n02979186": "cassette player",
              "n03000684": "chain saw", "n03028079": "church", "n03394916": "French horn",
              "n03417042": "garbage truck", "n03425413": "gas pump", "n03445777": "golf ball",
              "n03888605": "parachute"}


def test_every_listed_imagenette_class_id_has_its_name():
    assert {k: WNID_NAMES.get(k) for k in IMAGENETTE} == IMAGENETTE


def test_every_class_folder_of_the_imagenette_archive_has_a_name():
    archive = ROOT.parent / "shared" / "data" / "imagenette.zip"
    if not archive.is_file():
        pytest.skip(f"needs the Imagenette archive {archive}, absent on this machine")
    with zipfile.ZipFile(archive) as z:
        ids = {n.split("/")[1] for n in z.namelist() if n.count("/") >= 2 and n.split("/")[1]}
    assert len(ids) == 10 and all(i in WNID_NAMES for i in ids), sorted(ids - set(WNID_NAMES))


def test_a_run_s_training_rate_is_its_median_epoch():
    # two epochs slowed by other work on the machine (or a paused run) do not set the rate; the mean would
    epochs = [{"images_per_s": r} for r in (300.0, 40.0, 310.0, 290.0, 25.0)]
    assert summary._median_rate(epochs) == 290.0
    assert summary._median_rate(epochs[:4]) == 295.0
    assert summary._median_rate([{"epoch": 1}]) is None
