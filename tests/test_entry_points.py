"""Every entry point's parser, side by side: one meaning per flag name, a help text for every option, no
absolute default, retired spellings that point to their successors, and the README's flag list.

Run as a script (``python tests/test_entry_points.py``) it rewrites the README's flag list from the parsers.
"""

import argparse
import importlib
import os
import re
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from toolkit import cli  # noqa: E402

SCRIPTS = ("train_pt.py", "train_pt_aug.py", "test_pt.py", "train_flowers102.py", "train_aug_flowers102.py",
           "test_flowers102.py", "train_imagenette.py", "train_aug_imagenette.py", "test_imagenette.py", "gan.py",
           "gan_test.py", "bench_pock.py", "run_experiments.py")
MODULES = ("experiments.throughput", "experiments.unsharp_match", "experiments.seeds", "experiments.examples",
           "experiments.device_data", "experiments.fourier_heatmap")
README = ROOT / "README.md"
FLAGS_START, FLAGS_END = "<!-- flags:start -->", "<!-- flags:end -->"


def load_parsers() -> dict:
    """``{entry point: its parser}``: a script by its file name, a module as ``python -m <module>``."""
    parsers = {name: runpy.run_path(str(ROOT / name))["get_args_parser"]() for name in SCRIPTS}
    parsers.update({f"python -m {m}": importlib.import_module(m).get_args_parser() for m in MODULES})
    return parsers


@pytest.fixture(scope="module")
def parsers():
    return load_parsers()


def options(parser) -> dict:
    """``{flag: action}`` of the live options (not -h, not the retired spellings)."""
    return {s: a for a in parser._actions for s in a.option_strings
            if s.startswith("--") and s != "--help" and not cli.is_retired(a)}


def retired(parser) -> list:
    return [a.option_strings[0] for a in parser._actions if cli.is_retired(a)]


def signature(action) -> tuple:
    """What a flag means to the parser: store/flag/append, value type, arity, choices."""
    typ = getattr(action.type, "__qualname__", action.type)
    return type(action).__name__, typ, action.nargs, tuple(action.choices) if action.choices else None


def test_every_entry_point_is_listed():
    on_disk = {p.name for p in ROOT.glob("*.py") if '__name__ == "__main__"' in p.read_text()}
    assert on_disk == set(SCRIPTS), "add new entry points to SCRIPTS (and give them get_args_parser)"
    with_parser = {f"experiments.{p.stem}" for p in (ROOT / "experiments").glob("*.py")
                   if "def get_args_parser" in p.read_text()}
    assert with_parser == set(MODULES)


def test_every_option_has_a_help_text_and_shows_its_default(parsers):
    missing = [f"{name} {flag}" for name, p in parsers.items() for flag, a in options(p).items()
               if not a.help or a.help == argparse.SUPPRESS or len(a.help.split()) < 2]
    assert not missing, f"options without a help text: {missing}"
    for name, p in parsers.items():
        assert issubclass(p.formatter_class, argparse.ArgumentDefaultsHelpFormatter), name
        assert "(default: " in p.format_help(), name


def test_one_meaning_per_flag_name(parsers):
    seen = {}
    for name, p in parsers.items():
        for flag, a in options(p).items():
            seen.setdefault(flag, {}).setdefault(signature(a), []).append(name)
    clashes = {flag: sigs for flag, sigs in seen.items() if len(sigs) > 1}
    assert not clashes, f"flags whose type, arity or choices differ between entry points: {clashes}"
    # The two meanings the issue found: a band count and band indices; one thread count and a list of them.
    assert "--n-bands" in options(parsers["gan.py"]) and "--bands" in retired(parsers["gan.py"])
    assert signature(options(parsers["train_pt_aug.py"])["--bands"])[1] == "int_list"
    assert signature(options(parsers["bench_pock.py"])["--threads"])[1] == "int_list"


