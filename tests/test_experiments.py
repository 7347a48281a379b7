"""run_experiments.py: the plan keeps budgets equal, the smoke sweep runs end to end, resumes and reports."""

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import run_experiments as rx  # noqa: E402


def _settings(step):
    """A step's flags as {flag: value or True}."""
    out, i, f = {}, 0, step.flags
    while i < len(f):
        if i + 1 < len(f) and not f[i + 1].startswith("--"):
            out[f[i]] = f[i + 1]
            i += 2
        else:
            out[f[i]] = True
            i += 1
    return out


@pytest.mark.parametrize("name", ["cpu", "paper"])
def test_plan_equal_budgets(name, tmp_path):
    profile = rx.PROFILES[name]
    data = {k: f"/data/{k}.zip" for k in ("cifar10", "flowers102", "imagenette", "celeba")}
    steps = rx.plan(profile, tmp_path, data)
    names = [s.name for s in steps]
    assert len(names) == len(set(names))
    for ds, cfg in profile["datasets"].items():
        main = [s for s in steps if s.info.get("table") == "main" and s.info["dataset"] == ds]
        n_seeds = len(cfg["seeds"]) + len(cfg.get("extra_seeds", []))
        assert len(main) == len(rx.CONDITIONS) * n_seeds and len(cfg["seeds"]) >= 3
        budgets = {tuple(_settings(s).get(k) for k in ("--epochs", "--batch-size", "--subset", "--image-size",
                                                       "--eval-subset")) for s in main}
        assert len(budgets) == 1, budgets                         # same steps and images for every condition
        for s in main:
            st = _settings(s)
            spectral = s.info["condition"].startswith("spectral")
            assert (st.get("--spectral-mode") == "replace") == spectral
            assert ("--std-aug" in st) == s.info["condition"].endswith("std")
        concat = [s for s in steps if s.info.get("condition") == "spectral (concat)" and s.info["dataset"] == ds]
        if cfg.get("dissertation"):
            assert concat and all(_settings(s)["--spectral-mode"] == "concat" for s in concat)
            assert all(_settings(s)["--epochs"] == str(cfg["dissertation"]["aug"]["epochs"]) for s in concat)
    abl = [s for s in steps if s.info.get("table") == "ablation"]
    assert {(s.info["bands"], s.info["gains"]) for s in abl} == set(rx.ABLATION_CPU)


def test_welch_separates_and_not():
    t, p = rx.welch([0.50, 0.51, 0.49], [0.70, 0.71, 0.69])
    assert p < 0.001 and t < 0
    _, p = rx.welch([0.50, 0.52, 0.48], [0.51, 0.49, 0.50])
    assert p > 0.5
    assert rx.welch([0.5], [0.6, 0.7]) == (None, None)
    m, s = rx.mean_std([1.0, 2.0, 3.0])
    assert m == 2.0 and abs(s - 1.0) < 1e-12


def test_readme_block_only_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\nintro\n{rx.README_START}\nold numbers\n{rx.README_END}\nafter\n")
    assert rx.update_readme(readme, "new numbers\nline 2")
    text = readme.read_text()
    assert text == f"# Title\nintro\n{rx.README_START}\nnew numbers\nline 2\n{rx.README_END}\nafter\n"
    plain = tmp_path / "OTHER.md"
    plain.write_text("no markers\n")
    assert not rx.update_readme(plain, "x") and plain.read_text() == "no markers\n"


def _run(argv):
    return rx.main(rx.get_args_parser().parse_args(argv))


def test_smoke_profile_end_to_end(tmp_path, capsys):
    sweep, out = tmp_path / "sweep", tmp_path / "out"
    readme = tmp_path / "README.md"
    readme.write_text(f"head\n{rx.README_START}\n{rx.README_END}\ntail\n")
    argv = ["--profile", "smoke", "--sweep-dir", str(sweep), "--results-md", str(out / "RESULTS.md"),
            "--figures-dir", str(out / "results"), "--readme", str(readme)]
    assert _run(argv) == 0
    md = (out / "RESULTS.md").read_text()

    # Every accuracy in the main table is the mean ± std of the runs' own results.json.
    for cond in rx.CONDITIONS:
        accs = [json.loads((sweep / f"cifar10/{cond}/seed{s}/results.json").read_text())["test_acc"] for s in (0, 1)]
        m, sd = rx.mean_std(accs)
        row = next(ln for ln in md.splitlines() if ln.startswith(f"| {cond} |"))
        assert f"| 2 | {100 * m:.1f} ± {100 * sd:.1f} |" in row, row
    # The dissertation's plain run is the main plain run (same flags): trained once.
    assert not (sweep / "cifar10/dissertation-plain").exists()
    diss = md[md.index("the dissertation's budgets"):]
    steps = json.loads((sweep / "cifar10/plain/seed0/results.json").read_text())["steps"]
    concat = json.loads((sweep / "cifar10/dissertation-concat/seed0/results.json").read_text())["steps"]
    assert 2 * concat == steps and f"| {concat} |" in diss
    # The test script's confusion matrix agrees with the training run's final accuracy.
    test_m = json.loads((sweep / "cifar10/spectral/seed0-test/metrics.json").read_text())
    train_r = json.loads((sweep / "cifar10/spectral/seed0/results.json").read_text())
    assert abs(test_m["top1"] - train_r["test_acc"]) < 1e-9
    assert "gan_test.py" in md and "| plain |" in md[md.index("## GAN"):]
    for fig in ("accuracy.png", "cifar10_curves.png", "cifar10_confusion.png", "cifar10_ablation.png"):
        assert (out / "results" / fig).stat().st_size > 1000
    assert "Missing runs" not in md and "Partial" not in md
    block = readme.read_text()
    assert block.startswith("head\n") and block.endswith("tail\n") and "- cifar10: plain" in block

    # A second call runs nothing; an interrupted run (checkpoint, no results) is resumed.
    capsys.readouterr()
    assert _run(argv) == 0
    log = capsys.readouterr().out
    assert re.search(r"(\d+) of \1 steps already finished", log) and "start " not in log
    victim = sweep / "cifar10/std/seed1"
    (victim / "results.json").unlink()
    (victim / "driver.json").unlink()
    assert _run(argv) == 0
    log = capsys.readouterr().out
    assert "start cifar10/std/seed1 (resume)" in log and log.count("start ") == 1
    assert "resumed from" in (victim / "log.txt").read_text()

    # A run folder made by other flags is refused, not silently reused.
    rec = json.loads((sweep / "cifar10/plain/seed1/driver.json").read_text())
    rec["command"][rec["command"].index("--epochs") + 1] = "99"
    (sweep / "cifar10/plain/seed1/driver.json").write_text(json.dumps(rec))
    with pytest.raises(rx.ExperimentError, match="different command"):
        _run(argv)
