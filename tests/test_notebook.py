"""ROF-DENOISING.ipynb: it executes top to bottom, what it computes holds, its saved copy is executed,
and it reuses pock.

The notebook checks its own mathematics with ``assert`` cells (adjointness, perfect reconstruction,
the disk against theory, vectorial TV keeping a colour); the test also reads back the values its
cells computed and checks them.
"""

import json
import sys
import warnings
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "ROF-DENOISING.ipynb"
KERNEL = "pock-tests-python"


def _register_kernel(tmp_path, monkeypatch) -> str:
    """A kernelspec that runs this interpreter, found first on JUPYTER_PATH.

    Whatever kernels the machine has installed (or not, as in .ci/run's fresh venv), the notebook
    then runs with the same Python and packages as the tests.
    """
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python (tests)", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return KERNEL


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


# Appended to the notebook for the test only: what its cells computed, as one JSON line.
REPORT_CELL = """
import json as _json
print("NOTEBOOK-VALUES " + _json.dumps({
    "adjoint": [lhs, rhs], "norm_sq": norm_sq,
    "psnr_noisy": psnr(noisy, clean), "psnr_best": max(psnrs), "lam_best": LAM,
    "gap_default": gaps["Algorithm 2, default gamma = 0.25 lam"], "gap_alg1": gaps["Algorithm 1 (gamma = 0)"],
    "energy_gap": {name: float(pock.rof_energy(v, f64, LAM)) - e_ref for name, v, _ in rows},
    "reconstruction": float((dec.phi.sum(dim=1) + dec.residual - f).abs().max()),
    "disk_rate": rate, "disk_share": share, "disk_r": r,
    "psnr_rgb": {str(v): best_rgb[v][2] for v in (False, True)},
    "gains": k.tolist(), "augment_matches": bool(torch.allclose(again, augmented, atol=1e-5)),
    "augmented_changed": float((augmented - f_batch).abs().max()),
}))
"""


def _executed(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(REPORT_CELL))
    kernel = _register_kernel(tmp_path, monkeypatch)
    # The images are small, where one thread is about as fast as two, and the test suite may share
    # the cores with other jobs, where OpenMP threads spinning against each other cost many times more.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    client = NotebookClient(nb, timeout=300, kernel_name=kernel, resources={"metadata": {"path": str(ROOT)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, if any cell fails
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    values = json.loads(text.split("NOTEBOOK-VALUES ", 1)[1])
    return nb, values


def test_notebook_executes_and_its_results_hold(tmp_path, monkeypatch):
    nb, v = _executed(tmp_path, monkeypatch)
    figures = sum("image/png" in o.get("data", {}) for c in _code_cells(nb) for o in c.outputs)
    assert figures >= 10, f"expected the notebook's figures, got {figures}"
    lhs, rhs = v["adjoint"]
    assert abs(lhs - rhs) < 1e-9 * abs(lhs)                            # grad and -div are adjoint
    assert 7.9 < v["norm_sq"] <= 8                                     # ||grad||^2 -> 8 from below
    assert v["psnr_best"] > v["psnr_noisy"] + 5 and 4 < v["lam_best"] < 40
    gd, g1 = v["gap_default"], v["gap_alg1"]
    assert gd[-1] < 1e-3 * gd[0] and gd[-1] < g1[-1]                   # the accelerated algorithm wins
    e = v["energy_gap"]
    assert e["pock.rof, tol 1e-7"] == 0 and 0 < e["scikit-image, 1000 iter."] < e["scikit-image, default"]
    assert v["reconstruction"] < 1e-4                                  # sum of bands + residual == f
    assert abs(v["disk_rate"] * v["disk_r"] / 2 - 1) < 0.1 and v["disk_share"] > 0.9
    assert v["psnr_rgb"]["True"] > v["psnr_rgb"]["False"]              # vectorial TV keeps colour edges
    assert {g for row in v["gains"] for g in row} <= {3.0, 4.0}
    assert v["augment_matches"] and v["augmented_changed"] > 0.05


def test_saved_notebook_is_executed_in_order():
    """The committed notebook shows its outputs: every code cell ran, once, top to bottom, without error."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    cells = _code_cells(nb)
    assert cells, "the notebook has no code cells"
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1)), \
        "re-run the notebook top to bottom (Restart & Run All) before saving it"
    for c in cells:
        assert c.outputs, f"cell without output (not executed?):\n{c.source[:200]}"
        assert not any(o.output_type == "error" for o in c.outputs), f"saved error in cell:\n{c.source[:200]}"


def test_notebook_imports_the_engine_instead_of_copying_it():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = "\n".join(c.source for c in _code_cells(nb))
    assert "import pock" in code
    for name in ("rof", "spectral", "random_gains", "amplify_bands", "spectral_augment", "band_gains", "tv"):
        assert f"pock.{name}(" in code, f"the notebook does not demonstrate pock.{name}"
    # Solver internals belong to pock.py; the notebook must not carry its own copy.
    for sign in ("def rof", "def spectral", "def grad", "def div", "def project", "torch.hypot", "torch.roll", "torch.diff"):
        assert sign not in code, f"the notebook seems to re-implement pock ({sign!r})"
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for ref in ("Rudin", "Chambolle", "Gilboa", "Burger"):
        assert ref in md, f"reference {ref} missing"


def test_cifar_cell_falls_back_to_scikit_image_samples(tmp_path, monkeypatch):
    """Without ../shared/data/cifar10.zip (a fresh machine) the augmentation cell uses bundled samples."""
    cells = _code_cells(nbformat.read(NOTEBOOK, as_version=4))
    setup = cells[0].source
    cifar = next(c.source for c in cells if "cifar10.zip" in c.source)
    monkeypatch.chdir(tmp_path)  # ../shared/data/cifar10.zip does not exist from here
    monkeypatch.syspath_prepend(str(ROOT))
    assert not Path("../shared/data/cifar10.zip").exists()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # plt.show() on Agg warns that it cannot show
        exec("\n".join(line for line in setup.splitlines() if not line.startswith("%")), namespace)
        exec(cifar, namespace)
    plt.close("all")
    assert "not found" in namespace["source"]
    assert tuple(namespace["f_batch"].shape) == (6, 1, 32, 32)
    assert namespace["augmented"].shape == namespace["f_batch"].shape
    assert not (namespace["augmented"] == namespace["f_batch"]).all()
