"""The nine classification scripts end to end on tiny real data, resume, band cache reuse, DDP, errors."""

import csv
import io
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import pock
from toolkit import checkpoints, classify, cli, training
from toolkit.configs import CONFIGS

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


def script(name: str) -> dict:
    """A script's namespace (``get_args_parser``, ``main``), loaded without running it as __main__."""
    return runpy.run_path(str(ROOT / name))


def run(name: str, argv: list):
    ns = script(name)
    return ns["main"](ns["get_args_parser"]().parse_args(argv))


def _fast(tiny_data, cache, dataset, *extra, subset=40, size=32):
    return ["--data-dir", str(tiny_data[dataset]), "--cache-dir", str(cache), "--image-size", str(size),
            "--subset", str(subset), "--eval-subset", str(subset), "--epochs", "1", "--device", "cpu",
            "--no-progress", *extra]


def _records(out: Path) -> list:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


SCRIPTS = [
    ("cifar10", "train_pt.py", "train_pt_aug.py", "test_pt.py"),
    ("flowers102", "train_flowers102.py", "train_aug_flowers102.py", "test_flowers102.py"),
    ("imagenette", "train_imagenette.py", "train_aug_imagenette.py", "test_imagenette.py"),
]


@pytest.mark.parametrize("dataset,plain,aug,tester", SCRIPTS, ids=[s[0] for s in SCRIPTS])
def test_scripts_train_then_test(dataset, plain, aug, tester, tiny_data, cache_dir, tmp_path):
    args = _fast(tiny_data, cache_dir, dataset, "--batch-size", "10", subset=20)
    res = run(plain, args + ["--output-dir", str(tmp_path / "plain")])
    res_aug = run(aug, args + ["--output-dir", str(tmp_path / "aug")])
    n_classes = 102 if dataset == "flowers102" else 10
    for out, r, name in ((tmp_path / "plain", res, plain), (tmp_path / "aug", res_aug, aug)):
        assert {"args.json", "checkpoint.pt", "metrics.jsonl", "curves.png", "results.json"} <= \
            {p.name for p in out.iterdir()}
        info = json.loads((out / "args.json").read_text())
        # One flat layout: the flags, the script and the git state.
        assert info["train_split"] == CONFIGS[dataset].train_split and info["script"] == name
        assert set(info["git"]) == {"commit", "dirty"}
        rec = _records(out)
        assert len(rec) == 1 and rec[0]["steps"] == 2 and 0 <= rec[0]["aug_time"] <= rec[0]["epoch_time"]
        assert r["eval_split"] == CONFIGS[dataset].eval_split and r["test_images"] == 20
        assert r["final_train_acc"] == rec[0]["train_acc"] and r["test_acc"] == rec[0]["test_acc"]
        ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
        assert ckpt["epoch"] == 1 and ckpt["meta"]["num_classes"] == n_classes and ckpt["kind"] == "classifier"
        assert set(ckpt) >= set(checkpoints.KEYS) and ckpt["format"] == checkpoints.FORMAT
    # The augmented run trained on every batch plus its augmented copy.
    rec_aug = _records(tmp_path / "aug")[0]
    assert rec_aug["examples"] == 40 and rec_aug["images"] == 20 and res["train_images"] == 20
    metrics = run(tester, ["--checkpoint", str(tmp_path / "aug" / "checkpoint.pt"), "--data-dir",
                           str(tiny_data[dataset]), "--cache-dir", str(cache_dir), "--subset", "20", "--device", "cpu",
                           "--no-progress"])
    out = tmp_path / "aug" / f"test-{CONFIGS[dataset].eval_split}"
    assert {"metrics.json", "confusion_matrix.csv", "confusion_matrix.png"} <= {p.name for p in out.iterdir()}
    # Same images, same weights: the test script agrees with the training run's final evaluation.
    assert metrics["top1"] == pytest.approx(res_aug["test_acc"])
    rows = list(csv.reader(io.StringIO((out / "confusion_matrix.csv").read_text())))
    assert len(rows) == n_classes + 1 and rows[0][1:] == [r[0] for r in rows[1:]]
    assert sum(int(v) for row in rows[1:] for v in row[1:]) == 20


