"""toolkit/data.py: decoding, splits, the decode cache and the error messages, on tiny real datasets."""

import csv
import io
import zipfile

import pytest
import torch

from toolkit import data
from photo_data import make_test_dataset
from toolkit.data import DataError, load_images


def _load(path, name, split, cache=None, **kw):
    kw.setdefault("image_size", 32)
    return load_images(name, split, data_dir=path, cache_dir=cache, progress=False, **kw)


def test_unit_range_round_trip():
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    f = data.to_unit_range(x)
    assert f.dtype == torch.float32 and f.min() == -1 and f.max() == 1
    assert torch.equal(data.from_unit_range(f), x)


def test_cifar_zip_decodes_to_uint8_grayscale(tiny_data):
    s = _load(tiny_data["cifar10"], "cifar10", "train")
    assert s.images.dtype == torch.uint8 and s.images.shape == (80, 1, 32, 32)
    assert s.classes[:3] == ["airplane", "automobile", "bird"] and len(s.classes) == 10
    assert torch.equal(torch.bincount(s.labels), torch.full((10,), 8))
    rgb = _load(tiny_data["cifar10"], "cifar10", "train", grayscale=False)
    assert rgb.images.shape == (80, 3, 32, 32)
    # ITU-R 601 luma, as PIL's convert("L") and torchvision's Grayscale.
    luma = (rgb.images.float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert (luma - s.images.float()).abs().max() <= 1.0


def test_subset_is_seeded_and_only_subset_is_decoded(tiny_data):
    a = _load(tiny_data["cifar10"], "cifar10", "test", subset=20, seed=1)
    b = _load(tiny_data["cifar10"], "cifar10", "test", subset=20, seed=1)
    c = _load(tiny_data["cifar10"], "cifar10", "test", subset=20, seed=2)
    assert len(a) == 20 and torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert a.source == b.source != c.source


def test_decode_cache_is_hit_and_keyed_by_options(tiny_data, tmp_path, monkeypatch):
    first = _load(tiny_data["imagenette"], "imagenette", "val", cache=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    # A second load must not decode any JPEG.
    monkeypatch.setattr(data, "_decode_one", lambda *a, **k: pytest.fail("decoded again despite the cache"))
    again = _load(tiny_data["imagenette"], "imagenette", "val", cache=tmp_path)
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    monkeypatch.undo()
    other = _load(tiny_data["imagenette"], "imagenette", "val", cache=tmp_path, image_size=16)
    assert other.images.shape[-1] == 16 and len(list(tmp_path.glob("*.pt"))) == 2


def test_damaged_decode_cache_is_named_decoded_again_and_replaced(tiny_data, tmp_path, capsys):
    first = _load(tiny_data["imagenette"], "imagenette", "val", cache=tmp_path)
    (cache_file,) = tmp_path.glob("*.pt")
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    again = _load(tiny_data["imagenette"], "imagenette", "val", cache=tmp_path)
    out = capsys.readouterr().out
    assert f"decode cache {cache_file} is unusable: it is damaged" in out and "decoding the images again" in out
    assert torch.equal(first.images, again.images)
    # Replaced: the third load reads the cache without a word.
    _load(tiny_data["imagenette"], "imagenette", "val", cache=tmp_path)
    assert "unusable" not in capsys.readouterr().out


def test_flowers_use_official_splits_and_labels_from_csv(tiny_data):
    z = zipfile.ZipFile(tiny_data["flowers102"])
    rows = list(csv.DictReader(io.StringIO(z.read("flowers102_splits.csv").decode())))
    for split in ("train", "val", "test"):
        s = _load(tiny_data["flowers102"], "flowers102", split)
        mine = sorted((r["path"], int(r["label"]) - 1) for r in rows if r["official_split"] == split)
        assert len(s) == len(mine) and len(s.classes) == 102
        assert s.labels.tolist() == [lab for _, lab in mine]
        # Non-square originals are resized on the shorter side, then center-cropped to a square.
        assert s.images.shape[1:] == (1, 32, 32)
    with pytest.raises(DataError, match="official splits"):
        _load(tiny_data["flowers102"], "flowers102", "valid")


def test_folder_and_wrapped_zip_equal_the_zip(tiny_data, tmp_path):
    src = tiny_data["imagenette"]
    folder = tmp_path / "imagenette"
    zipfile.ZipFile(src).extractall(folder)
    wrapped = tmp_path / "wrapped.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(wrapped, "w") as zout:
        for n in zin.namelist():
            zout.writestr("imagenette2/" + n, zin.read(n))
    ref = _load(src, "imagenette", "train")
    for path in (folder, wrapped):
        s = _load(path, "folder", "train")
        assert torch.equal(s.images, ref.images) and torch.equal(s.labels, ref.labels) and s.classes == ref.classes


def _zip(path, files):
    with zipfile.ZipFile(path, "w") as z:
        for name, payload in files.items():
            z.writestr(name, payload)
    return path


def test_bad_inputs_give_one_line_errors(tiny_data, tmp_path):
    z = zipfile.ZipFile(tiny_data["celeba"])
    good_jpg = z.read(next(n for n in sorted(z.namelist()) if n.endswith(".jpg")))
    cases = [
        (tmp_path / "missing.zip", "train", "no such file"),
        (tmp_path.joinpath("empty").mkdir() or tmp_path / "empty", "train", "holds no image files"),
        (_zip(tmp_path / "flat.zip", {"a.jpg": good_jpg, "b.jpg": good_jpg}), "train", "expected split folders"),
        (_zip(tmp_path / "noclass.zip", {"train/a.jpg": good_jpg}), "train", "put them in class folders"),
        (_zip(tmp_path / "corrupt_img.zip", {"train/x/a.jpg": good_jpg, "train/x/b.jpg": b"not a jpeg"}),
         "train", "train/x/b.jpg is corrupt"),
        (tiny_data["cifar10"], "validation", "unknown split 'validation'.*splits test, train"),
    ]
    bad_zip = tmp_path / "broken.zip"
    bad_zip.write_bytes(b"PK\x03\x04 definitely not a zip")
    cases.append((bad_zip, "train", "not a readable zip"))
    for path, split, pattern in cases:
        with pytest.raises(DataError, match=pattern) as e:
            _load(path, "folder", split)
        msg = str(e.value)
        assert "\n" not in msg and str(path) in msg


def test_make_test_dataset_is_the_same_everywhere(tmp_path):
    """Built from scikit-image's bundled photographs only: two builds give the same bytes."""
    a = make_test_dataset("flowers102", tmp_path / "a.zip", n_per_class=1, image_size=16)
    b = make_test_dataset("flowers102", tmp_path / "b.zip", n_per_class=1, image_size=16)
    za, zb = zipfile.ZipFile(a), zipfile.ZipFile(b)
    assert za.namelist() == zb.namelist() and all(za.read(n) == zb.read(n) for n in za.namelist())
    s = _load(a, "flowers102", "test", image_size=16)
    assert len(s) == 102 and sorted(s.labels.tolist()) == list(range(102))
    assert s.classes[:2] == ["flower 1", "flower 2"]
    assert s.images.float().std() > 10  # real image content, not blank
    c = make_test_dataset("cifar10", tmp_path / "c.zip", n_per_class=2, image_size=16)
    t = _load(c, "cifar10", "test", image_size=16)
    assert len(t) == 20 and not torch.equal(t.images[0], t.images[2])
    faces = _load(make_test_dataset("celeba", tmp_path / "f.zip", n_per_class=4, image_size=16), "celeba",
                  "train", image_size=16)
    assert len(faces) == 4 and len({bytes(x.numpy()) for x in faces.images}) == 4


def test_malformed_class_names_are_an_error(tiny_data, tmp_path):
    src = zipfile.ZipFile(tiny_data["flowers102"])
    for payload, pattern in ((b"{not json", "cat_to_name.json is not valid JSON"),
                             (b'["a", "b"]', "cat_to_name.json must map label numbers to names")):
        bad = tmp_path / "bad.zip"
        with zipfile.ZipFile(bad, "w") as z:
            for n in src.namelist():
                z.writestr(n, payload if n == "cat_to_name.json" else src.read(n))
        with pytest.raises(DataError, match=pattern):
            _load(bad, "flowers102", "test")


def test_subset_indices_are_a_seeded_draw():
    a = data.subset_indices(100, 10, seed=3)
    assert a == sorted(a) and len(set(a)) == 10 and a == data.subset_indices(100, 10, seed=3)
    assert a != data.subset_indices(100, 10, seed=4)
    assert data.subset_indices(5, None, 0) == data.subset_indices(5, 9, 0) == list(range(5))


@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("imagenette", 10), ("flowers102", 102), ("celeba", 1)])
def test_shared_archives_load(shared_data, name, classes, tmp_path):
    """The real archives of ../shared/data decode in the layout the scripts expect."""
    split = {"cifar10": "test", "imagenette": "val", "flowers102": "test", "celeba": "train"}[name]
    s = load_images(name, split, data_dir=shared_data / f"{name}.zip", image_size=16, subset=8, cache_dir=None,
                    progress=False)
    assert len(s) == 8 and len(s.classes) == classes and s.images.shape[1:] == (1, 16, 16)


