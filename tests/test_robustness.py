"""Corruption robustness (toolkit/robustness.py) on tiny real photographs: the fixed subset, the corruptions,
their cache, the band edits and the test scripts' --robustness end to end."""

import argparse
import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

import pock
from toolkit import cli, robustness
from toolkit.data import load_images, to_unit_range

ROOT = Path(__file__).resolve().parents[1]
# One corruption of each family, all cheap at 32 px.
FEW = ["gaussian_noise", "defocus_blur", "fog", "pixelate"]

pytestmark = pytest.mark.usefixtures("one_thread")


def _images(tiny_data, cache_dir, n=6, size=32, grayscale=False):
    return load_images("cifar10", "test", data_dir=tiny_data["cifar10"], image_size=size, grayscale=grayscale,
                       subset=n, seed=robustness.SUBSET_SEED, cache_dir=str(cache_dir / "decoded"), progress=False)


def _test_args(tiny_data, cache_dir, *extra):
    ns = runpy.run_path(str(ROOT / "test_pt.py"))
    return ns, ["--checkpoint", "unused", "--data-dir", str(tiny_data["cifar10"]), "--cache-dir", str(cache_dir),
                "--device", "cpu", "--no-progress", *extra]


@pytest.fixture(scope="module")
def checkpoint(tiny_data, cache_dir, tmp_path_factory):
    """A CIFAR-10 ResNet-18 at 32 px after one step: any weights do, the tests check the bookkeeping."""
    out = tmp_path_factory.mktemp("ckpt")
    ns = runpy.run_path(str(ROOT / "train_pt.py"))
    ns["main"](ns["get_args_parser"]().parse_args(
        ["--data-dir", str(tiny_data["cifar10"]), "--cache-dir", str(cache_dir), "--subset", "10", "--max-steps",
         "1", "--batch-size", "10", "--eval-split", "none", "--device", "cpu", "--no-progress",
         "--output-dir", str(out)]))
    return out / "checkpoint.pt"


def test_the_subset_is_the_same_for_every_seed(tiny_data, cache_dir):
    ns, argv = _test_args(tiny_data, cache_dir, "--robustness-images", "12")
    meta = {"image_size": 32}
    a, b = (robustness._subset(ns["get_args_parser"]().parse_args(argv + ["--seed", s]), meta, True)
            for s in ("1", "7"))
    assert len(a) == 12 and torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    # The RGB copy that is corrupted holds the same images, in the same order.
    rgb = robustness._subset(ns["get_args_parser"]().parse_args(argv + ["--seed", "3"]), meta, False)
    assert torch.equal(rgb.labels, a.labels) and rgb.images.shape[1] == 3


def test_severity_grows_and_draws_are_seeded(tiny_data, cache_dir):
    rgb = _images(tiny_data, cache_dir).images.numpy()
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    for name in robustness.CORRUPTIONS:
        if robustness.CORRUPTIONS[name] != "noise":
            continue
        x = robustness.corrupt_set(rgb, name, grayscale=False)
        assert x.shape == (5, *rgb.shape) and x.dtype == np.uint8
        change = np.abs(x.astype(float) - rgb[None].astype(float)).mean(axis=(1, 2, 3, 4))
        assert change[4] > 2 * change[0] > 0, (name, change)
        # Seeded per (corruption, severity, image): generating again gives the same images.
        assert np.array_equal(x, robustness.corrupt_set(rgb, name, grayscale=False))
    assert np.array_equal(np.random.get_state()[1], before)   # the caller's random state is left alone
    gray = robustness.corrupt_set(rgb, "contrast", grayscale=True)
    assert gray.shape == (5, rgb.shape[0], 1, 32, 32)


class Killed(Exception):
    """The job dies while a corruption is being made."""


def _counting(monkeypatch, fail_on=None):
    made = []
    real = robustness.corrupt_set

    def corrupt_set(rgb, name, grayscale, bar=None):
        if name == fail_on:
            raise Killed
        made.append(name)
        return real(rgb, name, grayscale, bar)
    monkeypatch.setattr(robustness, "corrupt_set", corrupt_set)
    return made


