"""toolkit/bandcache.py: cached bands equal pock's, the cache is hit, keyed, rebuilt and resumable."""

import json
from pathlib import Path

import pytest
import torch

import pock
from toolkit import bandcache
from toolkit.data import load_images, to_unit_range

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def images(tiny_data):
    # 20 real 16x16 images, 3 chunks of 8: small enough for a fast decomposition.
    return load_images("cifar10", "test", data_dir=tiny_data["cifar10"], image_size=16, subset=20,
                       cache_dir=None, progress=False).images


def _build(images, cache, **kw):
    kw.setdefault("batch_size", 8)
    kw.setdefault("data_key", "tiny")
    return bandcache.load_or_build(images, cache_dir=cache, progress=False, **kw)


def test_cached_bands_equal_pock_spectral_and_reconstruct(images, tmp_path):
    comps = ("phi1", "phi2", "residual", "u0")
    out = _build(images, tmp_path, components=comps, dtype=torch.float32)
    assert out.shape == (20, 4, 1, 16, 16) and out.dtype == torch.float32
    f = to_unit_range(images)
    dec = pock.spectral(f[:8], N=2, lam=7.0)
    assert torch.allclose(out[:8, 0], dec.phi[:, 0], atol=1e-5)
    assert torch.allclose(out[:8, 1], dec.phi[:, 1], atol=1e-5)
    assert torch.equal(out[:, 3], f)
    # phi1 + phi2 + residual (after band 2) gives the image back.
    assert torch.allclose(out[:, :3].sum(1), f, atol=1e-4)


def test_cache_is_hit_and_lam_change_rebuilds(images, tmp_path, monkeypatch):
    first = _build(images, tmp_path)
    assert first.dtype == torch.float16
    calls = []
    real = pock.spectral
    monkeypatch.setattr(pock, "spectral", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = _build(images, tmp_path)
    assert calls == [] and torch.equal(first, again)
    other = _build(images, tmp_path, lam=5.0)
    assert len(calls) == 3 and not torch.equal(first, other)
    metas = bandcache.cache_info(tmp_path)
    assert sorted(m["key"]["lam"] for m in metas) == [5.0, 7.0] and all(m["complete"] for m in metas)
    # Other images, with the same data_key, never reuse a cache.
    _build(images.flip(-1), tmp_path)
    assert len(calls) == 6 and len(bandcache.cache_info(tmp_path)) == 3


def test_interrupted_build_resumes_from_finished_chunks(images, tmp_path, monkeypatch):
    reference = _build(images, tmp_path / "ref")
    real = bandcache._compute
    done = []

    def crash_on_second(*a, **k):
        if len(done) == 1:
            raise KeyboardInterrupt("simulated kill")
        done.append(1)
        return real(*a, **k)
    monkeypatch.setattr(bandcache, "_compute", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        _build(images, tmp_path / "run")
    folder = next((tmp_path / "run").iterdir())
    assert not (folder / "data.bin").exists()  # nothing looks finished
    assert json.loads((folder / "meta.json").read_text())["complete"] is False
    counted = []
    monkeypatch.setattr(bandcache, "_compute", lambda *a, **k: counted.append(1) or real(*a, **k))
    resumed = _build(images, tmp_path / "run")
    assert len(counted) == 2  # chunks 2 and 3 only
    assert torch.equal(resumed, reference)


def test_damaged_cache_is_rebuilt(images, tmp_path):
    ref = _build(images, tmp_path).clone()
    folder = next(tmp_path.iterdir())
    with open(folder / "data.bin", "r+b") as fh:
        fh.truncate(100)
    assert torch.equal(_build(images, tmp_path), ref)


def test_bad_components_are_refused(images, tmp_path):
    with pytest.raises(ValueError, match="unknown band-cache component"):
        _build(images, tmp_path, components=("phi0",))
    assert bandcache.parse_components(("phi3", "u1"))[0] == 3
    assert bandcache.parse_components(("u4",))[0] == 3


def _build_in_subprocess(args):
    images, cache = args
    torch.set_num_threads(1)
    # a tight tolerance and small chunks make the build last long enough for the runs to overlap
    return _build(images, cache, dtype=torch.float32, tol=1e-7, batch_size=2).clone()


def test_two_processes_building_the_same_cache_agree(images, tmp_path):
    """Two runs started together: one builds, the other waits and reuses (no crash, same bands)."""
    import multiprocessing as mp
    with mp.get_context("spawn").Pool(2) as pool:
        a, b = pool.map(_build_in_subprocess, [(images, tmp_path), (images, tmp_path)])
    assert torch.equal(a, b)
    assert torch.equal(a, _build(images, tmp_path, dtype=torch.float32, tol=1e-7, batch_size=2))
    assert len([m for m in tmp_path.glob("*/meta.json")]) == 1


def test_key_follows_the_engines_code_not_its_comments(images, tmp_path, monkeypatch):
    def key_with(source):
        path = tmp_path / f"pock{len(list(tmp_path.iterdir()))}.py"
        path.write_text(source)
        monkeypatch.setattr(pock, "__file__", str(path))
        return bandcache.cache_key(images, lam=7.0, components=("phi1",), tol=1e-3, vectorial=False,
                                   dtype=torch.float16, data_key="tiny")
    source = Path(pock.__file__).read_text()
    original = key_with(source)
    assert key_with("# a new comment at the top\n" + source.replace('"""', '"""Reworded. ', 1)) == original
    assert key_with(source + "\nSPECTRAL_TOL = 2 * SPECTRAL_TOL\n") != original


def test_key_records_the_tolerance_it_was_given_none_included(images):
    """tol=None (pock.spectral's own, scale-aware default) is a setting of its own, not an absolute gap."""
    def key(tol):
        return bandcache.cache_key(images, lam=7.0, components=("phi1",), tol=tol, vectorial=False,
                                   dtype=torch.float16, data_key="tiny")
    assert key(None)["tol"] is None and key(1e-3)["tol"] == 1e-3
    assert key(None) != key(1e-3) != key(2e-3)
