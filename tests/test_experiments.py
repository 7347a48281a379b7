"""run_experiments.py and experiments/: the plan, staleness, the ledger, the statistics and the report.

The report is checked on a small committed ledger (``tests/ledger``, a real ``smoke`` sweep, remade by
``rm -rf tests/ledger runs/sweep-smoke && python run_experiments.py --profile smoke --ledger-dir tests/ledger``,
then ``find tests/ledger -name "*.png" -delete``: the GAN figure is made by the test that needs it);
the runner's skip/resume/redo logic on a toy script (no torch, fast); the smoke profile end to end
on two of its jobs.
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import run_experiments  # noqa: E402
from toolkit.io_utils import write_json  # noqa: E402
from toolkit.errors import UserError  # noqa: E402
from experiments import ledger, release, report, runner, summary  # noqa: E402
from toolkit import fingerprint  # noqa: E402
from experiments.plan import Job, Step, command, plan, select  # noqa: E402
from experiments.profiles import CONDITIONS, PROFILES  # noqa: E402
from experiments.stats import (compare, last_mean, min_detectable_difference, pooled_sd, sd_upper_bound,  # noqa: E402
                               seeds_for_half_width, spread, verdict)

LEDGER = ROOT / "tests" / "ledger"
README_TEXT = (ROOT / "README.md").read_text()


def _flags(job, step=0) -> dict:
    return dict(job.steps[step].flags)


# ----------------------------------------------------------------------------------------- plan

def test_scale2_plan_counts_budgets_and_order():
    prof = PROFILES["scale2"]
    jobs = plan(prof)
    assert len({j.id for j in jobs}) == len(jobs)
    for ds, seeds in (("cifar10", 5), ("imagenette", 7), ("flowers102", 5)):
        main = [j for j in jobs if j.dataset == ds and j.table == "main"]
        for c in CONDITIONS:
            assert sorted(j.seed for j in main if j.condition == c) == list(range(seeds)), (ds, c)
        # One budget for every condition: same images, size, epochs, batch and lr.
        budgets = {tuple(_flags(j)[k] for k in ("subset", "image-size", "epochs", "batch-size", "lr")) for j in main}
        assert len(budgets) == 1, budgets
        assert not [j for j in jobs if j.dataset == ds and j.table == "concat"]    # superseded by robust128
        un = _flags(next(j for j in main if j.condition == "unsharp"))
        assert un["unsharp-prob"] == 0.5 and "," in un["unsharp-amount"] and "gains" not in un
    c10 = {j.id: j for j in jobs if j.dataset == "cifar10"}
    assert _flags(c10["cifar10/plain/seed0"])["subset"] == 25_000 and _flags(c10["cifar10/plain/seed0"])["epochs"] == 20
    sp = _flags(c10["cifar10/spectral/seed1"])
    assert (sp["spectral-mode"], sp["spectral-prob"], sp["gains"], sp.get("std-aug")) == ("replace", 0.5, "3,5", None)
    assert c10["cifar10/unsharp/seed1"].steps[0].script == "train_pt.py"
    assert _flags(c10["cifar10/cropflip/seed1"]).get("std-aug") is True and "gains" not in _flags(c10["cifar10/cropflip/seed1"])
    assert _flags(c10["cifar10/both/seed1"]).get("std-aug") is True
    color = [j for j in jobs if j.table == "color"]
    assert sorted((j.condition, j.seed) for j in color) == [(c, s) for c in ("cropflip", "plain", "spectral")
                                                            for s in range(3)]
    assert all(_flags(j).get("color") is True and j.dataset == "cifar10" for j in color)
    long = {(j.dataset, j.condition, _flags(j)["epochs"], j.seed) for j in jobs if j.table == "long"}
    assert long == {(d, c, e, s) for d, e in (("flowers102", 60), ("cifar10", 40)) for c in ("cropflip", "both")
                    for s in range(3)}
    abl = [j for j in jobs if j.table == "ablation"]
    assert sorted((j.gains, j.seed) for j in abl) == [(g, s) for g in ("0.0,1.0", "1.5,2.5") for s in range(3)]
    # Order: the key comparison seed by seed across datasets; crop+flip and both; colour, long, GANs; extra seeds
    # (key conditions first); the old budgets; the optional long runs last.
    ids = [j.id for j in jobs]
    assert ids[:9] == [f"{d}/{c}/seed0" for d in ("cifar10", "imagenette", "flowers102")
                       for c in ("plain", "spectral", "unsharp")]
    kinds = [(j.table, j.seed >= 3) for j in jobs]
    first = {k: kinds.index(k) for k in kinds}
    last = {k: max(i for i, x in enumerate(kinds) if x == k) for k in kinds}
    assert last[("main", False)] < first[("color", False)] < first[("gan", False)] < first[("main", True)]
    assert last[("main", True)] < first[("ablation", False)]
    extra = [j for j in jobs if j.table == "main" and j.seed >= 3]
    assert max(i for i, j in enumerate(extra) if j.condition in ("plain", "spectral", "unsharp")) < \
        min(i for i, j in enumerate(extra) if j.condition in ("cropflip", "both"))
    assert all(j.table == "long" and j.dataset == "cifar10" for j in jobs[-6:])
    assert ids.index("flowers102/cropflip-60ep/seed0") < first[("gan", False)]
    # The GANs: three seeds of the three modes and a plain DCGAN given the updates of components' u_0 generator.
    gans = [j for j in jobs if j.table == "gan"]
    assert [j.id for j in gans] == [f"celeba/gan/seed{s}" for s in range(3)]
    steps = {s.name: dict(s.flags) for s in gans[1].steps}
    assert list(steps) == ["plain", "components", "joint", "plain-matched", "test"]
    assert steps["plain-matched"]["max-steps"] == 750 and steps["plain"]["max-steps"] == 3000
    assert steps["plain-matched"]["mode"] == "plain" and steps["plain-matched"]["seed"] == 1
    assert steps["test"]["floor-draws"] == 5
    # The test script runs on the seed-0 checkpoints of the conditions whose confusion matrix the report shows.
    tested = sorted(j.id for j in jobs if j.table != "gan" and len(j.steps) == 2)
    assert tested == sorted(f"{d}/{c}/seed0" for d in ("cifar10", "imagenette", "flowers102") for c in ("plain", "spectral"))


def test_retired_scale_profile_keeps_its_plan_so_its_ledger_stays_readable():
    jobs = plan(PROFILES["scale"])
    assert len(jobs) == 60 and not any(j.condition == "unsharp" or j.table in ("color", "long") for j in jobs)
    assert PROFILES["scale"].report != PROFILES["scale2"].report and not PROFILES["scale"].readme
    # Its entries differ from today's code at most, never in their settings.
    states = {ledger.status(j, ledger.read_entry(ledger.DEFAULT_ROOT, "scale", j.id))[1] for j in jobs}
    assert states <= {"", "code"}


def test_seeds_come_from_the_first_sweeps_spread():
    from experiments import profiles, seeds
    est = seeds.estimate("scale")
    assert {k: v["seeds"] for k, v in est.items()} == profiles.SEEDS_ESTIMATE
    for name, e in est.items():
        n = len(PROFILES["scale2"].dataset(name).seeds) + len(PROFILES["scale2"].dataset(name).extra_seeds)
        assert n == max(e["seeds"], profiles.MIN_SEEDS)
    assert est["imagenette"]["seeds"] == 7 and est["imagenette"]["df"] == 4


def test_dry_run_estimates_the_hours(capsys):
    assert run_experiments.main(run_experiments.get_args_parser().parse_args(
        ["--profile", "scale2", "--dry-run", "--ledger-dir", "/nonexistent"])) == 0
    out = capsys.readouterr().out
    assert "115 jobs: 0 done, 115 pending" in out
    hours = float(re.search(r"; all ([\d.]+) h, (\d+) session\(s\) of 3 h", out).group(1))
    assert 15 < hours < 30


def test_dry_run_of_a_selection_times_it_with_the_datasets_other_finished_runs(capsys, tmp_path):
    # A ledger holding the committed 30-epoch Flowers102 runs but none at 60 epochs: a selection of the
    # pending 60-epoch runs is timed with those finished runs, exactly as in the whole plan, not with the
    # profile's images/s.
    committed = ROOT / "results" / "runs" / "scale2" / "flowers102"
    shutil.copytree(committed, tmp_path / "scale2" / "flowers102",
                    ignore=lambda folder, names: [n for n in names if n.endswith("-60ep")])

    def minutes(extra):
        assert run_experiments.main(run_experiments.get_args_parser().parse_args(
            ["--profile", "scale2", "--dry-run", "--ledger-dir", str(tmp_path)] + extra)) == 0
        out = capsys.readouterr().out
        return out, {job: m for m, job in re.findall(r"~\s*(\d+) min  (flowers102/\S+-60ep/seed\d)", out)}
    _, every = minutes([])
    selected_out, selected = minutes(["--only", "flowers102/*60ep*"])
    assert len(selected) == 6 and selected == {k: v for k, v in every.items() if k in selected}
    assert "flowers102 from its finished runs" in selected_out


def test_estimates_use_the_ledgers_finished_runs_where_a_dataset_has_them():
    from experiments import runner
    job = next(j for j in plan(PROFILES["scale2"]) if j.id == "cifar10/plain/seed0")
    run = {"dataset": "cifar10", "table": "main", "spec": job.spec(), "layout": {"jobs": 2},
           "steps": [{"resumed": False}]}
    images = 25000 * 20
    runs = [dict(run, seconds=2000.0), dict(run, seconds=3000.0), dict(run, seconds=2400.0),
            dict(run, seconds=50.0, steps=[{"resumed": True}])]       # a resumed run timed its last attempt only
    measured = runner.measured_rates(runs)
    assert measured == {"cifar10": pytest.approx(2400.0 / 2 / images)}
    assert runner.estimate_seconds(job, PROFILES["scale2"], measured) == pytest.approx(1200.0)
    concat = next(j for j in plan(PROFILES["paper"]) if j.id == "cifar10/concat/seed0")    # 10 epochs, twice the images
    assert runner.estimate_seconds(concat, PROFILES["scale2"], measured) == pytest.approx(1200.0)
    other = next(j for j in plan(PROFILES["scale2"]) if j.id == "imagenette/plain/seed0")  # no run: the profile's rate
    assert runner.estimate_seconds(other, PROFILES["scale2"], measured) == pytest.approx(1.1 * 9000 * 15 / 300)


def test_paper_profile_is_the_dissertation_on_a_gpu():
    prof = PROFILES["paper"]
    assert prof.device == "cuda" and prof.jobs > 1
    for j in plan(prof):
        if j.table != "gan":
            assert _flags(j)["batch-size"] == 20
    assert _flags(next(j for j in plan(prof) if j.id == "flowers102/plain/seed0"))["image-size"] == 256


def test_select_by_dataset_condition_or_pattern():
    jobs = plan(PROFILES["scale2"])
    assert {j.dataset for j in select(jobs, ["imagenette"])} == {"imagenette"}
    assert {j.condition for j in select(jobs, ["*/cropflip/*"])} == {"cropflip"}
    assert [j.id for j in select(jobs, ["cifar10/plain/seed0"])] == ["cifar10/plain/seed0"]
    assert select(jobs, ["cifar"]) == [] and select(jobs, []) == jobs


def test_commands_use_repository_relative_paths():
    job = next(j for j in plan(PROFILES["scale2"]) if j.id == "cifar10/spectral/seed0")
    paths = dict(data=ROOT.parent / "shared" / "data" / "cifar10.zip", work=ROOT / "runs" / "sweep-scale",
                 cache=ROOT / "runs" / "sweep-scale" / "cache", device="cpu")
    train, test = (command(job, s, **paths) for s in job.steps)
    assert train[0] == "train_pt_aug.py" and test[0] == "test_pt.py"
    assert not any(a.startswith("/") for a in train + test)
    assert train[train.index("--data-dir") + 1] == "../shared/data/cifar10.zip"
    assert test[test.index("--checkpoint") + 1] == "runs/sweep-scale/cifar10/spectral/seed0/train/checkpoint.pt"


# ---------------------------------------------------------------------------------- staleness

def test_fingerprint_ignores_comments_docstrings_and_help_but_not_code(tmp_path):
    (tmp_path / "lib.py").write_text('"""Doc."""\nX = 1  # one\n')
    main = tmp_path / "main.py"
    main.write_text('import argparse\n\ndef f():\n    """Doc."""\n    import lib\n    p = argparse.ArgumentParser()\n'
                    '    p.add_argument("--a", default=1, help="the a")\n    return lib.X\n')

    def fp():
        fingerprint.clear_cache()
        return fingerprint.fingerprint(["main.py"], root=tmp_path)

    digest, files = fp()
    assert sorted(files) == ["lib.py", "main.py"]           # a lazy import inside a function counts
    main.write_text(main.read_text().replace('"""Doc."""', '"""Other words."""').replace('"the a"', '"A."')
                    + "# a comment\n\n")
    assert fp()[0] == digest
    main.write_text(main.read_text().replace("default=1", "default=2"))
    assert fp()[0] != digest
    digest = fp()[0]
    (tmp_path / "lib.py").write_text('"""Doc."""\nX = 2\n')
    assert fp()[0] != digest


def test_real_scripts_cover_the_modules_they_import():
    _, files = fingerprint.fingerprint(["train_pt_aug.py"])
    assert {"train_pt_aug.py", "pock.py", "pock_cpu.py", "toolkit/__init__.py"} | \
        {f"toolkit/{m}.py" for m in ("classify", "bandcache", "data", "models", "training", "configs", "cli",
                                      "io_utils", "fingerprint")} <= set(files)
    assert not any(f.startswith(("experiments/", "tests/")) for f in files)
    _, files = fingerprint.fingerprint(["gan_test.py"])
    assert {"toolkit/gan_common.py", "toolkit/gan_metrics.py", "toolkit/gan_driver.py", "pock.py"} <= set(files)


def test_fingerprint_follows_package_and_relative_imports(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from . import b\nfrom .c import X\n")
    (tmp_path / "pkg" / "b.py").write_text("Y = 1\n")
    (tmp_path / "pkg" / "c.py").write_text("X = 1\n")
    (tmp_path / "pkg" / "unused.py").write_text("Z = 1\n")
    (tmp_path / "main.py").write_text("import os\nfrom pkg import a\n")
    fingerprint.clear_cache()
    assert fingerprint.code_files(["main.py"], root=tmp_path) == (
        "main.py", "pkg/__init__.py", "pkg/a.py", "pkg/b.py", "pkg/c.py")


def test_status_pending_done_stale():
    job = plan(PROFILES["smoke"])[0]
    fp, _ = fingerprint.fingerprint(job.scripts)
    run = {"spec": job.spec(), "fingerprint": fp}
    assert ledger.status(job, None) == ("pending", "")
    assert ledger.status(job, run) == ("done", "")
    assert ledger.status(job, dict(run, fingerprint="0" * 64)) == ("stale", "code")
    other = json.loads(json.dumps(job.spec()))
    other["steps"][0]["flags"][0][1] = "99"
    assert ledger.status(job, dict(run, spec=other)) == ("stale", "settings")


# ------------------------------------------------------------------- runner: skip, resume, redo

TOY = """import json, pathlib, sys
a = sys.argv[1:]
out = pathlib.Path(a[a.index("--output-dir") + 1])
out.mkdir(parents=True, exist_ok=True)
with open(out / "seen.txt", "a") as f:
    f.write(" ".join(a) + "\\n")