def test_every_epoch_is_evaluated_and_timed(tiny_data, cache_dir, tmp_path):
    out = tmp_path / "curve"
    r = run("train_pt.py", _fast(tiny_data, cache_dir, "cifar10", "--batch-size", "10", "--epochs", "3",
                                 "--output-dir", str(out), subset=20, size=16))
    rec = _records(out)
    assert [x["epoch"] for x in rec] == [1, 2, 3] and [x["step"] for x in rec] == [2, 4, 6]
    for x in rec:
        assert {"loss", "train_acc", "test_acc", "test_loss", "images_per_s"} <= set(x)
        # Throughput counts the training set's images over the training time alone.
        assert x["images"] == 20 and x["images_per_s"] == pytest.approx(20 / x["epoch_time"])
    assert r["images_per_s"] == pytest.approx(60 / sum(x["epoch_time"] for x in rec))
    assert r["final_train_acc"] == rec[-1]["train_acc"] and r["test_acc"] == rec[-1]["test_acc"]


def _strip_times(records):
    return [{k: v for k, v in r.items() if "time" not in k and k not in ("aug_fraction", "images_per_s")}
            for r in records]


def test_resume_equals_uninterrupted_run(tiny_data, cache_dir, tmp_path):
    args = _fast(tiny_data, cache_dir, "cifar10", "--std-aug", "--batch-size", "10", subset=20, size=16)
    full = tmp_path / "full"
    run("train_pt_aug.py", args + ["--output-dir", str(full), "--epochs", "2"])
    part = tmp_path / "part"
    run("train_pt_aug.py", args + ["--output-dir", str(part), "--epochs", "1"])
    run("train_pt_aug.py", args + ["--output-dir", str(part), "--epochs", "2", "--resume"])
    a, b = (torch.load(p / "checkpoint.pt", weights_only=True) for p in (full, part))
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    ra, rb = _records(full), _records(part)
    assert _strip_times(ra) == _strip_times(rb) and len(ra) == 2


def test_subset_draw_follows_the_seed(tiny_data, cache_dir, tmp_path):
    common = _fast(tiny_data, cache_dir, "cifar10", "--eval-split", "none", "--max-steps", "1", subset=20, size=16)
    sources = [run("train_pt.py", common + ["--seed", str(s), "--output-dir", str(tmp_path / str(s))])["train_source"]
               for s in (0, 0, 1)]
    assert sources[0] == sources[1] != sources[2]


def test_band_cache_reused_across_runs_and_rebuilt_for_new_lam(tiny_data, cache_dir, tmp_path, monkeypatch):
    calls = []
    real = pock.spectral
    monkeypatch.setattr(pock, "spectral", lambda *a, **k: calls.append(a[0].shape[0]) or real(*a, **k))
    cache = tmp_path / "cache"
    args = _fast(tiny_data, cache, "cifar10", "--eval-split", "none", "--max-steps", "1", size=16)
    run("train_pt_aug.py", args + ["--output-dir", str(tmp_path / "a")])
    assert sum(calls) == 40
    run("train_pt_aug.py", args + ["--output-dir", str(tmp_path / "b")])
    assert sum(calls) == 40  # second run: cache hit, no decomposition at all
    run("train_pt_aug.py", args + ["--output-dir", str(tmp_path / "c"), "--lam", "5"])
    assert sum(calls) == 80 and len(list((cache / "bands").iterdir())) == 2
    assert len(list((cache / "decoded").glob("*.pt"))) == 1  # the decoded images live beside the bands
    # --no-cache decomposes every batch (the dissertation's scheme) and writes no cache.
    calls.clear()
    r = run("train_pt_aug.py", args + ["--output-dir", str(tmp_path / "d"), "--no-cache"])
    assert sum(calls) == 20 and r["band_cache"] is None and len(list((cache / "bands").iterdir())) == 2