def test_torchvision_source_goes_through_the_same_decoding(tiny_data, monkeypatch, tmp_path):
    """data_dir=None uses torchvision's dataset class (here a stand-in, as tests run offline)."""
    import torchvision.datasets as tvd
    from PIL import Image
    ref = _load(tiny_data["cifar10"], "cifar10", "test", grayscale=False)

    class FakeCIFAR10:
        def __init__(self, root, train, download):
            assert not train and download
            self.classes = ref.classes
            self.targets = ref.labels.tolist()

        def __len__(self):
            return len(self.targets)

        def __getitem__(self, i):
            return Image.fromarray(ref.images[i].permute(1, 2, 0).numpy()), self.targets[i]

    monkeypatch.setattr(tvd, "CIFAR10", FakeCIFAR10)
    s = load_images("cifar10", "test", data_dir=None, image_size=32, download_root=str(tmp_path),
                    cache_dir=None, progress=False)
    gray = _load(tiny_data["cifar10"], "cifar10", "test")
    assert torch.equal(s.labels, ref.labels) and s.classes == ref.classes
    assert (s.images.int() - gray.images.int()).abs().max() <= 1  # RGB->L of decoded pixels
    with pytest.raises(DataError, match="unknown split 'val' for cifar10"):
        load_images("cifar10", "val", data_dir=None, image_size=32, cache_dir=None)