(out / "checkpoint.pt").write_text("weights")
if (out / "fail").exists():
    (out / "fail").unlink()
    sys.exit(3)
(out / "results.json").write_text(json.dumps({"test_acc": VALUE}))
(out / "curves.png").write_text("not a small file")
"""


def _toy(tmp_path, value):
    script = tmp_path / "toy.py"
    script.write_text(TOY.replace("VALUE", str(value)))
    job = Job("toy/plain/seed0", "toy", "main", "plain", 0,
              (Step("train", str(script), (("seed", 0),), data=False, resumable=True, device=False),))
    ctx = runner.Context(PROFILES["smoke"], tmp_path / "work", tmp_path / "ledger", {}, 1, 1, log=lambda m: None)
    fingerprint.clear_cache()
    return job, ctx


def test_runner_resumes_records_small_files_only_and_redoes_stale(tmp_path):
    job, ctx = _toy(tmp_path, 0.5)
    out = ctx.work / job.id / "train"
    out.mkdir(parents=True)
    (out / "fail").write_text("")
    assert runner.sweep([job], ctx) == 1                           # the script failed: nothing recorded
    assert ledger.read_entry(ctx.ledger, "smoke", job.id) is None
    assert runner.sweep([job], ctx) == 0                           # continues from its checkpoint
    seen = (out / "seen.txt").read_text().splitlines()
    assert "--resume" not in seen[0] and seen[1].endswith("--resume")
    entry = ledger.entry_dir(ctx.ledger, "smoke", job.id)
    assert sorted(p.relative_to(entry).as_posix() for p in entry.rglob("*") if p.is_file()) == \
        ["run.json", "train/results.json"]
    run = ledger.read_entry(ctx.ledger, "smoke", job.id)
    assert ledger.status(job, run)[0] == "done" and run["steps"][0]["resumed"] is True
    # The code changes: the entry is stale, the work folder (made by the old code) is cleared, the job redone.
    job, ctx = _toy(tmp_path, 0.75)
    assert ledger.status(job, run) == ("stale", "code")
    assert runner.sweep([job], ctx) == 0
    assert len((out / "seen.txt").read_text().splitlines()) == 1
    assert json.loads((entry / "train" / "results.json").read_text()) == {"test_acc": 0.75}
    assert ledger.status(job, ledger.read_entry(ctx.ledger, "smoke", job.id))[0] == "done"


def test_commit_takes_only_the_entry(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = lambda *a: subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True, text=True).stdout  # noqa
    git("init", "-q")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    (repo / "other.txt").write_text("someone's staged work\n")
    git("add", "other.txt")
    entry = repo / "results" / "runs" / "smoke" / "a"
    entry.mkdir(parents=True)
    (entry / "run.json").write_text("{}\n")
    old = ledger.REPO
    ledger.REPO = repo
    try:
        ledger.commit(entry, "results/runs: a")
        ledger.commit(entry, "results/runs: a again")                # nothing new: no empty commit
    finally:
        ledger.REPO = old
    assert git("log", "--format=%s").split("\n")[0] == "results/runs: a"
    assert git("show", "--name-only", "--format=").split() == ["results/runs/smoke/a/run.json"]
    assert "A  other.txt" in git("status", "--porcelain")


# ---------------------------------------------------------------------------------- statistics

def test_welch_difference_interval_and_p_match_the_textbook_formula():
    from scipy import stats
    a, b = [0.71, 0.74, 0.69, 0.73, 0.72], [0.64, 0.66, 0.65]
    c = compare(a, b)
    va, vb = stats.tvar(a) / len(a), stats.tvar(b) / len(b)
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))  # Welch–Satterthwaite
    half = stats.t.ppf(0.975, dof) * math.sqrt(va + vb)
    diff = sum(a) / len(a) - sum(b) / len(b)
    assert c.diff == pytest.approx(diff) and c.dof == pytest.approx(dof)
    assert (c.low, c.high) == (pytest.approx(diff - half), pytest.approx(diff + half))
    t = diff / math.sqrt(va + vb)
    assert c.t == pytest.approx(t) and c.p == pytest.approx(2 * stats.t.sf(abs(t), dof)) and c.significant
    assert not compare([0.5, 0.52, 0.48], [0.51, 0.49, 0.50]).significant
    assert compare([0.5], [0.5, 0.6]) is None and compare([0.5, 0.5], [0.5, 0.5]) is None
    s = spread([0.1, 0.2, 0.3])
    assert (s.n, s.mean, s.sd) == (3, pytest.approx(0.2), pytest.approx(0.1)) and spread([0.4]).sd is None


def test_primary_metric_is_the_mean_of_the_last_five_epochs():
    assert last_mean([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]) == pytest.approx(0.5)
    assert last_mean([0.2, 0.4]) == pytest.approx(0.3) and last_mean([]) is None
    assert last_mean([0.1, 0.9, 0.5], k=1) == 0.5


def test_power_matches_the_textbook():
    from scipy import stats
    # Cohen (1988): 64 per group detect d = 0.5 with 80% power at two-sided alpha 0.05.
    assert min_detectable_difference(1.0, 64, 64) == pytest.approx(0.5, abs=0.002)
    assert min_detectable_difference(2.0, 64, 64) == pytest.approx(2 * min_detectable_difference(1.0, 64, 64))
    # Large samples: the normal approximation (z_0.975 + z_0.8) sd sqrt(2/n).
    z = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * math.sqrt(2 / 2000)
    assert min_detectable_difference(1.0, 2000, 2000) == pytest.approx(z, rel=2e-3)
    # At the returned difference the noncentral t rejects with probability 0.8 exactly.
    d, df = min_detectable_difference(1.0, 3, 3), 4
    nc, crit = d / math.sqrt(2 / 3), stats.t.ppf(0.975, df)
    assert stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc) == pytest.approx(0.8, abs=1e-6)
    assert min_detectable_difference(1.0, 3, 3) > min_detectable_difference(1.0, 7, 7)


def test_seeds_for_a_half_width_and_the_sd_bound():
    from scipy import stats
    n = seeds_for_half_width(1.56, 2.0)
    half = lambda k: stats.t.ppf(0.975, 2 * k - 2) * 1.56 * math.sqrt(2 / k)  # noqa: E731
    assert half(n) <= 2.0 < half(n - 1) and n == 7
    assert sd_upper_bound(1.0, 4, 0.9) == pytest.approx(math.sqrt(4 / stats.chi2.ppf(0.1, 4)))
    assert pooled_sd([1.0, 3.0], [5.0, 5.0, 8.0]) == pytest.approx(math.sqrt((2 + 6) / 3))


@pytest.mark.parametrize("a, b, word", [
    ([0.70, 0.71, 0.72], [0.60, 0.61, 0.62], "helps"),
    ([0.60, 0.61, 0.62], [0.70, 0.71, 0.72], "hurts"),
    ([0.700, 0.705, 0.710], [0.701, 0.706, 0.709], "no effect larger than 2 points"),
    ([0.60, 0.70, 0.65], [0.62, 0.71, 0.61], "inconclusive"),
])
def test_verdicts_follow_the_declared_rules(a, b, word):
    c = compare(a, b)
    assert verdict(c, 0.02) == word
    if word.startswith("no effect"):
        assert -0.02 <= c.low and c.high <= 0.02 and not c.significant
    if word == "inconclusive":
        assert not c.significant and (c.low < -0.02 or c.high > 0.02)
    assert verdict(None, 0.02) == "no answer yet"


# -------------------------------------------------------------------------------------- report

def _write_report(out: Path, ledger_root: Path, profile="smoke"):
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.md").write_text(f"head\n{report.README_START}\nold\n{report.README_END}\ntail\n")
    return report.write(summary.summarize(PROFILES[profile], ledger_root), out)


def _files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _as_current(dest: Path) -> Path:
    """A copy of the committed ledger whose runs count as made by today's code and smoke profile.

    The committed runs go stale whenever the code they ran changes; the report's rendering is
    tested on them as if they were current (staleness has its own tests).
    """
    shutil.copytree(LEDGER, dest)
    jobs = {j.id: j for j in plan(PROFILES["smoke"])}
    for path in (dest / "smoke").rglob("run.json"):
        run = json.loads(path.read_text())
        job = jobs[run["id"]]
        run.update(spec=job.spec(), fingerprint=fingerprint.fingerprint(job.scripts)[0])
        path.write_text(json.dumps(run, indent=1) + "\n")
    return dest


def test_report_is_a_pure_function_of_the_committed_ledger(tmp_path):
    assert (LEDGER / "smoke").is_dir(), "the committed test ledger is missing"
    # Two copies in different places, as on two clones.
    _write_report(tmp_path / "a", _as_current(tmp_path / "one" / "ledger"))
    _write_report(tmp_path / "b", _as_current(tmp_path / "two" / "x" / "ledger"))
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a == b and "RESULTS-smoke.md" in a and any(k.endswith("_curves.png") for k in a)
    md = a["RESULTS-smoke.md"].decode()
    for needle in ("24 of 24 planned jobs done", "Positive control", "| plain | 2 |", "| unsharp mask | 2 |",
                   "Gain ablation", "GAN on faces", "sha256", "## Closing note", "### Lower or slower?",
                   "at 3 epochs: spectral + crop+flip - crop+flip", "### Colour", "2 of 2 colour spectral runs record "
                   "`vectorial_tv: true`", "spectral - unsharp mask", "Noise floor: real vs held-out real faces",
                   "| plain-matched | plain | 2 | 2 |", "final epoch %", "last 2 epochs", "smallest difference "
                   "detectable at 80% power", "Not matched (the profile sets s and a by hand): CIFAR-10."):
        assert needle in md, needle
    assert re.search(r"\*\*(helps|hurts|inconclusive|no effect larger than 2 points)\*\*", md)
    floor = json.loads((LEDGER / "smoke" / "celeba" / "gan" / "seed1" / "test" / "metrics.json").read_text())["swd_floor"]
    assert floor["draws"] == 2 and len(floor["avg"]) == 2 and floor["std"] is not None
    assert "Stale" not in md
    # No machine paths, no software versions or times in the committed files.
    machine = re.compile(rb"/(work|tmp|home|root)/|" + re.escape(str(ROOT).encode()))
    for name, data in list(a.items()) + [(str(p), p.read_bytes()) for p in LEDGER.rglob("*") if p.is_file()]:
        assert not machine.search(data), name
        if name.endswith(".png"):
            assert b"matplotlib" not in data and b"Software" not in data, name


def test_stale_runs_stay_out_of_the_tables(tmp_path):
    led = _as_current(tmp_path / "ledger")
    path = led / "smoke" / "cifar10" / "cropflip" / "seed1" / "run.json"
    run = json.loads(path.read_text())
    path.write_text(json.dumps(dict(run, fingerprint="f" * 64)))
    s = summary.summarize(PROFILES["smoke"], led)
    assert s.counts == {"done": 23, "pending": 0, "stale": 1}
    row = next(r for r in s.datasets[0].main if r.key == "cropflip")
    assert [r.seed for r in row.runs] == [0] and row.vs_plain is None
    md = report.render(s, {})
    assert "| `cifar10/cropflip/seed1` | stale | code |" in md and "| crop+flip | 1 |" in md


def test_lower_or_slower_with_one_long_row_names_only_the_runs_there_are(tmp_path):
    # Mid-sweep: crop+flip has a run at the longer budget, spectral + crop+flip none yet.
    led = _as_current(tmp_path / "ledger")
    shutil.rmtree(led / "smoke" / "cifar10" / "both-3ep")
    md = report.render(summary.summarize(PROFILES["smoke"], led), {})
    line = next(x for x in md.splitlines() if x.startswith("- at 3 epochs: spectral + crop+flip"))
    assert "no answer yet" in line and "; ." not in line and "spectral + crop+flip seeds" not in line
    assert re.search(r"\d of 2 crop\+flip seeds reach their best test accuracy at the last epoch\.$", line)


def test_gan_figure_is_kept_without_metadata_and_linked_from_the_report(tmp_path):
    from PIL import Image, PngImagePlugin
    out = tmp_path / "out"
    led = _as_current(out / "results" / "runs")              # the ledger inside the report's folder, as in the repo
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "Matplotlib version 9.9")
    pixels = (np.arange(6 * 5 * 3) % 256).astype(np.uint8).reshape(6, 5, 3)
    Image.fromarray(pixels).save(tmp_path / "made.png", pnginfo=info)
    raw = (tmp_path / "made.png").read_bytes()
    figure = led / "smoke" / "celeba" / "gan" / "seed0" / "test" / "samples_spectra.png"
    figure.write_bytes(ledger.strip_png_metadata(raw))
    assert b"Software" in raw and b"Software" not in figure.read_bytes()
    assert np.array_equal(np.asarray(Image.open(figure)), pixels)
    with pytest.raises(ValueError, match="not a PNG file"):
        ledger.strip_png_metadata(b"GIF89a")
    with pytest.raises(ValueError, match="truncated PNG file"):
        ledger.strip_png_metadata(raw[:40])

    written = _write_report(out, led)
    md = (out / "RESULTS-smoke.md").read_text()
    assert "![GAN samples and mean TV spectra](results/runs/smoke/celeba/gan/seed0/test/samples_spectra.png)" in md
    s = summary.summarize(PROFILES["smoke"], led)
    answer = report.gan_answer(s.gan)
    assert f"- GAN on CelebA faces: {answer}" in md and s.gan.seeds == (0, 1)
    assert f"px): {answer[0].upper()}{answer[1:]}" in report.readme_block(s)
    assert not any("samples_spectra" in w for w in written)  # linked, not drawn or copied by the report


def test_gan_answer_compares_at_matched_updates_over_seeds():
    def gan(**swd):
        sets = tuple((k, "plain" if k.startswith("plain") else k, 750 if k in ("components", "plain-matched") else 3000,
                      v, (0.1,) * len(v)) for k, v in swd.items())
        return summary.GanSummary((0, 1, 2), sets, spread([10.0, 10.4, 10.2]), 3, 1000, "skipped")
    worse = report.gan_answer(gan(plain=(15.0, 15.2, 15.1), components=(18.0, 18.3, 18.1),
                                  **{"plain-matched": (16.0, 16.1, 16.2)}, joint=(15.1, 14.9, 15.3)))
    assert "plain 15.1 ± 0.1, components 18.1 ± 0.2" in worse and "real vs held-out real faces score 10.2 ± 0.2" in worse
    assert "components vs plain-matched at the 750 updates its evaluated generator got: further from real faces" in worse
    assert "joint vs plain at the 3000 updates its evaluated generator got: no significant difference" in worse
    one = summary.GanSummary((0,), (("plain", "plain", 3000, (15.0,), (0.1,)),
                                    ("joint", "joint", 3000, (14.0,), (0.1,))), None, 0, 1000, "skipped")
    assert report.gan_answer(one).endswith("joint vs plain at the 3000 updates its evaluated generator got: not "
                                           "testable with one seed.")


def _tree_manifest(tag: str) -> dict:
    """A release manifest of the working tree, as if it had been tagged ``tag``."""
    files = [*ROOT.glob("*.py"), *ROOT.glob("toolkit/*.py"), *ROOT.glob("experiments/*.py")]
    return release.manifest(tag, "f" * 40, {p.relative_to(ROOT).as_posix(): p.read_text() for p in files})


def test_report_names_the_release_the_runs_executed(tmp_path):
    import dataclasses
    led = _as_current(tmp_path / "ledger")
    for i, path in enumerate(sorted((led / "smoke").rglob("run.json"))):
        run = json.loads(path.read_text())
        path.write_text(json.dumps(dict(run, release=["results-v9"] if i else [])))
    write_json(tmp_path / "releases" / "results-v9.json", _tree_manifest("results-v9"))
    prof = dataclasses.replace(PROFILES["smoke"], release="results-v9")
    md = report.render(summary.summarize(prof, led, tmp_path / "releases"), {})
    assert "**Release:** every run in the tables executed the code of release `results-v9` (commit `ffffffffffff`" in md
    assert "23 of the 24 runs started from a commit carrying the tag" in md
    assert "matches the release's (`results/releases/results-v9.json`)" in md
    with pytest.raises(UserError, match="no manifest of release results-v9; make it from the tag with python -m "
                                        "experiments.release results-v9"):
        summary.summarize(prof, led, tmp_path / "elsewhere")


# A release not cut yet (robust128 before its sweep) has neither a manifest nor runs to check.
@pytest.mark.parametrize("name", [n for n, p in PROFILES.items() if p.release and (ledger.DEFAULT_ROOT / n).is_dir()])
def test_release_manifest_gives_the_fingerprints_the_runs_recorded(name):
    """The committed manifest reproduces, without git, the fingerprint every run of the ledger recorded when it
    ran from a checkout of the tag; and it is what git holds at the release's commit, where the clone has it."""
    prof = PROFILES[name]
    rel = release.load(prof.release)
    jobs = {j.id: j for j in plan(prof)}
    runs = [json.loads(p.read_text()) for p in (ledger.DEFAULT_ROOT / name).rglob("run.json")]
    assert runs, f"the {name} ledger is empty"
    for run in runs:
        fp, files = release.release_fingerprint(jobs[run["id"]].scripts, rel)
        assert (fp, files) == (run["fingerprint"], run["code"]), run["id"]
    have = subprocess.run(["git", "cat-file", "-e", rel["commit"] + "^{commit}"], cwd=ROOT, capture_output=True)
    if have.returncode == 0:   # the digests are git's files (the imports follow the fingerprint rules of their day)
        made = release.make(rel["commit"])["files"]
        assert {n: f["digest"] for n, f in rel["files"].items()} == {n: made[n]["digest"] for n in rel["files"]}