def test_replace_mode_and_max_steps(tiny_data, cache_dir, tmp_path):
    args = _fast(tiny_data, cache_dir, "cifar10", "--spectral-mode", "replace", "--max-steps", "3",
                 "--per-batch-gains", "--std-aug", "--batch-size", "8", "--eval-split", "none", size=16)
    r = run("train_pt_aug.py", args + ["--epochs", "3", "--output-dir", str(tmp_path / "r"),
                                       "--cache-dir", str(tmp_path / "cache")])
    rec = _records(tmp_path / "r")
    assert r["steps"] == 3 and len(rec) == 1 and rec[0]["examples"] == 24  # replace keeps the batch size


def test_gains_integer_or_continuous():
    assert classify.parse_gains("3,5") == (3, 5) and all(type(g) is int for g in classify.parse_gains("3,5"))
    assert classify.parse_gains("1.5,2.5") == (1.5, 2.5)
    lo, hi = classify.parse_gains("0.0,1.0")
    assert (lo, hi) == (0.0, 1.0) and type(lo) is float
    for bad in ("5,3", "3", "3,4,5", "a,b", "-1,2"):
        with pytest.raises(Exception, match="LO,HI"):
            classify.parse_gains(bad)
    # The parsed tuple reaches the augmentation unchanged.
    ns = classify.get_train_parser("cifar10-aug").parse_args(["--gains", "1.5,2.5"])
    assert ns.gains == (1.5, 2.5)


def _augmenter_args(mode, **kw):
    return classify.get_train_parser("cifar10-aug").parse_args(
        ["--spectral-mode", mode, "--image-size", "16"] + [f"--{k}={v}" for k, v in kw.items()])


def test_cached_augmentation_equals_on_the_fly(tiny_data):
    """amplify_bands on cached float32 bands == spectral_augment on the batch, for the same gains."""
    from toolkit.data import load_images, to_unit_range
    imgs = load_images("cifar10", "train", data_dir=tiny_data["cifar10"], image_size=16, subset=6,
                       cache_dir=None, progress=False).images
    x = to_unit_range(imgs)
    args = _augmenter_args("concat")
    dec = pock.spectral(x, N=2)
    bands = torch.stack([dec.phi[:, 0], dec.phi[:, 1]], 1)
    cached, fly = classify.Augmenter(args, bands), classify.Augmenter(args, None)
    cached.generator.manual_seed(3)
    fly.generator.manual_seed(3)
    y = torch.arange(6)
    xc, yc = cached(x, y, torch.arange(6))
    xf, _ = fly(x, y, torch.arange(6))
    assert xc.shape == (12, 1, 16, 16) and torch.equal(yc, torch.cat([y, y])) and torch.equal(xc[:6], x)
    assert torch.allclose(xc, xf, atol=1e-4)
    assert not torch.allclose(xc[6:], x, atol=1e-2)


def test_random_crop_flip_is_a_crop_of_the_padded_image():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 2, 8, 8)
    out = training.random_crop_flip(x, 2, g)
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    flips = 0
    for b in range(16):
        crops = [xp[b, :, i:i + 8, j:j + 8] for i in range(5) for j in range(5)]
        plain = any(torch.equal(out[b], c) for c in crops)
        flipped = any(torch.equal(out[b], c.flip(-1)) for c in crops)
        assert plain or flipped
        flips += flipped and not plain
    assert 0 < flips < 16


