"""The dissertation's protocol with its matched control: unsharp concat with one amount per batch, its
per-batch matching, the robust128 profile, the runner's kept checkpoints, and scale2 without concat rows."""

import dataclasses
import json
import runpy
import shutil
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pock  # noqa: E402
import run_experiments  # noqa: E402
from experiments import ledger, release, runner, seeds, unsharp_match  # noqa: E402
from experiments.plan import command, plan, select  # noqa: E402
from experiments.profiles import MATCHING, MIN_SEEDS, PROFILES, ROBUST_SEEDS_ESTIMATE  # noqa: E402
from toolkit import classify, robustness, unsharp  # noqa: E402
from toolkit.errors import UserError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = ["--image-size", "16", "--eval-split", "none", "--device", "cpu"]


def _args(entry: str, *flags):
    return classify.get_train_parser(entry).parse_args(SMALL + [str(f) for f in flags])


def _perturbation_ratio(out, x):
    """||w - f|| / ||f - G_1 * f|| per image: the amount a of an unsharp mask with s = 1."""
    return (out - x).flatten(1).norm(dim=1) / unsharp.high_pass(x, 1.0).flatten(1).norm(dim=1)


# ------------------------------------------------------------------------------- unsharp concat

def test_unsharp_concat_doubles_the_batch_with_one_amount_per_batch():
    aug = classify.Augmenter(_args("cifar10", "--unsharp-amount", "1.5,2.5", "--unsharp-mode", "concat",
                                   "--per-batch-amounts"))
    aug.generator.manual_seed(0)
    x, y = torch.rand(12, 1, 16, 16) * 2 - 1, torch.arange(12) % 10
    amounts = []
    for _ in range(3):
        out, labels = aug(x, y, torch.arange(12))
        assert out.shape == (24, 1, 16, 16) and torch.equal(out[:12], x) and torch.equal(labels, torch.cat([y, y]))
        ratio = _perturbation_ratio(out[12:], x)
        assert torch.allclose(ratio, ratio[0].expand(12), rtol=1e-4) and 1.5 - 1e-4 < ratio[0] < 2.5 + 1e-4
        amounts.append(float(ratio[0]))
    assert len({round(a, 4) for a in amounts}) == 3            # a fresh amount for every batch


def test_unsharp_concat_without_per_batch_amounts_draws_one_per_image():
    aug = classify.Augmenter(_args("cifar10", "--unsharp-amount", "1.5,2.5", "--unsharp-mode", "concat"))
    aug.generator.manual_seed(0)
    x = torch.rand(12, 1, 16, 16) * 2 - 1
    out, _ = aug(x, torch.zeros(12, dtype=torch.long), torch.arange(12))
    assert len({round(float(r), 4) for r in _perturbation_ratio(out[12:], x)}) == 12


def test_replace_modes_keep_their_draws():
    """Replace mode draws which images first, then their amounts (or gains), from the one generator, as before."""
    x, idx = torch.rand(40, 1, 16, 16) * 2 - 1, torch.arange(40)
    aug = classify.Augmenter(_args("cifar10", "--unsharp-amount", "1.5,2.5"))
    aug.generator.manual_seed(3)
    out, _ = aug(x, torch.zeros(40, dtype=torch.long), idx)
    g = torch.Generator().manual_seed(3)
    pick = torch.rand(40, generator=g) < 0.5
    want = x.clone()
    want[pick] = unsharp.unsharp_mask(x[pick], unsharp.random_amounts(int(pick.sum()), (1.5, 2.5), generator=g), 1.0)
    assert torch.equal(out, want)
    bands = torch.rand(40, 2, 1, 16, 16)
    aug = classify.Augmenter(_args("cifar10-aug", "--spectral-mode", "replace"), bands)
    aug.generator.manual_seed(4)
    out, _ = aug(x, torch.zeros(40, dtype=torch.long), idx)
    g = torch.Generator().manual_seed(4)
    pick = torch.rand(40, generator=g) < 0.5
    want = x.clone()
    gains = pock.random_gains(int(pick.sum()), 2, (3, 5), generator=g)
    want[pick] = pock.amplify_bands(x[pick], bands[idx[pick]], gains)
    assert torch.equal(out, want)


@pytest.mark.parametrize("entry, flags, message", [
    ("cifar10", ("--unsharp-mode", "concat"), "need --unsharp-amount"),
    ("cifar10", ("--per-batch-amounts",), "need --unsharp-amount"),
    ("cifar10-aug", ("--unsharp-amount", "1,2", "--unsharp-mode", "concat"), "four copies of every batch"),
])
def test_unsharp_flags_that_would_mislead_are_refused(entry, flags, message):
    with pytest.raises(UserError, match=message):
        classify.train(_args(entry, *flags))