def test_no_default_is_an_absolute_path(parsers):
    machine = (str(ROOT), str(ROOT.parent), os.path.expanduser("~"))
    for name, p in parsers.items():
        for flag, a in options(p).items():
            if isinstance(a.default, (str, Path)):
                assert not os.path.isabs(str(a.default)), f"{name} {flag} defaults to {a.default}"
        text = p.format_help()
        assert not any(m in text for m in machine if m not in ("/", "")), f"{name} --help names a machine path"


def test_device_defaults_alike_everywhere(parsers):
    devices = {name: options(p)["--device"].default for name, p in parsers.items() if "--device" in options(p)}
    assert set(devices.values()) == {None} and {"bench_pock.py", "gan.py", "gan_test.py", "test_pt.py"} <= set(devices)


def test_tolerance_defaults_to_the_engines_own(parsers):
    """--tol None leaves pock.spectral its scale-aware default; a number is an absolute gap per pixel."""
    tols = {name: options(p)["--tol"] for name, p in parsers.items() if "--tol" in options(p)}
    assert {"train_pt_aug.py", "gan.py", "gan_test.py"} <= set(tols)
    assert all(a.default is None and "scale-aware" in a.help for a in tols.values()), tols


def test_retired_spellings_fail_with_a_pointer(parsers, capsys):
    checked = 0
    for name, p in parsers.items():
        for flag in retired(p):
            with pytest.raises(SystemExit) as e:
                p.parse_args([flag, "1"])
            err = capsys.readouterr().err
            assert e.value.code == 2 and re.fullmatch(rf"error: {re.escape(flag)} is gone: .+\n", err), (name, err)
            checked += 1
    assert checked >= 13


def test_bad_list_values_stop_in_argparse(parsers, capsys):
    for name, flag in (("bench_pock.py", "--threads"), ("bench_pock.py", "--sizes"), ("train_pt_aug.py", "--bands"),
                       ("train_pt.py", "--hidden")):
        with pytest.raises(SystemExit) as e:
            parsers[name].parse_args([flag, "a"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and f"error: argument {flag}: expected comma-separated integers" in err, err


# ------------------------------------------------------------------------------- README

def flag_list(parsers: dict) -> str:
    """The README's flag list: entry points with the same options share a row."""
    rows = {}
    for name, p in parsers.items():
        rows.setdefault(tuple(sorted(options(p))), []).append(name)
    lines = ["| entry point | flags (`--help` gives each one's meaning and default) |", "|---|---|"]
    for flags, names in rows.items():
        lines.append(f"| {', '.join(f'`{n}`' for n in names)} | {' '.join(f'`{f}`' for f in flags)} |")
    gone = sorted({(flag, name) for name, p in parsers.items() for flag in retired(p)})
    by_flag = {}
    for flag, name in gone:
        by_flag.setdefault(flag, []).append(name)
    lines += ["", "Retired spellings stop with a pointer to their successor: "
              + ", ".join(f"`{f}` ({', '.join(_short(names))})" for f, names in by_flag.items()) + "."]
    return "\n".join(lines)


def _short(names: list) -> list:
    """Entry point names, the classifier scripts as their two families."""
    out = []
    for n in names:
        fam = "train scripts" if n.startswith("train") else "test scripts" if n.startswith("test_") else n
        if fam not in out:
            out.append(fam)
    return out


def readme_block(text: str) -> str:
    i, j = text.index(FLAGS_START) + len(FLAGS_START), text.index(FLAGS_END)
    return text[i:j].strip("\n")


def test_readme_flag_list_matches_the_parsers(parsers):
    text = README.read_text()
    assert text.count(FLAGS_START) == 1 and text.count(FLAGS_END) == 1, "the README needs one flags block"
    assert readme_block(text) == flag_list(parsers), \
        "README.md's flag list differs from the parsers; rewrite it with: python tests/test_entry_points.py"


if __name__ == "__main__":
    text = README.read_text()
    i, j = text.index(FLAGS_START) + len(FLAGS_START), text.index(FLAGS_END)
    README.write_text(text[:i] + "\n" + flag_list(load_parsers()) + "\n" + text[j:])
    print("README.md flag list rewritten")
