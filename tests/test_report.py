"""The report's verdicts (interim, rounding near the margin, lower or slower), the end-of-run slope, the
robustness section and the Fourier heat-map hook, on synthetic ledgers built from the committed smoke ledger."""

import json
import math
import re
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from test_experiments import LEDGER, ROOT, _as_current
from experiments import report, summary
from experiments.plan import plan
from experiments.profiles import PROFILES
from toolkit import fingerprint
from experiments.stats import Comparison, end_slope, slope
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
    for j in jobs:
        entry = tmp_path / "ledger" / prof.name / j.id
        shutil.copytree(LEDGER / "smoke" / "cifar10" / "plain" / f"seed{min(j.seed, 1)}", entry)
        run = json.loads((entry / "run.json").read_text())
        run.update(id=j.id, profile=prof.name, table=j.table, condition=j.condition, seed=j.seed, spec=j.spec(),
                   fingerprint=fingerprint.fingerprint(j.scripts)[0])
        (entry / "run.json").write_text(json.dumps(run))
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
