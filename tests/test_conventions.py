"""The toolkit's shape: scripts import no script, short functions, one meaning per shared flag, one error type."""

import ast
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

import cli

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(ROOT.glob("*.py"))
SCRIPTS = {p.stem for p in SOURCES if 'if __name__ == "__main__"' in p.read_text()}
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


def _code_lines(fn) -> int:
    """Lines of a function from its signature to its end, without its docstring."""
    body = fn.body
    doc = body[0] if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
        and isinstance(body[0].value.value, str) else None
    n = fn.end_lineno - fn.lineno + 1
    return n - (doc.end_lineno - doc.lineno + 1 if doc is not None and len(body) > 1 else 0)


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
    import errors
    assert getattr(__import__(module), name) is getattr(errors, name)
    assert issubclass(getattr(errors, name), errors.UserError) and cli.UserError is errors.UserError


# The modules under the command line: they raise errors.py's types and never build on cli.py.
LIBRARY = ("errors", "io_utils", "data", "bandcache", "checkpoints", "training", "models", "configs", "plots",
           "gan_lib", "gan_models", "gan_metrics", "pock")


def test_errors_are_the_bottom_floor_and_libraries_do_not_import_the_cli():
    own = {p.stem for p in SOURCES} | {"experiments"}
    assert not _imports(ROOT / "errors.py") & own, "errors.py must import nothing of the toolkit"
    bad = [m for m in LIBRARY if "cli" in _imports(ROOT / f"{m}.py")]
    assert not bad, f"library modules that import the CLI (raise errors.UserError instead): {bad}"
    # Only entry points and their libraries of command lines build on cli.py.
    users = sorted(p.stem for p in SOURCES if "cli" in _imports(p) and p.stem not in SCRIPTS)
    assert users == ["classify", "generate"], users


def test_run_prints_one_line_and_exits_2(capsys):
    import argparse

    def main(args):
        raise cli.UserError(f"bad --x {args.x}; use another")
    p = argparse.ArgumentParser()
    p.add_argument("--x", default="1")
    with pytest.raises(SystemExit) as e:
        cli.run(main, p, ["--x", "7"])
    assert e.value.code == 2 and capsys.readouterr().err == "error: bad --x 7; use another\n"