def _new_repo(folder: Path):
    """``git(*args)`` in a fresh repository at ``folder``."""
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=folder, check=True,
                       capture_output=True)
    git("init", "-q")
    return git


def test_main_moving_on_leaves_a_releases_runs_current_and_the_sweep_refuses_other_code(tmp_path):
    git = _new_repo(tmp_path)
    (tmp_path / "engine.py").write_text("x = 1\n")
    (tmp_path / "main.py").write_text("def f():\n    import engine\n    return engine.x\n")
    git("add", "engine.py", "main.py")
    git("commit", "-qm", "code")
    git("tag", "results-v9")
    fingerprint.clear_cache()
    fp, _ = fingerprint.fingerprint(["main.py"], root=tmp_path)
    rel = release.make("results-v9", repo=tmp_path)
    assert release.release_fingerprint(["main.py"], rel)[0] == fp
    (tmp_path / "engine.py").write_text("x = 2  # main moved on\n")
    fingerprint.clear_cache()
    assert fingerprint.fingerprint(["main.py"], root=tmp_path)[0] != fp
    assert release.release_fingerprint(["main.py"], rel)[0] == fp
    assert release.differences(["main.py"], rel, root=tmp_path) == ["engine.py"]
    job = Job("toy/plain/seed0", "toy", "main", "plain", 0, (Step("train", "main.py", (("seed", 0),)),))
    run = {"spec": job.spec(), "fingerprint": fp}
    assert ledger.status(job, run, rel) == ("done", "")
    assert ledger.status(job, dict(run, fingerprint="0" * 64), rel) == ("stale", "code")
    # The real sweep: with code on main that differs from the release, run_experiments refuses to run a job.
    moved = _tree_manifest("results-v9")
    moved["files"]["pock.py"]["digest"] = "0" * 64
    todo = select(plan(PROFILES["smoke"]), ["cifar10/plain/seed0"])
    run_experiments.check_release(PROFILES["smoke"], _tree_manifest("results-v9"), todo)
    with pytest.raises(UserError, match=r"^the smoke profile is pinned to release results-v9 \(commit ffffffffffff\), "
                                        r"but this checkout's code differs from it in pock.py, which "
                                        r"cifar10/plain/seed0 executes; run the sweep from a worktree of the tag: "
                                        r"git worktree add -b sweep-results-v9 ../results-v9 results-v9$"):
        run_experiments.check_release(PROFILES["smoke"], moved, todo)


