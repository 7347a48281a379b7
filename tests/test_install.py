"""`pip install .` makes `import pock` work from any folder, with torch and numba (its CPU kernel) as requirements."""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_declares_the_engines_runtime_dependencies_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == ["torch", "numpy", "numba"]


def test_pip_install_into_a_target_then_import_from_elsewhere(tmp_path):
    target, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    # No dependencies (torch and numba are already here) and no build isolation (the venv has setuptools,
    # which torch requires): nothing is downloaded.
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT)], check=True, capture_output=True, text=True)
    installed = sorted(p.name for p in target.iterdir() if p.suffix == ".py")
    assert installed == ["pock.py", "pock_cpu.py"]        # the scripts stay scripts
    probe = ("import pock, pock_cpu, torch; f = torch.rand(2, 1, 16, 16); d = pock.spectral(f, N=2); "
             "print(pock.__file__); print(float((d.phi.sum(1) + d.residual - f).abs().max())); "
             "print(pock_cpu.AVAILABLE)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}).stdout.split()
    assert Path(out[0]).parent == target
    assert float(out[1]) < 1e-5 and out[2] == "True"