def test_two_process_gloo_torchrun(tiny_data, cache_dir, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "train_pt_aug.py")] + _fast(tiny_data, cache_dir, "cifar10", size=16) + \
        ["--output-dir", str(out), "--cache-dir", str(tmp_path / "cache")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    rec = json.loads((out / "metrics.jsonl").read_text())
    # 40 images over 2 ranks x batch 20: one step each, 80 examples (with the augmented copies) in all.
    assert res["world_size"] == 2 and rec["steps"] == 1 and rec["examples"] == 80 and res["test_images"] == 40
    assert rec["images"] == 40
    assert p.stdout.count("epoch 1/1") == 1  # only rank 0 reports and writes


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    out = tmp_path / "never"
    p = subprocess.run([sys.executable, str(ROOT / "train_pt.py"), "--data-dir", str(tmp_path / "nope.zip"),
                        "--output-dir", str(out), "--device", "cpu"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().count("\n") == 0 and p.stderr.startswith("error: ") and "nope.zip" in p.stderr
    assert not out.exists()  # no run folder that looks like a run
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    p = subprocess.run([sys.executable, str(ROOT / "test_imagenette.py"), "--checkpoint", str(bad)],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "bad.pt: not a readable" in p.stderr



def test_damaged_checkpoint_error_keeps_its_cause_in_one_line(tmp_path):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(checkpoints.CheckpointError) as e:
        checkpoints.load(bad, "classifier", "a train script")
    assert "\n" not in str(e.value) and str(e.value).startswith(f"{bad}: not a readable PyTorch checkpoint (")
    assert e.value.__cause__ is not None        # the reader's own exception, for whoever debugs it

def _exit_message(capsys, name, argv) -> str:
    ns = script(name)
    with pytest.raises(SystemExit) as e:
        cli.run(ns["main"], ns["get_args_parser"](), argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_bad_inputs_in_process(tiny_data, cache_dir, tmp_path, capsys):
    args = _fast(tiny_data, cache_dir, "cifar10", "--eval-split", "none", "--max-steps", "1", size=16)
    msg = _exit_message(capsys, "train_pt.py",
                        args + ["--train-split", "training", "--output-dir", str(tmp_path / "x")])
    assert "unknown split 'training'" in msg and not (tmp_path / "x").exists()
    # A checkpoint of another dataset, and a missing one.
    run("train_pt.py", args + ["--output-dir", str(tmp_path / "c")])
    msg = _exit_message(capsys, "test_flowers102.py", ["--checkpoint", str(tmp_path / "c" / "checkpoint.pt"),
                                                       "--data-dir", str(tiny_data["flowers102"])])
    assert "cifar10 model" in msg and "not flowers102" in msg
    msg = _exit_message(capsys, "test_pt.py", ["--checkpoint", str(tmp_path / "none.pt")])
    assert "none.pt: no such checkpoint" in msg
    # Resuming with another head is refused rather than silently mixed.
    msg = _exit_message(capsys, "train_pt.py",
                        args + ["--output-dir", str(tmp_path / "c"), "--resume", "--hidden", "64"])
    assert "checkpoint from another model" in msg and "--hidden [256, 128] (this run: [64])" in msg
    msg = _exit_message(capsys, "train_pt.py", args + ["--output-dir", str(tmp_path / "c"), "--lr", "0"])
    assert "--lr must be positive" in msg



@pytest.mark.parametrize("flag,message", [("--lr=nan", "--lr must be a finite number, got nan"),
                                          ("--lam=0", "--lam must be positive, got 0.0"),
                                          ("--tol=nan", "--tol must be a finite number, got nan"),
                                          ("--spectral-prob=1.5", "--spectral-prob must be in [0, 1], got 1.5"),
                                          ("--dropout=1", "--dropout must be in [0, 1), got 1.0")])
def test_each_bad_number_is_named_alone_before_any_data_is_read(flag, message, tmp_path, capsys):
    msg = _exit_message(capsys, "train_pt_aug.py", ["--data-dir", str(tmp_path / "missing.zip"),
                                                    "--output-dir", str(tmp_path / "o"), flag])
    assert msg == f"error: {message}\n" and not (tmp_path / "o").exists()

@pytest.mark.parametrize("flag,new", [("--no-amp", "--amp"), ("--decode-cache-dir=x", "--cache-dir"),
                                      ("--data-seed=1", "--seed"), ("--eval-every-epoch", "every epoch")])
def test_old_flags_name_the_new_ones(flag, new, capsys):
    with pytest.raises(SystemExit) as e:
        classify.get_train_parser("cifar10-aug").parse_args([flag])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ") and new in err


def test_data_kept_off_the_gpu_is_announced(monkeypatch, capsys):
    # 1,000 free bytes: a 1,000-byte set exceeds the 30% it may take, so it stays on the host, and says so.
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000, 10 ** 9))
    images = torch.zeros(1000, dtype=torch.uint8)
    assert classify._to_device_if_fits(images, torch.device("cuda"), "the training images", True) is images
    out = capsys.readouterr().out
    assert out.startswith("note: the training images") and "stay in host memory" in out
