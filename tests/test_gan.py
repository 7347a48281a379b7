"""GAN nets, metrics, and gan.py / gan_test.py end to end on a few real faces (tiny nets, 32x32)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import data  # noqa: E402
import gan  # noqa: E402
import gan_metrics  # noqa: E402
import gan_test  # noqa: E402
from gan_models import BandGenerator, Discriminator, Generator, ModelError, weights_init  # noqa: E402

N_IMAGES, HOLDOUT, SIZE, BATCH = 48, 16, 32, 8


@pytest.fixture(scope="module")
def faces_zip(tmp_path_factory):
    """48 real faces from ../shared/data/celeba.zip, or crops of scikit-image photographs without it."""
    root = tmp_path_factory.mktemp("gan_faces")
    return data.make_test_dataset("celeba", root / "celeba.zip", n_per_class=N_IMAGES, image_size=SIZE)


@pytest.fixture(scope="module")
def faces(faces_zip):
    imgs = data.load_images("celeba", "train", data_dir=faces_zip, image_size=SIZE, cache_dir=None, progress=False)
    return data.to_unit_range(imgs.images)


def train_args(faces_zip, out, mode, cache, **kw):
    a = gan.get_args_parser().parse_args([])
    a.__dict__.update(mode=mode, data_dir=str(faces_zip), holdout=HOLDOUT, image_size=SIZE, ngf=8, ndf=8, nz=16,
                      batch_size=BATCH, epochs=1, output_dir=str(out), cache_dir=str(cache), device="cpu",
                      no_progress=True, n_samples=16)
    a.__dict__.update(kw)
    return a


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


def test_fid_skipped_without_weights(tmp_path):
    reason = gan_metrics.fid_unavailable_reason(None)
    assert reason and "--inception-weights" in reason
    assert gan_metrics.fid_unavailable_reason(str(tmp_path / "missing.pth")) is not None


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


# ------------------------------------------------------------------------ end to end

@pytest.fixture(scope="module")
def runs(faces_zip, tmp_path_factory):
    """One run per mode: 1 epoch, then resumed to 2 epochs (components: budget of 4 updates per stage)."""
    root = tmp_path_factory.mktemp("gan_runs")
    cache = root / "cache"
    out = {}
    for mode in gan.MODES:
        kw = {"epochs": 2, "max_steps": 16} if mode == "components" else {"epochs": 2}
        a1 = train_args(faces_zip, root / mode, mode, cache, **{**kw, "epochs": 1})
        first = gan.main(a1)
        a2 = train_args(faces_zip, root / mode, mode, cache, resume=str(root / mode), **kw)
        second = gan.main(a2)
        out[mode] = (root / mode, first, second)
    return out


def test_each_mode_trains_checkpoints_and_resumes(runs):
    steps_per_epoch = (N_IMAGES - HOLDOUT) // BATCH
    for mode, (d, first, second) in runs.items():
        ckpt = torch.load(d / "checkpoint.pt", weights_only=True)
        assert ckpt["model_args"]["mode"] == mode
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
        assert lines[-1]["global_step"] == second["global_step"]
        assert all(torch.isfinite(torch.tensor([r["loss_d"], r["loss_g"]])).all() for r in lines)
        assert (d / "losses.png").exists() and json.loads((d / "args.json").read_text())["mode"] == mode
    assert (runs["joint"][0] / "bands_e002.png").exists()


def test_resume_repeats_an_uninterrupted_run(runs, faces_zip, tmp_path):
    d = runs["plain"][0]
    a = train_args(faces_zip, tmp_path / "straight", "plain", d.parent / "cache", epochs=2)
    gan.main(a)
    resumed = torch.load(d / "checkpoint.pt", weights_only=True)["generator"]
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["generator"]
    for k in straight:
        assert torch.equal(resumed[k], straight[k]), k


def test_gan_test_metrics(runs, tmp_path):
    a = gan_test.get_args_parser().parse_args(
        ["--n-real", str(HOLDOUT), "--spectrum-bands", "3", "--per-state", "--no-progress", "--device", "cpu",
         "--output-dir", str(tmp_path)] + sum([["--run", str(d)] for d, _, _ in runs.values()], []))
    report = gan_test.main(a)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["results"].keys() == report["results"].keys()
    res = saved["results"]
    assert set(res) == {"real (train)", "plain", "components", "joint"}
    for r in res.values():
        assert r["swd_x1e3"]["avg"] > 0 and len(r["spectrum_mean"]) == 3 and r["spectrum_distance"] >= 0
    assert res["joint"]["max_abs_image_minus_sum_of_bands"] < 1e-5
    assert res["components"]["stage_evaluated"] == "u0"
    assert set(res["components"]["per_state_swd_avg_x1e3"]) == {"u0", "u1", "u2", "u3"}
    assert saved["fid_kid"].startswith("skipped")
    assert (tmp_path / "samples_spectra.png").stat().st_size > 0


def test_group_summary_over_seeds():
    res = {f"r{i}": {"group": g, "swd_x1e3": {"avg": v}, "spectrum_distance": v / 100}
           for i, (g, v) in enumerate([("plain", 10.0), ("plain", 14.0), ("joint", 5.0)])}
    res["real (train)"] = {"mode": "real", "swd_x1e3": {"avg": 1.0}, "spectrum_distance": 0.01}
    s = gan_test.group_summary(res)
    assert list(s) == ["plain"] and s["plain"]["runs"] == 2
    assert s["plain"]["swd_avg_x1e3"][0] == pytest.approx(12.0)
    assert s["plain"]["swd_avg_x1e3"][1] == pytest.approx(8 ** 0.5)
    assert "| plain | 2 | 12.0 ± 2.8 |" in gan_test.summary_table(s)


# ------------------------------------------------------------------------ bad input

def test_bad_inputs_give_one_line_errors(runs, faces_zip, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli("gan_test.py", "--run", empty, "--n-real", 4, "--no-progress")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error:") and "no generator checkpoint" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1

    r = run_cli("gan.py", "--mode", "joint", "--data-dir", faces_zip, "--holdout", HOLDOUT, "--image-size", SIZE,
                "--ngf", 8, "--ndf", 8, "--nz", 16, "--batch-size", BATCH, "--cache-dir", tmp_path / "c",
                "--output-dir", tmp_path / "o", "--resume", runs["plain"][0], "--no-progress")
    assert r.returncode != 0 and "Traceback" not in r.stderr and "--mode plain" in r.stderr

    # A checkpoint of another image size: resume and comparison with 32x32 runs are both refused.
    a = train_args(faces_zip, tmp_path / "o16", "plain", tmp_path / "c", image_size=16,
                   resume=str(runs["plain"][0]))
    with pytest.raises(gan.GanError, match="--image-size 32"):
        gan.main(a)
    small = train_args(faces_zip, tmp_path / "s16", "plain", tmp_path / "c", image_size=16, max_steps=1)
    gan.main(small)
    t = gan_test.get_args_parser().parse_args(["--run", str(runs["plain"][0]), "--run", str(tmp_path / "s16"),
                                               "--n-real", "4", "--no-progress"])
    with pytest.raises(gan.GanError, match="16x16"):
        gan_test.main(t)

    # More real faces than the runs held out would measure against training images.
    t = gan_test.get_args_parser().parse_args(["--run", str(runs["joint"][0]), "--n-real", str(HOLDOUT + 1),
                                               "--no-progress"])
    with pytest.raises(gan.GanError, match="too few for --n-real"):
        gan_test.main(t)