@pytest.mark.parametrize("name", [n for n, p in PROFILES.items() if not p.generated_data and
                                  (ledger.DEFAULT_ROOT / n).is_dir()])
def test_committed_reports_are_what_the_committed_ledger_gives(tmp_path, name):
    """RESULTS.md (and RESULTS-scale-v1.md, and the README's results block) regenerate byte for byte from the
    committed ledger, as `run_experiments.py --report-only` does on a fresh clone: after merging finished runs,
    rerun it and commit what it writes."""
    prof = PROFILES[name]
    for ledger_of in filter(None, (name, prof.replicates)):      # a replication reads the other profile's ledger too
        shutil.copytree(ledger.DEFAULT_ROOT / ledger_of, tmp_path / "results" / "runs" / ledger_of)
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    # the Fourier heat map is another script's output that the report links and quotes: an input, as the ledger is
    for made in (ROOT / "results" / name).glob(f"{report.FOURIER}.*"):
        (tmp_path / "results" / name).mkdir(parents=True, exist_ok=True)
        shutil.copy(made, tmp_path / "results" / name / made.name)
    report.write(summary.summarize(prof, tmp_path / "results" / "runs"), tmp_path)
    assert (tmp_path / prof.report).read_text() == (ROOT / prof.report).read_text(), \
        f"{prof.report} is not what the ledger gives: python run_experiments.py --profile {name} --report-only"
    assert (tmp_path / "README.md").read_text() == README_TEXT, \
        f"README.md's results block is not what the ledger gives: python run_experiments.py --profile {name} --report-only"


