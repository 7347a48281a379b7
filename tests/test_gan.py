"""GAN nets, sampling, metrics, and gan.py / gan_test.py end to end on a few real photographs (tiny nets, 32x32)."""
import copy
import json
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from photo_data import make_test_dataset
from toolkit import checkpoints, cli, data, gan_common, gan_metrics
from toolkit.cli import UserError
from toolkit.gan_models import BandGenerator, Discriminator, Generator, ModelError, weights_init

ROOT = Path(__file__).resolve().parents[1]
GAN = runpy.run_path(str(ROOT / "gan.py"))
GAN_TEST = runpy.run_path(str(ROOT / "gan_test.py"))

N_IMAGES, HOLDOUT, SIZE, BATCH = 48, 16, 32, 8


@pytest.fixture(scope="module")
def faces_zip(tmp_path_factory):
    """48 crops of scikit-image photographs in CelebA's layout (one class)."""
    root = tmp_path_factory.mktemp("gan_faces")
    return make_test_dataset("celeba", root / "celeba.zip", n_per_class=N_IMAGES, image_size=SIZE)


@pytest.fixture(scope="module")
def faces(faces_zip):
    imgs = data.load_images("celeba", "train", data_dir=faces_zip, image_size=SIZE, cache_dir=None, progress=False)
    return data.to_unit_range(imgs.images)


def train_args(faces_zip, out, mode, cache, *extra, **kw):
    a = GAN["get_args_parser"]().parse_args(list(extra))
    a.__dict__.update(mode=mode, data_dir=str(faces_zip), holdout=HOLDOUT, image_size=SIZE, ngf=8, ndf=8, nz=16,
                      batch_size=BATCH, epochs=1, output_dir=str(out), cache_dir=str(cache), device="cpu",
                      no_progress=True, n_samples=16)
    a.__dict__.update(kw)
    return a


def eval_args(*argv):
    return GAN_TEST["get_args_parser"]().parse_args([str(a) for a in argv])


def run_cli(script, *argv):
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, argv)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


# ------------------------------------------------------------------------------------- nets

@pytest.mark.parametrize("size", [32, 64])
def test_dcgan_shapes_and_init(size):
    torch.manual_seed(0)
    G, D = Generator(nz=16, ngf=8, nc=1, image_size=size), Discriminator(ndf=8, nc=3, image_size=size)
    G.apply(weights_init)
    D.apply(weights_init)
    x = G(torch.randn(5, 16, 1, 1))
    assert x.shape == (5, 1, size, size) and x.abs().max() <= 1
    assert D(torch.randn(5, 3, size, size)).shape == (5,)
    conv = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)])
    gamma = torch.cat([m.weight.flatten() for m in D.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    assert abs(conv.std().item() - 0.02) < 0.002 and abs(gamma.mean().item() - 1) < 0.01
    with pytest.raises(ModelError, match="power of two"):
        Generator(image_size=48)


def test_joint_generator_image_is_sum_of_bands():
    torch.manual_seed(0)
    scales = torch.tensor([0.3, 0.5, 0.4, 1.2])
    G = BandGenerator(scales, nz=16, ngf=8, nc=1, image_size=32)
    G.apply(weights_init)
    img, comps = G(torch.randn(6, 16, 1, 1) * 5)
    assert comps.shape == (6, 4, 1, 32, 32)
    assert torch.equal(img, comps.sum(1))
    assert (comps.abs().amax(dim=(0, 2, 3, 4)) <= scales).all()


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_sampling_leaves_the_generator_unchanged(mode):
    torch.manual_seed(0)
    G = BandGenerator(torch.tensor([0.3, 0.5, 1.0]), nz=16, ngf=8, nc=1, image_size=32)
    G.apply(weights_init)
    with torch.no_grad():
        G(torch.randn(8, 16, 1, 1))           # running statistics away from their initial values
    G.train(mode == "train")
    before = copy.deepcopy(G.state_dict())
    z = torch.randn(6, 16, 1, 1)
    img, comps = gan_common.sample(G, z)
    after = G.state_dict()
    assert G.training == (mode == "train") and before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    # The samples are those of training mode (batch statistics), as the generator is trained.
    ref = copy.deepcopy(G).train()
    with torch.no_grad():
        ref_img, ref_comps = ref(z)
    assert torch.equal(img, ref_img) and torch.equal(comps, ref_comps)
    again, _ = gan_common.sample(G, z)
    assert torch.equal(again, img)


# ---------------------------------------------------------------------------------- metrics

def test_swd_zero_on_itself_and_grows_with_noise(faces):
    x = faces[:32]
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    assert gan_metrics.swd(x, x, patches_per_image=32)["avg"] == 0
    d = [gan_metrics.swd(x, x + s * noise, patches_per_image=32)["avg"] for s in (0.02, 0.1, 0.4)]
    assert 0 < d[0] < d[1] < d[2]
    levels = gan_metrics.swd(x, x + 0.1 * noise, patches_per_image=32)
    # White noise lives at the finest scale: the full-resolution level must see it most.
    assert levels["32"] > levels["16"]


def test_swd_rejects_too_few_images(faces):
    with pytest.raises(gan_metrics.MetricError, match="at least 2"):
        gan_metrics.swd(faces[:1], faces[:1])


def test_spectrum_distance(faces):
    x = faces[:16]
    s = gan_metrics.tv_spectrum(x, N=3)
    assert s.shape == (16, 3) and (s > 0).all()
    assert gan_metrics.spectrum_distance(s, s) == 0
    noisy = gan_metrics.tv_spectrum(x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0)), N=3)
    # Noise adds energy at the finest scale (band 1) first, and moves the spectrum away from the real one.
    assert noisy.mean(0)[0] > s.mean(0)[0]
    assert gan_metrics.spectrum_distance(noisy, s) > 0.05
    # The definition: relative L1 distance of the mean spectra.
    m, r = noisy.mean(0), s.mean(0)
    assert gan_metrics.spectrum_distance(noisy, s) == pytest.approx(float((m - r).abs().sum() / r.sum()))


