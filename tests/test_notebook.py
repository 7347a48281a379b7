"""ROF-DENOISING.ipynb: it executes top to bottom, its saved copy is executed, and it reuses pock.

The notebook checks its own mathematics with ``assert`` cells (adjointness, perfect reconstruction,
the disk against theory, vectorial TV keeping a colour), so executing it tests those too.
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


def test_notebook_executes(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    kernel = _register_kernel(tmp_path, monkeypatch)
    # The images are small, where one thread is about as fast as two, and the test suite may share
    # the cores with other jobs, where OpenMP threads spinning against each other cost many times more.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    client = NotebookClient(nb, timeout=300, kernel_name=kernel,
                            resources={"metadata": {"path": str(ROOT)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, if any cell fails
    cells = _code_cells(nb)
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1))
    figures = sum("image/png" in o.get("data", {}) for c in cells for o in c.outputs)
    assert figures >= 10, f"expected the notebook's figures, got {figures}"


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
