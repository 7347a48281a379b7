"""The toolkit's shape: scripts import no script, short functions, one meaning per shared flag, one error type."""

import ast
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit import cli

ROOT = Path(__file__).resolve().parents[1]
TOP = sorted(ROOT.glob("*.py"))
LIBRARY_FILES = sorted((ROOT / "toolkit").glob("*.py"))
SOURCES = TOP + LIBRARY_FILES
SCRIPTS = {p.stem for p in TOP if 'if __name__ == "__main__"' in p.read_text()}
# What a user runs, and the engine; everything else that is code lives in toolkit/ or experiments/.
ENTRY_POINTS = {"train_pt", "train_pt_aug", "test_pt", "train_flowers102", "train_aug_flowers102", "test_flowers102",
                "train_imagenette", "train_aug_imagenette", "test_imagenette", "gan", "gan_test", "run_experiments",
                "bench_pock"}
ENGINE = {"pock", "pock_cpu"}
SHARED_FLAGS = tuple(cli.COMMON_FLAGS)
MAX_LINES = 80


def _imports(path: Path) -> set:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_module_or_script_imports_a_script():
    assert {"gan", "gan_test", "train_pt", "test_pt", "classify"} & SCRIPTS == {"gan", "gan_test", "train_pt",
                                                                                 "test_pt"}
    bad = {p.name: sorted(_imports(p) & SCRIPTS) for p in SOURCES if _imports(p) & SCRIPTS}
    assert not bad, f"these files import top-level scripts (move what they need into a module): {bad}"


def test_top_level_holds_the_entry_points_and_the_engine_only():
    assert {p.stem for p in TOP} == ENTRY_POINTS | ENGINE
    assert ENTRY_POINTS <= SCRIPTS and not ENGINE & SCRIPTS


def test_imports_point_down():
    """scripts -> experiments -> toolkit -> engine: no file imports a layer above its own."""
    tests = {p.stem for p in (ROOT / "tests").glob("*.py")}
    layers = {"toolkit": LIBRARY_FILES, "engine": [ROOT / f"{m}.py" for m in sorted(ENGINE)]}
    above = {"toolkit": {"experiments"} | SCRIPTS | tests, "engine": {"toolkit", "experiments"} | SCRIPTS | tests}
    bad = {f"{p.parent.name}/{p.name}": sorted(_imports(p) & above[layer])
           for layer, files in layers.items() for p in files if _imports(p) & above[layer]}
    assert not bad, f"imports that point up: {bad}"
    exp = sorted((ROOT / "experiments").glob("*.py"))
    assert not {p.name: _imports(p) & (SCRIPTS | tests) for p in exp if _imports(p) & (SCRIPTS | tests)}
    # Of the repository, the engine imports its own kernel only.
    own = {p.stem for p in SOURCES} | {"toolkit", "experiments"} | tests
    assert _imports(ROOT / "pock.py") & own == {"pock_cpu"} and not _imports(ROOT / "pock_cpu.py") & own


def _code_lines(fn) -> int:
    """Lines of a function from its signature to its end, without its docstring."""
    body = fn.body
    doc = body[0] if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
        and isinstance(body[0].value.value, str) else None
    n = fn.end_lineno - fn.lineno + 1
    return n - (doc.end_lineno - doc.lineno + 1 if doc is not None and len(body) > 1 else 0)