def test_fid_skipped_without_weights(tmp_path):
    reason = gan_metrics.fid_unavailable_reason(None)
    assert reason and "--inception-weights" in reason
    reason = gan_metrics.fid_unavailable_reason(str(tmp_path / "missing.pth"))
    assert "missing.pth is not a file" in reason or "torch-fidelity" in reason


class _TinyFeatures(torch.nn.Module):
    """Stands in for Inception (whose weights cannot be downloaded here): uint8 RGB -> 32 features."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
                                       torch.nn.Flatten())

    def forward(self, x):
        return self.net(x.float() / 255)


def test_fid_kid_wrapper_with_a_small_feature_net(faces):
    x = faces[:24]
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    r = gan_metrics.fid_kid(x, {"same": x, "noisy": x + 0.2 * noise, "noisier": x + 0.6 * noise}, _TinyFeatures())
    assert abs(r["same"]["fid"]) < 1e-6
    assert r["same"]["fid"] < r["noisy"]["fid"] < r["noisier"]["fid"]
    assert r["noisy"]["kid_x1e3"] < r["noisier"]["kid_x1e3"]


# ------------------------------------------------------------------------------------- data

def test_subset_is_a_seeded_draw_disjoint_from_the_holdout(faces_zip, tmp_path):
    split = data.load_images("celeba", "train", data_dir=faces_zip, image_size=SIZE, cache_dir=None, progress=False)
    held_out = {bytes(x.numpy()) for x in split.images[-HOLDOUT:]}

    def drawn(seed, subset):
        a = train_args(faces_zip, tmp_path, "plain", tmp_path / "cache", subset=subset, seed=seed)
        return [bytes(x.numpy()) for x in gan_common.load_faces(a).images]
    all_train = drawn(0, None)
    assert len(all_train) == N_IMAGES - HOLDOUT and not held_out & set(all_train)
    a, b, c = drawn(0, 10), drawn(0, 10), drawn(1, 10)
    assert len(a) == 10 and a == b != c and set(a) <= set(all_train) and set(c) <= set(all_train)


# ------------------------------------------------------------------------ end to end

@pytest.fixture(scope="module")
def runs(faces_zip, tmp_path_factory):
    """One run per mode: 1 epoch, then resumed (--resume alone) to 2 epochs (components: 4 updates per stage)."""
    root = tmp_path_factory.mktemp("gan_runs")
    cache = root / "cache"
    out = {}
    for mode in gan_common.MODES:
        kw = {"epochs": 2, "max_steps": 16} if mode == "components" else {"epochs": 2}
        first = GAN["main"](train_args(faces_zip, root / mode, mode, cache, **{**kw, "epochs": 1}))
        second = GAN["main"](train_args(faces_zip, root / mode, mode, cache, "--resume", **kw))
        out[mode] = (root / mode, first, second)
    return out


def test_each_mode_trains_checkpoints_and_resumes(runs):
    steps_per_epoch = (N_IMAGES - HOLDOUT) // BATCH
    for mode, (d, first, second) in runs.items():
        ckpt = torch.load(d / "checkpoint.pt", weights_only=True)
        assert ckpt["meta"]["mode"] == mode and ckpt["step"] == second["global_step"]
        assert set(checkpoints.KEYS) <= set(ckpt) and set(ckpt["model"]) == set(ckpt["optimizer"]) == {"G", "D"}
        if mode == "components":
            # 16 updates split over u0..u3, 4 per stage (one epoch each); the resume trains nothing new
            # for the finished stages.
            assert first["global_step"] == second["global_step"] == 16
            assert set(ckpt["generators"]) == {"u0", "u1", "u2", "u3"}
            assert (d / "samples_u3_e001.png").exists()
        else:
            assert first["global_step"] == steps_per_epoch
            assert second["global_step"] == 2 * steps_per_epoch
            assert (d / "samples_image_e002.png").exists()
        lines = [json.loads(x) for x in (d / "losses.jsonl").read_text().splitlines()]
        assert lines == ckpt["metrics"] and lines[-1]["global_step"] == second["global_step"]
        assert all(np.isfinite([r["loss_d"], r["loss_g"]]).all() for r in lines)
        info = json.loads((d / "args.json").read_text())
        assert info["mode"] == mode and info["script"] == "gan.py" and set(info["git"]) == {"commit", "dirty"}
    assert (runs["joint"][0] / "bands_e002.png").exists()


def test_sample_grid_shows_the_checkpoints_generator(runs):
    """samples_image_e002.png is the fixed noise through the saved generator (8 per row, 2 px padding)."""
    import torchvision.utils as vutils
    d = runs["plain"][0]
    ckpt = gan_common.load_checkpoint(d)
    G = gan_common.load_generator(ckpt, "image", "cpu", d)
    img, _ = gan_common.sample(G, ckpt["fixed_noise"])
    grid = vutils.make_grid(img.clamp(-1, 1), nrow=8, normalize=True, value_range=(-1, 1), padding=2)
    expected = grid.mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    png = np.asarray(Image.open(d / "samples_image_e002.png").convert("RGB"))
    assert png.shape == expected.shape == (2 + 2 * (SIZE + 2), 2 + 8 * (SIZE + 2), 3)
    assert np.abs(png.astype(int) - expected.astype(int)).max() <= 1


def test_resume_repeats_an_uninterrupted_run(runs, faces_zip, tmp_path):
    d = runs["plain"][0]
    GAN["main"](train_args(faces_zip, tmp_path / "straight", "plain", d.parent / "cache", epochs=2))
    resumed = torch.load(d / "checkpoint.pt", weights_only=True)["model"]["G"]
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["model"]["G"]
    for k in straight:
        assert torch.equal(resumed[k], straight[k]), k


def test_gan_test_metrics(runs, tmp_path):
    a = eval_args("--n-real", HOLDOUT, "--spectrum-bands", 3, "--per-state", "--no-progress", "--device", "cpu",
                  "--floor-draws", 2, "--output-dir", tmp_path, *sum([["--run", d] for d, _, _ in runs.values()], []))
    report = GAN_TEST["main"](a)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["results"].keys() == report["results"].keys()
    res = saved["results"]
    assert set(res) == {"real (train)", "plain", "components", "joint"}
    real_mean = torch.tensor(saved["spectrum"]["real_mean"])
    for r in res.values():
        # The stored distance is the one of the stored spectra.
        m = torch.tensor(r["spectrum_mean"])
        assert len(m) == 3 and r["spectrum_distance"] == pytest.approx(
            float((m - real_mean).abs().sum() / real_mean.sum()), rel=1e-5)
    # Two real samples are closer to each other than any barely trained generator is to them.
    for name in ("plain", "components", "joint"):
        assert res["real (train)"]["swd_x1e3"]["avg"] < res[name]["swd_x1e3"]["avg"], name
        assert res["real (train)"]["spectrum_distance"] < res[name]["spectrum_distance"], name
    assert res["joint"]["max_abs_image_minus_sum_of_bands"] < 1e-5
    assert res["components"]["stage_evaluated"] == "u0"
    # 16 updates over u0..u3: the evaluated u0 generator had 4; a run with --max-steps is grouped by its budget.
    assert res["components"]["evaluated_generator_updates"] == 4 and res["components"]["group"].endswith("@16 steps")
    assert res["plain"]["evaluated_generator_updates"] == res["plain"]["generator_updates"]
    # The noise floor: the "real (train)" draw and a second, disjoint one from the 32 training-pool faces.
    floor = saved["swd_floor"]
    assert floor["draws"] == 2 and floor["n"] == HOLDOUT and floor["std"] is not None
    assert floor["avg"][0] == res["real (train)"]["swd_x1e3"]["avg"] and floor["avg"][0] != floor["avg"][1]
    assert set(res["components"]["per_state_swd_avg_x1e3"]) == {"u0", "u1", "u2", "u3"}
    assert saved["fid_kid"].startswith("skipped")
    fig = Image.open(tmp_path / "samples_spectra.png")
    assert fig.width > 2 * fig.height and np.asarray(fig.convert("L")).std() > 10  # 5 sets side by side


def test_group_summary_and_tables():
    res = {f"r{i}": {"group": g, "swd_x1e3": {"32": v, "avg": v}, "spectrum_distance": v / 100}
           for i, (g, v) in enumerate([("plain", 10.0), ("plain", 14.0), ("joint", 5.0)])}
    res["real (train)"] = {"mode": "real", "swd_x1e3": {"32": 1.0, "avg": 1.0}, "spectrum_distance": 0.01}
    s = gan_common.group_summary(res)
    assert list(s) == ["plain"] and s["plain"]["runs"] == 2
    assert s["plain"]["swd_avg_x1e3"][0] == pytest.approx(12.0)
    assert s["plain"]["swd_avg_x1e3"][1] == pytest.approx(8 ** 0.5)
    assert "| plain | 2 | 12.0 ± 2.8 |" in gan_common.summary_table(s)
    table = gan_common.markdown_table(res, with_fid=False).splitlines()
    assert table[0] == "| set | group | G updates | SWD 32 | SWD avg | spectrum dist |"
    assert table[2] == "| r0 | plain | – | 10.0 | 10.0 | 0.100 |" and table[-1].startswith("| real (train) | real |")


# ------------------------------------------------------------------------ bad input

def test_bad_inputs_give_one_line_errors(runs, faces_zip, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli("gan_test.py", "--run", empty, "--n-real", 4, "--no-progress")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error:") and "no such checkpoint" in r.stderr and r.stderr.count("\n") == 1

    r = run_cli("gan.py", "--mode", "joint", "--data-dir", faces_zip, "--holdout", HOLDOUT, "--image-size", SIZE,
                "--ngf", 8, "--ndf", 8, "--nz", 16, "--batch-size", BATCH, "--cache-dir", tmp_path / "c",
                "--output-dir", tmp_path / "o", "--resume", runs["plain"][0], "--no-progress")
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1
    assert "checkpoint from another model: --mode 'plain' (this run: 'joint')" in r.stderr

    r = run_cli("gan.py", "--no-amp")
    assert r.returncode == 2 and r.stderr == "error: --no-amp is gone: use --amp (mixed precision is now opt-in)\n"

    # A checkpoint of another image size: resume and comparison with 32x32 runs are both refused.
    a = train_args(faces_zip, tmp_path / "o16", "plain", tmp_path / "c", image_size=16, resume=str(runs["plain"][0]))
    with pytest.raises(checkpoints.CheckpointError, match="--image-size 32"):
        GAN["main"](a)
    GAN["main"](train_args(faces_zip, tmp_path / "s16", "plain", tmp_path / "c", image_size=16, max_steps=1))
    with pytest.raises(UserError, match="16x16"):
        GAN_TEST["main"](eval_args("--run", runs["plain"][0], "--run", tmp_path / "s16", "--n-real", 4,
                                   "--no-progress"))

    # More real faces than the runs held out would measure against training images.
    with pytest.raises(UserError, match="too few for --n-real"):
        GAN_TEST["main"](eval_args("--run", runs["joint"][0], "--n-real", HOLDOUT + 1, "--no-progress"))



@pytest.mark.parametrize("script,flag,value,message", [
    ("gan.py", "--lam", "0", "--lam must be positive, got 0.0"),
    ("gan.py", "--lam", "nan", "--lam must be a finite number, got nan"),
    ("gan.py", "--tol", "-1e-4", "--tol must be positive (or left out), got -0.0001"),
    ("gan.py", "--lr", "inf", "--lr must be a finite number, got inf"),
    ("gan.py", "--beta1", "1", "--beta1 must be in [0, 1), got 1.0"),
    ("gan.py", "--image-size", "48", "--image-size must be a power of two >= 16, got 48"),
    ("gan.py", "--batch-size", "0", "--batch-size must be positive, got 0"),
    ("gan_test.py", "--lam", "0", "--lam must be positive, got 0.0"),
    ("gan_test.py", "--tol", "nan", "--tol must be a finite number, got nan"),
    ("gan_test.py", "--n-show", "0", "--n-show must be positive, got 0"),
    ("gan_test.py", "--batch-size", "-5", "--batch-size must be positive, got -5"),
])
def test_each_bad_flag_gets_its_own_line_before_any_work(script, flag, value, message, tmp_path, capsys):
    """The flags are checked at the door: a missing dataset or run folder is not even looked at."""
    missing = tmp_path / "nowhere"
    argv = (["--data-dir", str(missing / "faces.zip"), "--output-dir", str(tmp_path / "o")] if script == "gan.py"
            else ["--run", str(missing), "--output-dir", str(tmp_path / "o")])
    ns = GAN if script == "gan.py" else GAN_TEST
    with pytest.raises(SystemExit) as e:
        cli.run(ns["main"], ns["get_args_parser"](), argv + [f"{flag}={value}"])
    assert e.value.code == 2 and capsys.readouterr().err == f"error: {message}\n"
    assert not (tmp_path / "o").exists()

def test_other_faces_of_the_same_count_are_refused(runs, tmp_path):
    # The same layout and count, other photographs (cut at another size): held-out faces the run may have seen.
    other = make_test_dataset("celeba", tmp_path / "other.zip", n_per_class=N_IMAGES, image_size=SIZE // 2)
    with pytest.raises(UserError, match="other data .*pass the run's own data with --data-dir"):
        GAN_TEST["main"](eval_args("--run", runs["plain"][0], "--n-real", 4, "--data-dir", other, "--no-progress",
                                   "--device", "cpu", "--output-dir", tmp_path / "t"))


def test_band_count_is_n_bands_and_bands_points_there(capsys):
    assert GAN["get_args_parser"]().parse_args(["--n-bands", "4"]).n_bands == 4
    with pytest.raises(SystemExit) as e:
        GAN["get_args_parser"]().parse_args(["--bands", "1,2"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: --bands is gone: use --n-bands K") and err.count("\n") == 1


def test_old_gan_checkpoint_format_is_refused(runs, tmp_path):
    ckpt = torch.load(runs["plain"][0] / "checkpoint.pt", weights_only=True)
    old = {k: v for k, v in ckpt.items() if k not in ("meta", "format")}
    torch.save(dict(old, format=2, model_args=ckpt["meta"]), tmp_path / "checkpoint.pt")
    with pytest.raises(checkpoints.CheckpointError, match="format 2, this code reads format 3"):
        gan_common.load_checkpoint(tmp_path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_step_makes_no_host_device_synchronisation():
    """Like the solver loop, a GAN step leaves its statistics on the GPU; sync debug mode turns any
    synchronising call (a .cpu(), .item(), a bool of a device tensor) into an error."""
    from toolkit import gan_common, gan_driver
    from torch import nn
    args = gan_driver.get_train_parser().parse_args(["--mode", "plain", "--image-size", "16", "--ngf", "8",
                                                   "--ndf", "8", "--nz", "8", "--batch-size", "4"])
    device = torch.device("cuda")
    run = gan_driver.build_run(args, gan_common.model_meta(args), device, amp=False)
    x = torch.randn(4, 1, 16, 16, device=device)
    bce = nn.BCEWithLogitsLoss()
    gan_driver.train_step(run, x, bce, device, False)             # warm-up: allocations, cuDNN choices
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        stats = gan_driver.train_step(run, x, bce, device, False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert stats.device.type == "cuda"
