"""The unsharp-mask control and colour: the mask's known solutions, its matching, and vectorial TV under --color."""

import json
import runpy
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from toolkit import unsharp  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_gaussian_kernel_is_normalised_and_symmetric():
    for sigma in (0.5, 1.0, 2.3):
        k = unsharp.gaussian_kernel(sigma, dtype=torch.float64)
        assert k.sum().item() == pytest.approx(1.0) and torch.equal(k, k.flip(0))
        assert len(k) == 2 * max(1, int(torch.tensor(3 * sigma).ceil())) + 1
    with pytest.raises(ValueError, match="sigma must be positive"):
        unsharp.gaussian_kernel(0.0)


def test_constant_image_is_a_fixed_point():
    f = torch.full((2, 3, 16, 16), 0.3, dtype=torch.float64)
    assert torch.allclose(unsharp.unsharp_mask(f, 2.5, 1.0), f, atol=1e-12)
    assert unsharp.high_pass(f, 1.0).abs().max() < 1e-12


def test_linear_image_is_unchanged_away_from_the_borders():
    # A symmetric kernel that sums to one reproduces affine functions: G * f = f wherever it sees no border.
    H = W = 24
    y, x = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    f = (0.03 * x - 0.02 * y + 0.1).expand(1, 1, H, W)
    sigma, r = 1.0, 3
    w = unsharp.unsharp_mask(f, 3.0, sigma)
    inner = (slice(None), slice(None), slice(r, H - r), slice(r, W - r))
    assert torch.allclose(w[inner], f[inner], atol=1e-12)
    assert not torch.allclose(w, f)          # at the borders the reflection bends the ramp


def test_amount_zero_is_the_identity_and_amount_scales_the_perturbation():
    g = torch.Generator().manual_seed(0)
    f = torch.rand(3, 1, 12, 12, generator=g, dtype=torch.float64) * 2 - 1
    assert torch.equal(unsharp.unsharp_mask(f, 0.0, 1.0), f)
    d1, d2 = unsharp.unsharp_mask(f, 1.0, 1.0) - f, unsharp.unsharp_mask(f, 2.0, 1.0) - f
    assert torch.allclose(d2, 2 * d1)


def test_per_image_amounts_equal_a_loop_and_channels_are_independent():
    g = torch.Generator().manual_seed(1)
    f = torch.rand(4, 3, 10, 10, generator=g, dtype=torch.float64)
    a = unsharp.random_amounts(4, (1.5, 2.5), generator=torch.Generator().manual_seed(2))
    assert ((a >= 1.5) & (a < 2.5)).all()
    batched = unsharp.unsharp_mask(f, a, 1.0)
    for i in range(4):
        for c in range(3):
            one = unsharp.unsharp_mask(f[i:i + 1, c:c + 1], float(a[i]), 1.0)
            assert torch.allclose(batched[i:i + 1, c:c + 1], one)


def test_matching_file_matches_the_spectral_size_and_the_profile_reads_it():
    from experiments.profiles import MATCHING, PROFILES
    m = json.loads(MATCHING.read_text())
    for name, e in m["datasets"].items():
        lo, hi = e["amount"]
        assert hi / lo == pytest.approx(m["amount_ratio"], rel=2e-3)
        # E||a (f - G f)|| = E[a] E||f - G f||: the recorded unsharp size is the spectral one
        assert (lo + hi) / 2 * e["high_pass_norm"] == pytest.approx(e["unsharp_norm"])
        assert e["unsharp_norm"] == pytest.approx(e["spectral_norm"], rel=2e-3)
        assert e["unsharp_norm_drawn"] == pytest.approx(e["spectral_norm"], rel=0.02)
        ds = PROFILES["scale2"].dataset(name)
        assert dict(ds.unsharp)["unsharp-amount"] == f"{lo:g},{hi:g}" and dict(ds.unsharp)["unsharp-sigma"] == m["sigma"]


def test_matching_on_tiny_real_images(tiny_data):
    from experiments import unsharp_match
    res = unsharp_match.measure("cifar10", tiny_data["cifar10"], images=16, sigma=1.0)
    assert res["images"] == 16 and res["image_size"] == 32
    assert res["unsharp_norm"] == pytest.approx(res["spectral_norm"], rel=2e-3)


# ---------------------------------------------------------------------------- training flags