def test_cache_is_hit_and_keyed(tiny_data, cache_dir, tmp_path, monkeypatch):
    made = _counting(monkeypatch)
    kw = dict(cache_dir=tmp_path, grayscale=True, dataset="cifar10", split="test", progress=False)
    small = _images(tiny_data, cache_dir)
    first = robustness.load_or_generate(small, FEW[:2], **kw)
    assert made == FEW[:2]
    again = robustness.load_or_generate(small, FEW[:2], **kw)
    assert made == FEW[:2] and again == first                     # no regeneration
    arr = np.load(first["gaussian_noise"])
    assert arr.shape == (5, 6, 1, 32, 32)
    # Another size, and the same images in colour, are other keys.
    robustness.load_or_generate(_images(tiny_data, cache_dir, size=40), FEW[:1], **kw)
    robustness.load_or_generate(small, FEW[:1], **{**kw, "grayscale": False})
    assert made == FEW[:2] + FEW[:1] * 2
    assert len(list((tmp_path / "corruptions").iterdir())) == 3


def test_a_killed_generation_resumes(tiny_data, cache_dir, tmp_path, monkeypatch):
    kw = dict(cache_dir=tmp_path, grayscale=True, dataset="cifar10", split="test", progress=False)
    images = _images(tiny_data, cache_dir)
    made = _counting(monkeypatch, fail_on=FEW[1])
    with pytest.raises(Killed):
        robustness.load_or_generate(images, FEW[:3], **kw)
    folder = next((tmp_path / "corruptions").iterdir())
    assert made == FEW[:1] and sorted(p.name for p in folder.glob("*.npy")) == [f"{FEW[0]}.npy"]
    assert not list(folder.glob(".*tmp"))                         # nothing half written
    kept = np.load(folder / f"{FEW[0]}.npy")
    monkeypatch.undo()
    made = _counting(monkeypatch)
    paths = robustness.load_or_generate(images, FEW[:3], **kw)
    assert made == FEW[1:3] and np.array_equal(np.load(paths[FEW[0]]), kept)


def test_band_edits_identity_and_removal(tiny_data, cache_dir, tmp_path):
    images = _images(tiny_data, cache_dir, n=4, grayscale=True)
    edits = robustness.band_edits(images, cache_dir=tmp_path, vectorial=False, progress=False,
                                  gains={"identity": 1.0, "removed": 0.0, "amplified": 3.5})
    f = to_unit_range(images.images)
    assert torch.equal(edits["identity"], f)
    phi = pock.spectral(f, N=2, lam=7.0).phi
    removed = f - edits["removed"]
    # What k = 0 takes away is phi_1 + phi_2 (held in float16 by the band cache).
    assert torch.allclose(removed, phi.sum(1), atol=2e-3) and removed.abs().max() > 0.05
    assert torch.allclose(edits["amplified"] - f, 2.5 * removed, atol=1e-5)