def test_an_unsharp_concat_run_records_its_mode(tiny_data, tmp_path):
    ns = runpy.run_path(str(ROOT / "train_pt.py"))
    argv = ["--data-dir", tiny_data["cifar10"], "--cache-dir", tmp_path / "c", "--subset", 16, "--epochs", 1,
            "--batch-size", 8, "--no-progress", "--output-dir", tmp_path / "o", "--unsharp-amount", "1.5,2.5",
            "--unsharp-mode", "concat", "--per-batch-amounts"] + SMALL
    res = ns["main"](ns["get_args_parser"]().parse_args([str(a) for a in argv]))
    args = json.loads((tmp_path / "o" / "args.json").read_text())
    assert res["steps"] == 2 and res["train_images"] == 16
    assert args["unsharp_mode"] == "concat" and args["per_batch_amounts"] is True


# ------------------------------------------------------------------------------ per-batch matching

def test_per_batch_matches_mean_and_spread_over_batches():
    m = json.loads(MATCHING.read_text())
    entries = {(name, size): e["per-batch"] for name, sizes in m["sizes"].items() for size, e in sizes.items()
               if "per-batch" in e}
    assert {("imagenette", "128"), ("cifar10", "32")} <= set(entries)
    for e in entries.values():
        means = list(e["spectral_batch_norms"].values())
        assert len(means) == 4 and sum(means) / 4 == pytest.approx(e["spectral_norm"])
        assert torch.tensor(means).std(unbiased=False).item() == pytest.approx(e["spectral_norm_sd"])
        assert e["unsharp_norm"] == pytest.approx(e["spectral_norm"], rel=2e-3)
        assert e["unsharp_norm_sd"] == pytest.approx(e["spectral_norm_sd"], rel=5e-3)
        assert e["unsharp_norm_drawn"] == pytest.approx(e["spectral_norm"], rel=0.02)
        assert e["unsharp_norm_sd_drawn"] == pytest.approx(e["spectral_norm_sd"], rel=0.1)
    for (name, size), e in entries.items():
        ds = PROFILES["robust128"].dataset(name)
        flags = dict(ds.protocol_unsharp)
        assert flags["unsharp-amount"] == "{:g},{:g}".format(*e["amount"]) and flags["unsharp-sigma"] == e["sigma"]
        assert dict(ds.budget)["image-size"] == int(size) == e["image_size"]