def _run(name, argv):
    ns = runpy.run_path(str(ROOT / name))
    return ns["main"](ns["get_args_parser"]().parse_args([str(a) for a in argv]))


def _fast(tiny_data, cache, out, *extra):
    return ["--data-dir", tiny_data["cifar10"], "--cache-dir", cache, "--image-size", 16, "--subset", 16,
            "--eval-split", "none", "--epochs", 1, "--batch-size", 8, "--device", "cpu", "--no-progress",
            "--output-dir", out, *extra]


@pytest.mark.parametrize("flags, vectorial", [((), True), (("--channelwise-tv",), False)])
def test_color_uses_vectorial_tv_by_default_and_records_it(flags, vectorial, tiny_data, tmp_path):
    cache = tmp_path / "cache"
    _run("train_pt_aug.py", _fast(tiny_data, cache, tmp_path / "run", "--color", "--spectral-mode", "replace",
                                  *flags))
    args = json.loads((tmp_path / "run" / "args.json").read_text())
    assert args["vectorial_tv"] is vectorial and args["color"] is True
    metas = [json.loads(p.read_text()) for p in (cache / "bands").glob("*/meta.json")]
    assert len(metas) == 1 and metas[0]["key"]["vectorial"] is vectorial and metas[0]["shape"][2] == 3


def test_gray_spectral_runs_record_no_vectorial_tv(tiny_data, tmp_path):
    _run("train_pt_aug.py", _fast(tiny_data, tmp_path / "cache", tmp_path / "run", "--spectral-mode", "replace"))
    assert json.loads((tmp_path / "run" / "args.json").read_text())["vectorial_tv"] is False


def test_unsharp_condition_replaces_about_its_share_of_the_images(tiny_data, tmp_path):
    from toolkit import classify
    args = classify.get_train_parser("cifar10").parse_args(
        [str(a) for a in _fast(tiny_data, tmp_path / "c", tmp_path / "o", "--unsharp-amount", "1.5,2.5")])
    aug = classify.Augmenter(args)
    aug.generator.manual_seed(0)
    x = torch.rand(400, 1, 16, 16) * 2 - 1
    out, _ = aug(x, torch.zeros(400, dtype=torch.long), torch.arange(400))
    changed = (out - x).flatten(1).abs().amax(1) > 0
    assert 0.4 < changed.float().mean() < 0.6
    ratio = (out - x)[changed].flatten(1).norm(dim=1) / unsharp.high_pass(x[changed], 1.0).flatten(1).norm(dim=1)
    assert ((ratio > 1.5 - 1e-4) & (ratio < 2.5 + 1e-4)).all()
    r = _run("train_pt.py", _fast(tiny_data, tmp_path / "c", tmp_path / "o", "--unsharp-amount", "1.5,2.5"))
    assert r["steps"] == 2
    recorded = json.loads((tmp_path / "o" / "args.json").read_text())
    assert recorded["unsharp_amount"] == [1.5, 2.5] and recorded["unsharp_sigma"] == 1.0


@pytest.mark.parametrize("text", ["2,1", "x", "1", "-1,2"])
def test_unsharp_amount_must_be_a_range(text):
    import argparse
    from toolkit import classify
    with pytest.raises(argparse.ArgumentTypeError, match="LO,HI"):
        classify.parse_range(text)


def test_example_grid_panels_show_each_condition_with_its_size(tmp_path):
    from experiments import examples
    g = torch.Generator().manual_seed(3)
    f = torch.rand(1, 1, 32, 32, generator=g) * 2 - 1
    ps = examples.panels(f, (1.5, 2.5), 1.0)
    titles = [t for t, _, _ in ps]
    assert titles[:3] == ["original f", "phi_1", "phi_2"] and titles[-1].startswith("unsharp a = 2.00")
    phi = ps[1][1] + ps[2][1]
    k3 = next(img for t, img, _ in ps if t == "spectral k = 3")
    assert torch.allclose(k3 - f, 2 * phi, atol=1e-6)
    assert torch.allclose(ps[-1][1], unsharp.unsharp_mask(f, 2.0, 1.0))
    examples._figure([("tiny", ps)], tmp_path / "grid.png")
    assert (tmp_path / "grid.png").read_bytes().startswith(b"\x89PNG") and b"Software" not in (tmp_path / "grid.png").read_bytes()