def _modules(path: Path) -> set:
    """Names of the toolkit modules ``path`` imports (``from toolkit import x``, ``from toolkit.x import y``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "toolkit":
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("toolkit."):
            names.add(node.module.split(".")[1])
    return names


def test_no_function_is_longer_than_a_screen():
    long = [f"{p.name}:{fn.lineno} {fn.name} ({_code_lines(fn)} lines)" for p in SOURCES
            for fn in ast.walk(ast.parse(p.read_text()))
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and _code_lines(fn) > MAX_LINES]
    assert not long, f"functions over {MAX_LINES} lines; split them into named steps: {long}"


def _help_entries(text: str) -> dict:
    """``--flag -> its help`` from an argparse --help, whitespace and the default stripped, the archive named."""
    entries, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^  (--[\w-]+)", line)
        if m:
            current = m.group(1)
            entries[current] = line[len(m.group(0)):]
        elif current and line.startswith("   "):
            entries[current] += " " + line.strip()
        else:
            current = None
    out = {}
    for flag, h in entries.items():
        h = re.sub(r"\s+", " ", h).replace("- ", "-").strip()
        h = re.sub(r"\(default: [^)]*\)$", "", h).strip()
        out[flag] = re.sub(r"shared/data/\w+\.zip", "shared/data/<dataset>.zip", h)
    return out


def test_train_script_and_gan_share_their_flags():
    helps = {}
    for name in ("train_pt_aug.py", "gan.py"):
        p = subprocess.run([sys.executable, str(ROOT / name), "--help"], capture_output=True, text=True, cwd=ROOT,
                           timeout=120)
        assert p.returncode == 0, p.stderr
        helps[name] = _help_entries(p.stdout)
    for flag in SHARED_FLAGS:
        assert flag in helps["gan.py"] and flag in helps["train_pt_aug.py"], flag
        assert helps["gan.py"][flag] == helps["train_pt_aug.py"][flag], flag
    # Same spelling, arity, type and constant, not only the same words.
    parsers = [runpy.run_path(str(ROOT / n))["get_args_parser"]() for n in ("train_pt_aug.py", "gan.py")]
    actions = [{a.option_strings[0]: a for a in p._actions if a.option_strings} for p in parsers]
    for flag in SHARED_FLAGS:
        a, b = actions[0][flag], actions[1][flag]
        assert (type(a), a.nargs, a.type, a.const, a.metavar) == (type(b), b.nargs, b.type, b.const, b.metavar), flag
    assert actions[1]["--resume"].nargs == "?" and actions[1]["--amp"].default is False


@pytest.mark.parametrize("module,name", [("data", "DataError"), ("checkpoints", "CheckpointError"),
                                         ("gan_metrics", "MetricError"), ("gan_models", "ModelError")])
def test_user_errors_are_one_type(module, name):
    from toolkit import errors
    import importlib
    assert getattr(importlib.import_module(f"toolkit.{module}"), name) is getattr(errors, name)
    assert issubclass(getattr(errors, name), errors.UserError) and cli.UserError is errors.UserError


# The modules under the command line: they raise errors.py's types and never build on cli.py.
LIBRARY = ("errors", "io_utils", "data", "bandcache", "checkpoints", "training", "models", "configs", "plots",
           "gan_common", "gan_models", "gan_metrics", "fingerprint")


def test_errors_are_the_bottom_floor_and_libraries_do_not_import_the_cli():
    own = {p.stem for p in SOURCES} | {"experiments", "toolkit"}
    assert not _imports(ROOT / "toolkit" / "errors.py") & own, "errors.py must import nothing of the toolkit"
    bad = [m for m in LIBRARY if "cli" in _modules(ROOT / "toolkit" / f"{m}.py")]
    assert not bad, f"library modules that import the CLI (raise errors.UserError instead): {bad}"
    # Only entry points and their libraries of command lines build on cli.py.
    users = sorted(p.stem for p in LIBRARY_FILES if "cli" in _modules(p))
    assert users == ["classify", "gan_driver"], users


def test_run_prints_one_line_and_exits_2(capsys):
    import argparse

    def main(args):
        raise cli.UserError(f"bad --x {args.x}; use another")
    p = argparse.ArgumentParser()
    p.add_argument("--x", default="1")
    with pytest.raises(SystemExit) as e:
        cli.run(main, p, ["--x", "7"])
    assert e.value.code == 2 and capsys.readouterr().err == "error: bad --x 7; use another\n"