def test_empty_ledger_says_no_runs_yet(tmp_path):
    written = _write_report(tmp_path / "out", tmp_path / "empty", profile="scale2")
    md = (tmp_path / "out" / "RESULTS.md").read_text()
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "No runs yet" in md and "0 of 115 planned jobs" in md and "## CIFAR-10" in md
    assert "| CIFAR-10 | 512 of its 'train' split (cifar10.zip) | 32 | 1 |" in md      # the matching, stated
    assert readme.startswith("head\n") and readme.endswith("tail\n") and "No runs yet" in readme
    assert "README.md" in written and not list((tmp_path / "out" / "results" / "scale2").glob("*.png"))


def test_readme_block_is_replaced_between_the_markers_only(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\n{run_experiments.README_START}\nold\n{run_experiments.README_END}\nafter\n")
    assert run_experiments.update_readme(readme, "new\nlines")
    assert readme.read_text() == f"# T\n{run_experiments.README_START}\nnew\nlines\n{run_experiments.README_END}\nafter\n"
    (tmp_path / "B.md").write_text("no markers\n")
    assert not run_experiments.update_readme(tmp_path / "B.md", "x")


# ---------------------------------------------------------------------------------- end to end

def test_smoke_profile_end_to_end(tmp_path):
    """Two smoke jobs for real (training + the test script), then a second call that runs nothing."""
    argv = [sys.executable, "run_experiments.py", "--profile", "smoke", "--work-dir", str(tmp_path / "work"),
            "--ledger-dir", str(tmp_path / "ledger"), "--report-dir", str(tmp_path / "out"),
            "--only", "cifar10/plain/seed0", "--only", "cifar10/color-spectral/seed1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    base = tmp_path / "ledger" / "smoke" / "cifar10"
    run = json.loads((base / "plain/seed0/run.json").read_text())
    res = json.loads((base / "plain/seed0/train/results.json").read_text())
    test = json.loads((base / "plain/seed0/test/metrics.json").read_text())
    assert abs(test["top1"] - res["test_acc"]) < 1e-9 and (base / "plain/seed0/test/confusion_matrix.csv").is_file()
    assert not list((tmp_path / "ledger").rglob("*.pt")) and not list((tmp_path / "ledger").rglob("*.png"))
    assert run["data"]["name"] == "cifar10.zip" and len(run["data"]["sha256"]) == 64
    args = json.loads((base / "color-spectral/seed1/train/args.json").read_text())
    assert args["spectral_mode"] == "replace" and args["color"] is True and args["vectorial_tv"] is True
    md = (tmp_path / "out" / "RESULTS-smoke.md").read_text()
    assert "2 of 24 planned jobs done, 22 pending" in md
    p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0 and "0 to run" in p.stdout and "start" not in p.stdout.split("0 to run")[1]


def test_release_is_the_tag_whose_code_the_run_executes(tmp_path):
    """A branch of the tag that adds only ledger files still runs the release; changed code does not."""
    git = _new_repo(tmp_path)
    (tmp_path / "engine.py").write_text("x = 1\n")
    git("add", "engine.py")
    git("commit", "-qm", "code")
    git("tag", "results-v9")
    assert runner.release_tags(["engine.py"], repo=tmp_path) == ["results-v9"]
    (tmp_path / "ledger.json").write_text("{}\n")
    git("add", "ledger.json")
    git("commit", "-qm", "a finished run")
    assert runner.release_tags(["engine.py"], repo=tmp_path) == ["results-v9"]
    (tmp_path / "engine.py").write_text("x = 2\n")
    assert runner.release_tags(["engine.py"], repo=tmp_path) == []


def test_device_data_keeps_whole_splits_and_the_first_images_per_class(tmp_path):
    import zipfile
    from experiments.device_data import slim
    src = tmp_path / "full.zip"
    with zipfile.ZipFile(src, "w") as z:
        for split in ("train", "test", "extra"):
            for cls in ("cat", "dog"):
                z.writestr(f"{split}/{cls}/", "")
                for i in range(4):
                    z.writestr(f"{split}/{cls}/{i:04d}.jpg", f"{split}-{cls}-{i}".encode())
    dst = tmp_path / "slim.zip"
    assert slim(src, dst, {"test": None, "train": 2}) == 8 + 4
    with zipfile.ZipFile(dst) as z:
        names = set(z.namelist())
        assert {n for n in names if n.startswith("train/")} == {f"train/{c}/{i:04d}.jpg" for c in ("cat", "dog")
                                                                  for i in (0, 1)}
        assert sum(n.startswith("test/") for n in names) == 8 and not any(n.startswith("extra/") for n in names)
        assert z.read("test/dog/0003.jpg") == b"test-dog-3"     # byte for byte


def test_device_data_names_a_missing_archive(tmp_path):
    from experiments import device_data
    from toolkit.errors import UserError
    args = device_data.get_args_parser().parse_args(["--data-root", str(tmp_path), "--output-dir", str(tmp_path / "o")])
    with pytest.raises(UserError, match=r"cifar10\.zip: no such archive; pass --data-root the folder that holds "
                                        r"cifar10\.zip and imagenette\.zip"):
        device_data.main(args)
    assert not (tmp_path / "o").exists()       # nothing half-written


def test_provenance_names_each_layout_in_correct_number():
    # The sweep ran some jobs alone with two threads and some three at once; the report must say so plainly.
    assert summary._layout({"jobs": 1, "threads": 2, "device": "cpu"}) == "1 run at once × 2 threads on cpu"
    assert summary._layout({"jobs": 3, "threads": 1, "device": "cpu"}) == "3 runs at once × 1 thread on cpu"
