"""Fourier-basis perturbations (toolkit/fourier.py), the heat-map script end to end with its resume, and the
float32 layout option of training (--channels-last) that must leave the maths unchanged."""

import json
import runpy
from pathlib import Path

import pytest
import torch

from experiments import fourier_heatmap
from toolkit import fourier

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("h,w", [(32, 32), (5, 6)])
def test_unique_basis_is_orthonormal_and_covers_each_conjugate_pair_once(h, w):
    freqs = fourier.unique_frequencies(h, w)
    both = {tuple(f) for f in freqs.tolist()} | {tuple(f) for f in fourier.partner(freqs, h, w).tolist()}
    assert len(both) == h * w  # every frequency is a unique one or the partner of one
    self_conj = 4 if h % 2 == 0 and w % 2 == 0 else 2
    assert len(freqs) == (h * w + self_conj) // 2
    b = fourier.basis_images(h, w, dtype=torch.float64).reshape(len(freqs), -1)
    assert torch.allclose(b @ b.T, torch.eye(len(freqs), dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("i,j", [(3, 5), (0, 0), (0, 16), (16, 16), (31, 1), (7, 0)])
def test_basis_image_has_its_energy_at_its_frequency_and_partner_only(i, j):
    u = fourier.basis_images(32, 32, torch.tensor([[i, j]]), dtype=torch.float64)[0]
    energy = torch.fft.fft2(u).abs() ** 2
    support = {(i, j), ((-i) % 32, (-j) % 32)}
    mask = torch.zeros(32, 32, dtype=torch.bool)
    for a, b in support:
        mask[a, b] = True
    assert energy[~mask].max() < 1e-20 and energy[mask].min() > 0.1
    assert energy.sum() == pytest.approx(32 * 32)  # Parseval for a unit-norm image
    assert u.norm() == pytest.approx(1.0) and not u.is_complex()


def test_perturbation_has_norm_r_per_channel_before_clipping():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 16, 16) * 0.2 - 0.1      # far from the bounds, so nothing is clipped
    u = fourier.basis_images(16, 16, torch.tensor([[2, 3]]))[0]
    signs = fourier.random_signs(64, 3, g)
    d = fourier.perturb(x, u, 0.5, signs) - x
    assert torch.allclose(d.flatten(2).norm(dim=2), torch.full((64, 3), 0.5), atol=1e-5)
    assert set(signs.unique().tolist()) == {-1.0, 1.0}
    # Each image and channel moves along +u or -u, as its sign says.
    assert torch.allclose(d, 0.5 * signs[:, :, None, None] * u, atol=1e-6)
    # Against the bounds the result is clipped into [-1, 1].
    big = fourier.perturb(torch.full((2, 1, 16, 16), 0.99), u, 5.0, torch.ones(2, 1))
    assert big.max() == 1.0 and big.min() >= -1.0


def test_centred_map_puts_zero_frequency_in_the_middle_and_is_symmetric():
    freqs = fourier.unique_frequencies(8, 8)
    values = torch.arange(len(freqs), dtype=torch.float64)
    m = fourier.centred_map(values, freqs, 8, 8)
    assert not m.isnan().any() and m[4, 4] == values[0]  # (0, 0) is the first unique frequency
    # Point symmetry about the centre: frequency (a, b) equals (-a, -b).
    assert torch.equal(m[1:, 1:], m[1:, 1:].flip(0, 1))


def _train_tiny(tiny_data, cache_dir, out: Path, *extra, size: int = 16) -> dict:
    ns = runpy.run_path(str(ROOT / "train_pt.py"))
    args = ["--data-dir", str(tiny_data["cifar10"]), "--cache-dir", str(cache_dir), "--image-size", str(size),
            "--subset", "20", "--eval-split", "none", "--max-steps", "1", "--batch-size", "10", "--epochs", "1",
            "--device", "cpu", "--no-progress", "--output-dir", str(out), *extra]
    return ns["main"](ns["get_args_parser"]().parse_args(args))


def test_channels_last_gives_the_same_first_step_loss(tiny_data, cache_dir, tmp_path):
    a = _train_tiny(tiny_data, cache_dir, tmp_path / "nchw")
    b = _train_tiny(tiny_data, cache_dir, tmp_path / "nhwc", "--channels-last")
    assert json.loads((tmp_path / "nhwc" / "args.json").read_text())["channels_last"] is True
    # Other kernels sum in another order: float32 rounding apart, the same loss. (Not the same weights after
    # the step: Adam's first step is lr * g / |g|, which turns rounding noise in near-zero gradients into +-lr.)
    assert b["final_loss"] == pytest.approx(a["final_loss"], rel=1e-5)
    wa, wb = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=True)["model"]["layer1.0.conv1.weight"]
              for d in ("nchw", "nhwc"))
    assert wa.is_contiguous() and wb.is_contiguous(memory_format=torch.channels_last) and not wb.is_contiguous()