def test_matching_keeps_the_other_entries(tiny_data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(MATCHING, out / "unsharp_matching.json")
    before = json.loads(MATCHING.read_text())
    p = unsharp_match.get_args_parser()
    common = ["--data-root", str(Path(tiny_data["cifar10"]).parent), "--output-dir", str(out), "--images", "16",
              "--datasets", "cifar10"]
    m = unsharp_match.main(p.parse_args(common + ["--per-batch"]))
    assert m["datasets"] == before["datasets"] and m["sizes"]["imagenette"] == before["sizes"]["imagenette"]
    new = m["sizes"]["cifar10"]["32"]["per-batch"]
    assert new["images"] == 16 and new["unsharp_norm_sd"] == pytest.approx(new["spectral_norm_sd"], rel=0.02)
    # A per-image match with another sigma: the old per-image matches do not belong with it; the others stay.
    m = unsharp_match.main(p.parse_args(common + ["--sigma", "0.8"]))
    assert list(m["datasets"]) == ["cifar10"] and m["sigma"] == 0.8
    assert m["sizes"]["cifar10"]["32"] == {"per-batch": new}
    with pytest.raises(UserError, match="--image-size must be positive"):
        unsharp_match.main(p.parse_args(common + ["--image-size", "0"]))


# ------------------------------------------------------------------------------------ robust128

def _of(jobs, dataset, condition):
    return [j for j in jobs if j.dataset == dataset and j.condition == condition]


def test_robust128_plans_the_protocol_its_control_and_enough_seeds():
    prof = PROFILES["robust128"]
    jobs = plan(prof)
    assert prof.release == "results-v3" and prof.report == "RESULTS-robust.md" and not prof.readme
    assert dict(prof.images_per_s)[128] == 21 and {j.dataset for j in jobs} == {"imagenette", "cifar10"}
    n = max(ROBUST_SEEDS_ESTIMATE["imagenette"], MIN_SEEDS)
    for c in ("plain", "spectral-concat", "unsharp-concat"):
        assert sorted(j.seed for j in _of(jobs, "imagenette", c)) == list(range(n)), c
    assert sorted(j.seed for j in _of(jobs, "imagenette", "spectral")) == [0, 1, 2]
    assert {j.condition for j in jobs if j.dataset == "imagenette"} == {"plain", "spectral", "spectral-concat",
                                                                         "unsharp-concat"}
    for j in (j for j in jobs if j.dataset == "imagenette"):
        f = dict(j.steps[0].flags)
        assert (f["subset"], f["image-size"], f["epochs"], f["batch-size"], f["lr"]) == (9000, 128, 15, 128, 1e-3)
    epochs = {"plain": 20, "spectral": 20, "unsharp": 20, "cropflip": 20, "spectral-concat": 10, "unsharp-concat": 10}
    for c, e in epochs.items():
        got = {(j.seed, dict(j.steps[0].flags)["epochs"]) for j in _of(jobs, "cifar10", c)}
        assert got == {(s, e) for s in range(3)}, c
    sc, uc = (dict(_of(jobs, "imagenette", c)[0].steps[0].flags) for c in ("spectral-concat", "unsharp-concat"))
    assert (sc["spectral-mode"], sc["per-batch-gains"], sc["bands"], sc["gains"]) == ("concat", True, "1,2", "3,5")
    assert (uc["unsharp-mode"], uc["per-batch-amounts"]) == ("concat", True) and "gains" not in uc
    assert [_of(jobs, "imagenette", c)[0].steps[0].script for c in ("spectral-concat", "unsharp-concat")] == \
        ["train_aug_imagenette.py", "train_imagenette.py"]
    # The key comparison first; replace-mode spectral on Imagenette only when everything else is done.
    assert [j.id for j in jobs[:3]] == [f"imagenette/{c}/seed0" for c in ("plain", "spectral-concat", "unsharp-concat")]
    assert all(j.condition == "spectral" and j.dataset == "imagenette" for j in jobs[-3:])


def test_every_robust128_run_is_tested_for_robustness_with_flags_the_scripts_take():
    for job in plan(PROFILES["robust128"]):
        train, test = job.steps
        assert test.name == "test" and test.refs == (("checkpoint", "train", "checkpoint.pt"),)
        flags = dict(test.flags)
        assert flags["robustness"] is True and flags["robustness-images"] > 0 and flags["corruptions"] == "all"
        paths = dict(data=Path("d.zip"), work=ROOT / "runs" / "w", cache=ROOT / "runs" / "c", device="cpu")
        argv = [command(job, s, **paths) for s in job.steps]
        args = [runpy.run_path(str(ROOT / a[0]))["get_args_parser"]().parse_args(a[1:]) for a in argv]
        classify._check_train_args(args[0])
        robustness.check_args(args[1])


def test_dry_run_before_the_release_is_cut(capsys, monkeypatch, tmp_path):
    uncut = dataclasses.replace(PROFILES["robust128"], release="results-v99")
    monkeypatch.setitem(run_experiments.PROFILES, "robust128", uncut)
    parse = run_experiments.get_args_parser().parse_args
    assert run_experiments.main(parse(["--profile", "robust128", "--dry-run", "--ledger-dir", str(tmp_path)])) == 0
    out = capsys.readouterr().out
    assert "note: release results-v99 is not cut yet" in out and "39 jobs: 0 done, 39 pending" in out
    hours = float(out.split("; all ")[1].split(" h")[0])
    assert 50 < hours < 90
    with pytest.raises(UserError, match="no manifest of release results-v99"):
        run_experiments.main(parse(["--profile", "robust128", "--ledger-dir", str(tmp_path), "--only", "cifar10"]))


def test_estimates_count_both_halves_of_a_concat_batch():
    jobs = {j.id: j for j in plan(PROFILES["robust128"])}
    est = [runner.estimate_seconds(jobs[f"cifar10/{c}/seed0"], PROFILES["robust128"]) for c in
           ("plain", "spectral-concat", "unsharp-concat")]
    assert est == pytest.approx([1.1 * 25000 * 20 / 392] * 3)


def test_seeds_plan_from_plain_and_the_protocol_where_a_dataset_has_it():
    assert seeds._arms(PROFILES["robust128"].dataset("imagenette")) == ("plain", "spectral-concat", "unsharp-concat")
    assert seeds._arms(PROFILES["scale2"].dataset("imagenette")) == ("plain", "spectral")


# ------------------------------------------------------------------------------ kept checkpoints

def test_runner_keeps_each_final_checkpoint_outside_git(tmp_path):
    from test_experiments import _toy
    job, ctx = _toy(tmp_path, 0.5)
    ctx.checkpoints = tmp_path / "checkpoints"
    assert runner.sweep([job], ctx) == 0
    kept = ctx.checkpoints / job.id / "train.pt"
    assert kept.read_text() == "weights" and [p.name for p in kept.parent.iterdir()] == ["train.pt"]
    assert not list(ctx.ledger.rglob("*.pt"))
    args = run_experiments.get_args_parser().parse_args(["--profile", "smoke", "--work-dir", str(tmp_path / "w")])
    run_experiments._defaults(args, PROFILES["smoke"])
    assert args.checkpoint_dir == (tmp_path / "w" / "checkpoints").resolve()
    run_experiments._defaults(args := run_experiments.get_args_parser().parse_args([]), PROFILES["robust128"])
    assert args.checkpoint_dir == ROOT / "runs" / "checkpoints" / "robust128"
    assert "runs/" in (ROOT / ".gitignore").read_text().split()


# ---------------------------------------------------------------------------------------- scale2

def test_scale2_drops_its_concat_rows_and_its_finished_runs_stay_current():
    jobs = plan(PROFILES["scale2"])
    assert not [j for j in jobs if "concat" in j.condition or j.table == "concat"]
    assert select(jobs, ["*/gains-*"]) and len(select(jobs, ["imagenette/plain"])) == 7
    entries = ledger.read_all(ledger.DEFAULT_ROOT, "scale2", jobs, release.load("results-v2"))
    assert entries and {e.status for e in entries} == {"current"}