def test_flags_and_budget(capsys, tmp_path):
    assert robustness.parse_corruptions("all") == list(robustness.CORRUPTIONS)
    assert robustness.parse_corruptions("noise,pixelate") == ["gaussian_noise", "shot_noise", "impulse_noise",
                                                              "pixelate"]
    ns = runpy.run_path(str(ROOT / "test_pt.py"))
    missing = str(tmp_path / "none.pt")
    for flags, message in ((["--robustness-images", "0"], "--robustness-images must be positive, got 0"),
                           (["--corruption-budget", "0"],
                            "--corruption-budget must be positive (minutes per corruption), got 0.0"),
                           (["--corruptions", "gaussian_noise,fogg"],
                            "--corruptions: unknown corruption 'fogg'; give 'all' or names from "
                            + ", ".join(robustness.CORRUPTIONS) + ", or families noise, blur, weather, digital")):
        with pytest.raises(SystemExit) as e:
            cli.run(ns["main"], ns["get_args_parser"](), ["--checkpoint", missing, "--robustness", *flags])
        # Checked before the (missing) checkpoint is read.
        assert e.value.code == 2 and capsys.readouterr().err == f"error: {message}\n"
    with pytest.raises(cli.UserError, match="at least 32 px .* takes 16 px"):
        robustness.check_model(argparse.Namespace(robustness=True), {"image_size": 16})
    # The estimate grows with the image size; a tight budget leaves out the slow ones and says why.
    assert robustness.estimate_seconds("zoom_blur", 1000, 128) > 4 * robustness.estimate_seconds("zoom_blur", 1000, 32)
    kept, left = robustness.select(["zoom_blur", "pixelate"], 1000, 128, budget_min=1.0)
    assert kept == ["pixelate"] and left["zoom_blur"].startswith("estimated 2.0 min to generate 1000 images")
    assert left["fog"] == "not requested (--corruptions)" and len(left) == 14


def test_test_script_writes_robustness_json(tiny_data, cache_dir, checkpoint, tmp_path, monkeypatch):
    ns = runpy.run_path(str(ROOT / "test_pt.py"))
    seen, real = [], robustness.evaluate

    def evaluate(model, images, *a, **kw):
        seen.append(images.float())
        return real(model, images, *a, **kw)
    monkeypatch.setattr(robustness, "evaluate", evaluate)
    out = tmp_path / "test"
    metrics = ns["main"](ns["get_args_parser"]().parse_args(
        ["--checkpoint", str(checkpoint), "--data-dir", str(tiny_data["cifar10"]), "--cache-dir", str(cache_dir),
         "--device", "cpu", "--no-progress", "--output-dir", str(out), "--subset", "20", "--robustness",
         "--robustness-images", "20", "--corruptions", ",".join(FEW)]))
    r = json.loads((out / "robustness.json").read_text())
    assert (out / "robustness.png").stat().st_size > 0 and (out / "metrics.json").is_file()
    assert {"images", "subset_seed", "split", "image_size", "clean", "corruptions", "left_out",
            "mean_corruption_accuracy", "families", "bands", "library", "seconds"} <= set(r)
    assert (r["images"], r["split"], r["image_size"], r["library"]) == (20, "test", 32, "imagecorruptions-imaug 1.1.5")
    # --subset 20 with --seed 0 draws the robustness subset's images: the clean accuracies agree.
    assert r["clean"] == pytest.approx(metrics["top1"])
    assert list(r["corruptions"]) == FEW and set(r["left_out"]) == set(robustness.CORRUPTIONS) - set(FEW)
    accs = [a for v in r["corruptions"].values() for a in v["accuracy"]]
    assert len(accs) == 20 and all(0 <= a <= 1 and abs(a * 20 - round(a * 20)) < 1e-9 for a in accs)
    assert r["mean_corruption_accuracy"] == pytest.approx(np.mean(accs))
    for name in FEW:
        fam = robustness.CORRUPTIONS[name]
        assert r["corruptions"][name]["family"] == fam
        assert r["families"][fam] == pytest.approx(np.mean(r["corruptions"][name]["accuracy"]))
    assert set(r["bands"]) == {"removed_k0", "amplified_k3.5"} and all(0 <= a <= 1 for a in r["bands"].values())
    assert r["seconds"]["generate"] > 0 and r["seconds"]["evaluate"] > 0
    # The model saw the clean subset, then each corruption at severities 1..5, then the two band edits.
    clean = _images(tiny_data, cache_dir, n=20, grayscale=True).images.float()
    assert len(seen) == 1 + 5 * len(FEW) + 2 and torch.equal(seen[0], clean)
    noise = [(x - clean).abs().mean().item() for x in seen[1:6]]
    assert noise == sorted(noise) and noise[0] > 0
    assert all((x - clean).abs().mean() > 0.5 for x in seen[-2:])
