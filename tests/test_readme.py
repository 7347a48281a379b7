"""README.md cannot rot: every command in its ```bash blocks is checked against the code.

* each command is of a kind that a test or .ci/run exercises (pip, pytest, a top-level script,
  torchrun, jupyter); anything else fails here until a check is added for it;
* every script exists and its ``--help`` lists every flag the README gives it (torchrun's own flags
  too), and a ``../shared/data/<name>.zip`` argument names the archive the script is meant for;
* every ``--checkpoint``/``--run`` folder is the ``--output-dir`` of a command shown before it;
* the main job (train with the augmentation, then test the checkpoint) runs for real, on a tiny
  real dataset, with the README's own paths;
* the results block has the markers run_experiments.py rewrites, and that rewrite works on it.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
ARCHIVES = ("cifar10.zip", "flowers102.zip", "imagenette.zip", "celeba.zip")
RESULTS_START, RESULTS_END = "<!-- results:start -->", "<!-- results:end -->"


def bash_blocks(text: str) -> list:
    """The commands of each ```bash block, one list per block (continuation lines joined)."""
    blocks = []
    for body in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        body = body.replace("\\\n", " ")
        cmds = [line.strip() for line in body.splitlines()]
        blocks.append([c for c in cmds if c and not c.startswith("#")])
    return blocks


def all_commands() -> list:
    return [c for block in bash_blocks(README.read_text()) for c in block]


def parse(cmd: str) -> dict:
    """Split a command into its kind, the script (or module), its arguments and a launcher's flags."""
    tokens = shlex.split(cmd)
    if tokens[:2] == ["pip", "install"]:
        return dict(kind="pip", args=tokens[2:])
    if tokens[:3] == ["python", "-m", "pytest"]:
        return dict(kind="pytest", args=tokens[3:])
    if tokens[0] == "python" and len(tokens) > 1 and tokens[1].endswith(".py"):
        return dict(kind="script", script=tokens[1], args=tokens[2:], launcher=[])
    if tokens[0] == "torchrun":
        i = next(i for i, t in enumerate(tokens) if t.endswith(".py"))
        return dict(kind="script", script=tokens[i], args=tokens[i + 1:], launcher=tokens[1:i])
    if tokens[0] == "jupyter":
        return dict(kind="jupyter", sub=tokens[1], args=tokens[2:])
    raise AssertionError(f"README command of a kind no test checks: {cmd!r}; add a check in tests/test_readme.py")


def flags(args: list) -> list:
    return [a.split("=", 1)[0] for a in args if a.startswith("--")]


def value(args: list, flag: str):
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


HELP_RUNNER = r"""
import contextlib, io, json, runpy, sys
out_path, targets = sys.argv[1], sys.argv[2:]
sys.path.insert(0, ".")
helps = {}
for target in targets:
    buf = io.StringIO()
    sys.argv = [target, "--help"]
    with contextlib.redirect_stdout(buf):
        try:
            if target.endswith(".py"):
                runpy.run_path(target, run_name="__main__")
            else:
                runpy.run_module(target, run_name="__main__", alter_sys=True)
        except SystemExit:
            pass
    helps[target] = buf.getvalue()
with open(out_path, "w") as f:
    json.dump(helps, f)
"""


def help_texts(targets, tmp_path) -> dict:
    """``--help`` of each script (or module), all in one interpreter so that torch is imported once."""
    out = tmp_path / "helps.json"
    p = subprocess.run([sys.executable, "-c", HELP_RUNNER, str(out), *targets], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(out.read_text())


def has_flag(help_text: str, flag: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text) is not None


def test_every_command_is_of_a_checked_kind_and_its_files_exist():
    cmds = [parse(c) for c in all_commands()]
    kinds = {c["kind"] for c in cmds}
    assert {"pip", "pytest", "script"} <= kinds, "the README must show set-up, tests and scripts"
    for c in cmds:
        if c["kind"] == "pip" and c["args"] == ["."]:
            assert (ROOT / "pyproject.toml").is_file(), "the README installs the engine from pyproject.toml"
            continue
        if c["kind"] == "pip":
            assert c["args"] == ["-r", "requirements.txt"], c
            lines = [ln.strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
            reqs = [ln for ln in lines if ln and not ln.startswith("#")]
            assert reqs and all("==" in ln for ln in reqs), "the README promises pinned requirements"
        elif c["kind"] == "pytest":
            assert (ROOT / c["args"][-1]).is_dir(), c
        elif c["kind"] == "script":
            assert (ROOT / c["script"]).is_file(), f"README names a missing script {c['script']}"
        elif c["kind"] == "jupyter":
            exe = Path(sys.executable).parent / f"jupyter-{c['sub']}"
            assert exe.exists() or shutil.which(f"jupyter-{c['sub']}"), f"jupyter {c['sub']} is not installed"
            assert all((ROOT / a).exists() for a in c["args"] if not a.startswith("-")), c


def test_every_entry_point_is_documented():
    text = README.read_text()
    scripts = [p.name for p in ROOT.glob("*.py") if '__name__ == "__main__"' in p.read_text()]
    assert len(scripts) >= 13
    missing = [s for s in scripts if s not in text]
    assert not missing, f"scripts the README does not mention: {missing}"
    assert "ROF-DENOISING.ipynb" in text


def test_every_flag_in_the_readme_exists(tmp_path):
    cmds = [c for c in map(parse, all_commands()) if c["kind"] == "script"]
    targets = sorted({c["script"] for c in cmds})
    launchers = any(c["launcher"] for c in cmds)
    helps = help_texts(targets + (["torch.distributed.run"] if launchers else []), tmp_path)
    for c in cmds:
        text = helps[c["script"]]
        assert "--help" in text, f"{c['script']} --help printed no usage:\n{text[:500]}"
        unknown = [f for f in flags(c["args"]) if not has_flag(text, f)]
        assert not unknown, f"README uses {unknown} with {c['script']}, which its --help does not list"
        unknown = [f for f in flags(c["launcher"]) if not has_flag(helps["torch.distributed.run"], f)]
        assert not unknown, f"README uses torchrun flags {unknown} that torchrun does not have"
        # A local archive must be the one the script is for (its --help names it as the example).
        for a in c["args"]:
            m = re.fullmatch(r"\.\./shared/data/(.+)", a)
            if m:
                assert m.group(1) in ARCHIVES, f"no such archive in ../shared/data: {a}"
                meant = set(re.findall(r"shared/data/(\w+\.zip)", text))
                assert not meant or m.group(1) in meant, f"{c['script']} is for {meant}, README gives it {a}"


def test_checkpoints_and_runs_come_from_commands_shown_before():
    made = set()
    for c in map(parse, all_commands()):
        if c["kind"] != "script":
            continue
        ckpt = value(c["args"], "--checkpoint")
        if ckpt:
            assert Path(ckpt).parent.as_posix() in made, f"{c['script']}: {ckpt} is made by no command above it"
        for i, a in enumerate(c["args"]):
            if a == "--run":
                assert c["args"][i + 1] in made, f"{c['script']}: --run {c['args'][i + 1]} is made by no command above it"
        out = value(c["args"], "--output-dir")
        if out:
            made.add(Path(out).as_posix())


def test_main_job_runs_as_written(tiny_data, cache_dir, tmp_path):
    """The README's train-then-test commands, for real, on a tiny CIFAR-10 made of real images.

    The commands run as written from a fresh folder (so their relative paths chain as in the README),
    with the archive replaced by the tiny one and flags appended that shrink the run.
    """
    block = next(b for b in bash_blocks(README.read_text())
                 if any("train_pt_aug.py" in c for c in b) and any("--checkpoint" in c for c in b))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    common = ["--device", "cpu", "--no-progress", "--cache-dir", str(cache_dir)]
    for cmd in block:
        c = parse(cmd)
        args = [str(tiny_data["cifar10"]) if a == "../shared/data/cifar10.zip" else a for a in c["args"]]
        if c["script"].startswith("train"):
            args += ["--subset", "40", "--eval-subset", "40", "--epochs", "1", "--image-size", "16"] + common
        else:
            args += ["--subset", "40"] + common  # the image size comes from the checkpoint
        p = subprocess.run([sys.executable, str(ROOT / c["script"]), *args], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300, env=env)
        assert p.returncode == 0, f"{cmd}\n{p.stderr[-3000:]}"
    out = tmp_path / value(parse(block[0])["args"], "--output-dir")
    assert (out / "checkpoint.pt").is_file() and (out / "results.json").is_file()
    assert list(out.glob("test-*")), "the test command wrote no results next to the checkpoint"


def test_results_block_is_there_once_and_run_experiments_can_rewrite_it(tmp_path, monkeypatch):
    text = README.read_text()
    lines = text.splitlines()
    assert lines.count(RESULTS_START) == 1 and lines.count(RESULTS_END) == 1, "need each marker once, on its own line"
    i, j = lines.index(RESULTS_START), lines.index(RESULTS_END)
    assert i < j - 1, "the results block needs a line between its markers"
    monkeypatch.syspath_prepend(str(ROOT))
    import run_experiments
    assert (run_experiments.README_START, run_experiments.README_END) == (RESULTS_START, RESULTS_END)
    copy = tmp_path / "README.md"
    copy.write_text(text)
    assert run_experiments.update_readme(copy, "| measured | table |")
    new = copy.read_text().splitlines()
    assert new[new.index(RESULTS_START) + 1] == "| measured | table |"
    # Everything outside the block is untouched.
    assert new[:new.index(RESULTS_START)] == lines[:i] and new[new.index(RESULTS_END):] == lines[j:]
