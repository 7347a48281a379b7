"""bench_pock.py runs end to end on a few real images and reports consistent numbers."""

import json
import sys

import bench_pock


def test_bench_runs_and_certifies(tiny_data, tmp_path, monkeypatch):
    out = tmp_path / "bench"
    args = bench_pock.get_args_parser().parse_args([
        "--data-dir", str(tiny_data["cifar10"]), "--n-images", "16", "--n-baseline", "2",
        "--repeats", "1", "--image-size", "32", "--baseline-max-iter", "300", "--output-dir", str(out)])
    report = bench_pock.main(args)
    saved = json.loads((out / "bench.json").read_text())
    assert saved["results"][0]["device"] == "cpu" == report["results"][0]["device"]
    r = saved["results"][0]
    # the primal gap is bounded by the certified duality gap, which is bounded by the tolerance
    assert 0 <= r["rof_pock"]["worst_primal_gap"] <= r["rof_pock"]["worst_certified_gap"] <= args.tol
    assert r["rof_pock_matched"]["worst_primal_gap"] <= r["rof_skimage"]["worst_primal_gap"] / 10
    for key in ("rof_pock", "rof_skimage", "spectral_pock", "spectral_dissertation"):
        assert r[key]["images_per_s"] > 0
    assert r["spectral_pock"]["max_band_error_vs_reference"] < 0.5