def test_heatmap_script_writes_json_and_figure_and_resumes(tiny_data, cache_dir, tmp_path, monkeypatch):
    _train_tiny(tiny_data, cache_dir, tmp_path / "run", size=8)  # 8 x 8 px: 34 unique frequencies
    ckpt = tmp_path / "run" / "checkpoint.pt"
    out = tmp_path / "fh"
    argv = ["--checkpoints", f"plain={ckpt}", f"spectral={tmp_path / 'run'}", "--data-dir", str(tiny_data["cifar10"]),
            "--cache-dir", str(cache_dir), "--images", "8", "--norm", "4", "--batch-size", "5", "--device", "cpu",
            "--no-progress", "--output-dir", str(out)]
    parser = fourier_heatmap.get_args_parser()
    # Killed in its 12th evaluation: after the clean one and 10 frequencies.
    real, calls, kill_at = fourier_heatmap.count_errors, [], [12]

    class Killed(Exception):
        pass

    def counted(*a, **k):
        calls.append(1)
        if len(calls) == kill_at[0]:
            raise Killed
        return real(*a, **k)
    monkeypatch.setattr(fourier_heatmap, "count_errors", counted)
    with pytest.raises(Killed):
        fourier_heatmap.main(parser.parse_args(argv))
    kill_at[0] = None
    part = json.loads((out / "fourier_heatmap.parts" / "plain.json").read_text())
    assert len(part["errors"]) == 10 and not (out / "fourier_heatmap.json").exists()  # clean + 10 frequencies

    calls.clear()
    fourier_heatmap.main(parser.parse_args(argv))
    n_freq = len(fourier.unique_frequencies(8, 8))
    assert len(calls) == (n_freq - 10) + (1 + n_freq)  # the rest of plain, then all of spectral
    res = json.loads((out / "fourier_heatmap.json").read_text())
    assert res["norm"] == 4 and res["images"] == 8 and res["subset_seed"] == 0
    plain, spectral = res["conditions"]["plain"], res["conditions"]["spectral"]
    err = torch.tensor(plain["error"])
    assert err.shape == (8, 8) and ((err * 8).round() == err * 8).all() and 0 <= plain["clean_error"] <= 1
    # One checkpoint by two labels, same images and signs: the resumed map equals the uninterrupted one.
    assert plain["error"] == spectral["error"] and plain["clean_error"] == spectral["clean_error"]
    assert (out / "fourier_heatmap.png").stat().st_size > 0

    calls.clear()
    fourier_heatmap.main(parser.parse_args(argv))
    assert not calls  # finished parts are reused


def test_bad_checkpoint_labels_are_refused():
    for bad in (["plain"], ["a b=x.pt"], ["plain=a.pt", "plain=b.pt"]):
        with pytest.raises(fourier_heatmap.cli.UserError, match="--checkpoints"):
            fourier_heatmap.parse_checkpoints(bad)
