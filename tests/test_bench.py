"""bench_pock.py on a few real images: certified accuracy, its README table, clear errors."""

import shutil

import pytest

import bench_pock
from toolkit import cli, io_utils


@pytest.fixture(scope="module")
def report(tiny_data, tmp_path_factory, one_thread_module):
    out = tmp_path_factory.mktemp("bench")
    args = bench_pock.get_args_parser().parse_args([
        "--data-root", str(tiny_data["cifar10"].parent), "--quick", "--sizes", "32,64", "--threads", "1",
        "--repeats", "0", "--device", "cpu", "--output-dir", str(out)])
    bench_pock.main(args)
    assert (out / "bench_cpu.png").is_file()
    return io_utils.read_json(out / "bench_cpu.json")


@pytest.fixture(scope="module")
def one_thread_module():
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_rof_is_certified_ten_times_closer_than_scikit_image(report):
    (r,) = report["rof"]
    # pock's tolerance is a tenth of scikit-image's worst primal gap, and its certified duality
    # gap bounds its primal gap: so its worst primal gap is at least 10x smaller
    assert r["pock"]["tol"] == pytest.approx(r["skimage"]["worst_primal_gap"] / 10)
    assert r["pock"]["worst_primal_gap"] <= r["pock"]["tol"]
    assert r["gap_ratio"] >= 10


def test_default_bands_accurate_and_more_so_than_the_dissertation_scheme(report):
    rows = {(r["method"], r["size"]): r for r in report["spectral"]}
    mine, theirs = rows["pock", 32], rows["dissertation", 32]
    assert len(mine["iters_per_step"]) == 6 and min(mine["iters_per_step"]) >= 1
    assert max(mine["band_rel_l2"]) <= 0.02                 # spectral's documented accuracy at 32x32
    assert max(mine["band_rel_l2"]) < max(theirs["band_rel_l2"])
    assert {("pock", 64), ("dissertation", 64)} <= set(rows)


def test_readme_block_is_generated_from_the_json(report, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{bench_pock.README_START}\nold typed numbers\n{bench_pock.README_END}\n\nrest\n")
    bench_pock.update_readme([report], readme)
    text = readme.read_text()
    assert "old typed numbers" not in text and text.startswith("intro") and text.endswith("rest\n")
    r = report["rof"][0]
    assert f"{r['speedup']:.1f}x" in text
    mine = next(x for x in report["spectral"] if x["method"] == "pock" and x["size"] == 32)
    assert f"{mine['images_per_s']:,.1f}" in text
    bench_pock.update_readme([report], readme)              # idempotent
    assert readme.read_text() == text


def test_missing_markers_and_missing_archive_are_named(report, tmp_path, tiny_data):
    readme = tmp_path / "README.md"
    readme.write_text("no block here\n")
    with pytest.raises(cli.UserError, match="no <!-- bench:start -->"):
        bench_pock.update_readme([report], readme)
    only_cifar = tmp_path / "data"
    only_cifar.mkdir()
    shutil.copy(tiny_data["cifar10"], only_cifar / "cifar10.zip")
    args = bench_pock.get_args_parser().parse_args(["--data-root", str(only_cifar), "--sizes", "32,64", "--quick",
                                                    "--device", "cpu"])
    with pytest.raises(cli.UserError, match=r"imagenette.zip: no such archive; pass --data-root the folder that "
                                            r"holds cifar10.zip and imagenette.zip"):
        bench_pock.main(args)


def test_list_flags_fail_in_one_line_and_old_spellings_point_to_the_new(capsys):
    for argv, needle in ((["--threads", "a"], "argument --threads: expected comma-separated integers, got 'a'"),
                         (["--output", "x.json"], "--output is gone: use --output-dir DIR"),
                         (["--data-dir", "x"], "--data-dir is gone: use --data-root")):
        with pytest.raises(SystemExit) as e:
            bench_pock.get_args_parser().parse_args(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and "Traceback" not in err and needle in err, err


def test_thread_benchmark_rows_and_their_readme_lines(report):
    rows = report["threads"]
    assert {(r["images"], r["size"]) for r in rows} == set(bench_pock.QUICK_THREAD_CASES)
    assert all(r["speedup"] == 1.0 and r["seconds"] > 0 and r["mean_iters"] >= 1 for r in rows)   # one count: itself
    two = rows + [dict(r, threads=2, seconds=r["seconds"] / 1.8, speedup=1.8) for r in rows]
    text = bench_pock.markdown(dict(report, threads=two))
    assert text.count("**1.80x** the speed on 1") == len(rows)
