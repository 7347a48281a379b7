"""Shared fixtures: tiny datasets of real photographs, built the same on every machine."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Zips cut from scikit-image's sample photographs, in the layout of ../shared/data: cifar10
    (8/class), imagenette (6/class), flowers102 (1/class per official split, with its splits csv),
    celeba (16), at 32 px."""
    from photo_data import make_test_dataset
    root = tmp_path_factory.mktemp("tiny_data")
    sizes = {"cifar10": 8, "imagenette": 6, "flowers102": 1, "celeba": 16}
    return {k: make_test_dataset(k, root / f"{k}.zip", n_per_class=n, image_size=32)
            for k, n in sizes.items()}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """A ``--cache-dir`` shared by the tests (decoded images and bands are keyed by their inputs)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def shared_data():
    """The real archives in ../shared/data, for the tests that need them; skipped where absent."""
    root = ROOT.parent / "shared" / "data"
    if not (root / "cifar10.zip").is_file():
        pytest.skip(f"needs the dataset archives in {root} (cifar10.zip, ...), absent on this machine")
    return root


@pytest.fixture
def one_thread():
    """One intra-op thread for the duration of a test, then the previous setting.

    The tiny tensors of these tests gain nothing from a second thread, and on a shared 2-core
    machine spinning OpenMP threads made the classification tests 2.5x slower (88 s vs 222 s).
    """
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
