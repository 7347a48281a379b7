"""The nine classification scripts end to end on tiny real data, resume, band cache reuse, DDP, errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import classify
import pock
import training

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")

import test_flowers102  # noqa: E402  (the scripts are modules with a DEFAULTS dict)
import test_imagenette  # noqa: E402
import test_pt  # noqa: E402
import train_aug_flowers102  # noqa: E402
import train_aug_imagenette  # noqa: E402
import train_flowers102  # noqa: E402
import train_imagenette  # noqa: E402
import train_pt  # noqa: E402
import train_pt_aug  # noqa: E402


def _fast(tiny_data, decode_cache, tmp_path, dataset, *extra, subset=40, size=32):
    return ["--data-dir", str(tiny_data[dataset]), "--decode-cache-dir", str(decode_cache),
            "--image-size", str(size), "--subset", str(subset), "--eval-subset", str(subset), "--epochs", "1",
            "--device", "cpu", "--no-progress", "--cache-dir", str(tmp_path / "bands"), *extra]


def _drop_cache_flag(argv):
    i = argv.index("--cache-dir")
    return argv[:i] + argv[i + 2:]


SCRIPTS = [
    ("cifar10", train_pt, train_pt_aug, test_pt),
    ("flowers102", train_flowers102, train_aug_flowers102, test_flowers102),
    ("imagenette", train_imagenette, train_aug_imagenette, test_imagenette),
]


@pytest.mark.parametrize("dataset,plain,aug,tester", SCRIPTS, ids=[s[0] for s in SCRIPTS])
def test_scripts_train_then_test(dataset, plain, aug, tester, tiny_data, decode_cache, tmp_path):
    args = _fast(tiny_data, decode_cache, tmp_path, dataset, "--batch-size", "10", subset=20)
    res = classify.train_cli(plain.DEFAULTS, False, _drop_cache_flag(args) + ["--output-dir", str(tmp_path / "plain")])
    res_aug = classify.train_cli(aug.DEFAULTS, True, args + ["--output-dir", str(tmp_path / "aug")])
    n_classes = 102 if dataset == "flowers102" else 10
    for out, r in ((tmp_path / "plain", res), (tmp_path / "aug", res_aug)):
        assert {"args.json", "checkpoint.pt", "metrics.jsonl", "curves.png", "results.json"} <= \
            {p.name for p in out.iterdir()}
        info = json.loads((out / "args.json").read_text())
        assert info["args"]["train_split"] == plain.DEFAULTS["train_split"] and "commit" in info["git"]
        rec = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert len(rec) == 1 and rec[0]["steps"] == 2 and 0 <= rec[0]["aug_time"] <= rec[0]["epoch_time"]
        assert r["eval_split"] == plain.DEFAULTS["eval_split"] and r["test_images"] == 20
        ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
        assert ckpt["epoch"] == 1 and ckpt["meta"]["num_classes"] == n_classes
    # The augmented run trained on every batch plus its augmented copy.
    rec_aug = json.loads((tmp_path / "aug" / "metrics.jsonl").read_text())
    assert rec_aug["examples"] == 40 and res["train_images"] == 20
    metrics = classify.test_cli(tester.DEFAULTS, [
        "--checkpoint", str(tmp_path / "aug" / "checkpoint.pt"), "--data-dir", str(tiny_data[dataset]),
        "--decode-cache-dir", str(decode_cache), "--subset", "20", "--device", "cpu", "--no-progress"])
    out = tmp_path / "aug" / f"test-{tester.DEFAULTS['eval_split']}"
    assert {"metrics.json", "confusion_matrix.csv", "confusion_matrix.png"} <= {p.name for p in out.iterdir()}
    # Same images, same weights: the test script agrees with the training run's final evaluation.
    assert metrics["top1"] == pytest.approx(res_aug["test_acc"])
    rows = (out / "confusion_matrix.csv").read_text().splitlines()
    assert len(rows) == n_classes + 1
    assert sum(int(v) for row in rows[1:] for v in row.split(",")[1:]) == 20


def _strip_times(records):
    return [{k: v for k, v in r.items() if "time" not in k and k != "aug_fraction"} for r in records]


def test_resume_equals_uninterrupted_run(tiny_data, decode_cache, tmp_path):
    args = _fast(tiny_data, decode_cache, tmp_path, "cifar10", "--std-aug", "--eval-every-epoch",
                 "--batch-size", "10", subset=20, size=16) + ["--epochs", "2"]
    full = tmp_path / "full"
    classify.train_cli(train_pt_aug.DEFAULTS, True, args + ["--output-dir", str(full)])
    part = tmp_path / "part"
    classify.train_cli(train_pt_aug.DEFAULTS, True, args + ["--output-dir", str(part), "--epochs", "1"])
    classify.train_cli(train_pt_aug.DEFAULTS, True, args + ["--output-dir", str(part), "--resume"])
    a, b = (torch.load(p / "checkpoint.pt", weights_only=True) for p in (full, part))
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    ra, rb = ([json.loads(x) for x in (p / "metrics.jsonl").read_text().splitlines()] for p in (full, part))
    assert _strip_times(ra) == _strip_times(rb) and len(ra) == 2


def test_band_cache_reused_across_runs_and_rebuilt_for_new_lam(tiny_data, decode_cache, tmp_path, monkeypatch):
    calls = []
    real = pock.spectral
    monkeypatch.setattr(pock, "spectral", lambda *a, **k: calls.append(a[0].shape[0]) or real(*a, **k))
    args = _fast(tiny_data, decode_cache, tmp_path, "cifar10", "--eval-split", "none", "--max-steps", "1", size=16)
    classify.train_cli(train_pt_aug.DEFAULTS, True, args + ["--output-dir", str(tmp_path / "a")])
    assert sum(calls) == 40
    classify.train_cli(train_pt_aug.DEFAULTS, True, args + ["--output-dir", str(tmp_path / "b")])
    assert sum(calls) == 40  # second run: cache hit, no decomposition at all
    classify.train_cli(train_pt_aug.DEFAULTS, True, args + ["--output-dir", str(tmp_path / "c"), "--lam", "5"])
    assert sum(calls) == 80 and len(list((tmp_path / "bands").iterdir())) == 2
    # --no-cache decomposes every batch (the dissertation's scheme) and writes no cache.
    calls.clear()
    r = classify.train_cli(train_pt_aug.DEFAULTS, True, args + ["--output-dir", str(tmp_path / "d"), "--no-cache"])
    assert sum(calls) == 20 and r["band_cache"] is None and len(list((tmp_path / "bands").iterdir())) == 2


def test_replace_mode_and_max_steps(tiny_data, decode_cache, tmp_path):
    args = _fast(tiny_data, decode_cache, tmp_path, "cifar10", "--spectral-mode", "replace", "--max-steps", "3",
                 "--per-batch-gains", "--std-aug", "--batch-size", "8", "--eval-split", "none", size=16)
    r = classify.train_cli(train_pt_aug.DEFAULTS, True, args + ["--epochs", "3", "--output-dir", str(tmp_path / "r")])
    rec = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert r["steps"] == 3 and len(rec) == 1 and rec[0]["examples"] == 24  # replace keeps the batch size


def _augmenter(mode, **kw):
    ns = classify.get_train_parser(train_pt_aug.DEFAULTS, True).parse_args(
        ["--spectral-mode", mode, "--image-size", "16"] + [f"--{k}={v}" for k, v in kw.items()])
    return ns


def test_cached_augmentation_equals_on_the_fly(tiny_data):
    """amplify_bands on cached float32 bands == spectral_augment on the batch, for the same gains."""
    from data import load_images, to_unit_range
    import bandcache
    imgs = load_images("cifar10", "train", data_dir=tiny_data["cifar10"], image_size=16, subset=6,
                       cache_dir=None, progress=False).images
    x = to_unit_range(imgs)
    args = _augmenter("concat")
    bands = torch.stack([pock.spectral(x, N=2).phi[:, 0], pock.spectral(x, N=2).phi[:, 1]], 1)
    cached, fly = classify.Augmenter(args, bands), classify.Augmenter(args, None)
    cached.generator.manual_seed(3)
    fly.generator.manual_seed(3)
    y = torch.arange(6)
    xc, yc = cached(x, y, torch.arange(6))
    xf, _ = fly(x, y, torch.arange(6))
    assert xc.shape == (12, 1, 16, 16) and torch.equal(yc, torch.cat([y, y])) and torch.equal(xc[:6], x)
    assert torch.allclose(xc, xf, atol=1e-4)
    assert not torch.allclose(xc[6:], x, atol=1e-2)
    assert bandcache.parse_components(["phi1", "phi2"])[0] == 2


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


def test_two_process_gloo_torchrun(tiny_data, decode_cache, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "train_pt_aug.py")] + _fast(tiny_data, decode_cache, tmp_path, "cifar10", size=16) + \
        ["--output-dir", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    rec = json.loads((out / "metrics.jsonl").read_text())
    # 40 images over 2 ranks x batch 20: one step each, 80 examples (with the augmented copies) in all.
    assert res["world_size"] == 2 and rec["steps"] == 1 and rec["examples"] == 80 and res["test_images"] == 40
    assert p.stdout.count("epoch 1/1") == 1  # only rank 0 reports and writes


def test_cli_errors_are_one_line_without_traceback(tiny_data, tmp_path):
    out = tmp_path / "never"
    p = subprocess.run([sys.executable, str(ROOT / "train_pt.py"), "--data-dir", str(tmp_path / "nope.zip"),
                        "--output-dir", str(out), "--device", "cpu"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert p.stderr.strip().count("\n") == 0 and p.stderr.startswith("error: ") and "nope.zip" in p.stderr
    assert not out.exists()  # no run folder that looks like a run
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    p = subprocess.run([sys.executable, str(ROOT / "test_imagenette.py"), "--checkpoint", str(bad)],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode != 0 and "Traceback" not in p.stderr and "bad.pt: not a readable" in p.stderr


def _exit_message(fn, *a):
    with pytest.raises(SystemExit) as e:
        fn(*a)
    assert isinstance(e.value.code, str) and e.value.code.startswith("error: ") and "\n" not in e.value.code
    return e.value.code


def test_bad_inputs_in_process(tiny_data, decode_cache, tmp_path):
    args = _fast(tiny_data, decode_cache, tmp_path, "cifar10", "--eval-split", "none", "--max-steps", "1", size=16)
    msg = _exit_message(classify.train_cli, train_pt.DEFAULTS, False,
                        _drop_cache_flag(args) + ["--train-split", "training", "--output-dir", str(tmp_path / "x")])
    assert "unknown split 'training'" in msg and not (tmp_path / "x").exists()
    # A checkpoint of another dataset, and a missing one.
    classify.train_cli(train_pt.DEFAULTS, False, _drop_cache_flag(args) + ["--output-dir", str(tmp_path / "c")])
    msg = _exit_message(classify.test_cli, test_flowers102.DEFAULTS,
                        ["--checkpoint", str(tmp_path / "c" / "checkpoint.pt"), "--data-dir", str(tiny_data["flowers102"])])
    assert "cifar10 model" in msg and "not flowers102" in msg
    msg = _exit_message(classify.test_cli, test_pt.DEFAULTS, ["--checkpoint", str(tmp_path / "none.pt")])
    assert "none.pt: no such checkpoint" in msg
    # Resuming with another head is refused rather than silently mixed.
    msg = _exit_message(classify.train_cli, train_pt.DEFAULTS, False, _drop_cache_flag(args) + [
        "--output-dir", str(tmp_path / "c"), "--resume", "--hidden", "64"])
    assert "different run" in msg and "hidden" in msg
    msg = _exit_message(classify.train_cli, train_pt_aug.DEFAULTS, True, args + ["--gains", "5,3"])
    assert "--gains" in msg
