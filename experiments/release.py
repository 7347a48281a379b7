"""Releases: the code a sweep's results are pinned to, so that work on main cannot make them stale.

A profile with ``release="results-v2"`` judges its ledger against the manifest
``results/releases/results-v2.json`` instead of the working tree: a run is current when the code it
executed is the release's, whatever the checkout holds now. The manifest is made once from the tag
(``python -m experiments.release results-v2``) and committed: the syntax digest
(:func:`toolkit.fingerprint.text_digest`) and the repository imports of every Python file at the
tagged commit (the tests aside). Fingerprints computed from it equal those the runs recorded when they ran
from a worktree of the tag, and no git call is needed to check them, so a clone without the tags
(or a shallow one) reaches the same verdicts.

The sweep itself must run the release's code: the runner refuses a job whose working-tree
fingerprint differs from the release's (its run would be stale on arrival) and says how to make a
worktree of the tag.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

from toolkit.errors import UserError
from toolkit.fingerprint import ROOT, combine, fingerprint, imported_files, text_digest
from toolkit.io_utils import read_json, write_json

from .plan import REPO

__all__ = ["MANIFESTS", "manifest_path", "manifest", "make", "load", "release_fingerprint", "differences"]

MANIFESTS = REPO / "results" / "releases"


def manifest_path(tag: str, root: Path = MANIFESTS) -> Path:
    return Path(root) / f"{tag}.json"


def manifest(tag: str, commit: str, sources: dict) -> dict:
    """The manifest of the files ``{name: source text}`` of a top-level checkout at ``commit``:
    ``{"tag", "commit", "files": {name: {"digest", "imports"}}}``, ``imports`` being the files among
    ``sources`` that a file imports (inside functions too), as :func:`toolkit.fingerprint.code_files`
    follows them."""
    files = {}
    for name, source in sorted(sources.items()):
        found = imported_files(ast.parse(source, filename=name), name, sources.__contains__)
        files[name] = {"digest": text_digest(source), "imports": sorted(found)}
    return {"tag": tag, "commit": commit, "files": files}


def make(tag: str, repo: Path = REPO) -> dict:
    """The manifest of the git tag ``tag``: every Python file of its commit but the tests."""
    def git(*args) -> str:
        p = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=60)
        if p.returncode:
            raise UserError(f"git {' '.join(args)}: {p.stderr.strip()}")
        return p.stdout
    commit = git("rev-parse", "--verify", "--quiet", f"{tag}^{{commit}}").strip()
    names = [n for n in git("ls-tree", "-r", "--name-only", commit).split()
             if n.endswith(".py") and not n.startswith("tests/")]
    return manifest(tag, commit, {n: git("show", f"{commit}:{n}") for n in names})


def load(tag: str, root: Path = MANIFESTS) -> dict:
    """The committed manifest of ``tag``; a missing one is an error that says how to make it."""
    path = manifest_path(tag, root)
    found = read_json(path)
    if found is None:
        raise UserError(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: no manifest of "
                           f"release {tag}; make it from the tag with python -m experiments.release {tag}")
    return found


def release_fingerprint(scripts, manifest: dict) -> tuple:
    """``(sha256 hex, {file: digest})`` of the code ``scripts`` execute at the release, as
    :func:`toolkit.fingerprint.fingerprint` computes it on a checkout of the tag."""
    known = manifest["files"]
    seen, todo = set(), list(scripts)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in known:
            raise ValueError(f"{name} is not a file of release {manifest['tag']}")
        seen.add(name)
        todo += known[name]["imports"]
    files = {name: known[name]["digest"] for name in sorted(seen)}
    return combine(files), files


def differences(scripts, manifest: dict, root: Path = ROOT) -> list:
    """Files among those ``scripts`` execute whose code in the checkout is not the release's (sorted)."""
    _, here = fingerprint(tuple(scripts), root)
    try:
        _, there = release_fingerprint(scripts, manifest)
    except ValueError:
        there = {}
    return sorted(n for n in set(here) | set(there) if here.get(n) != there.get(n))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Write the manifest of a release tag (results/releases/TAG.json).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("tag", help="the git tag the sweep runs from, e.g. results-v2")
    args = p.parse_args(argv)
    manifest = make(args.tag)
    path = manifest_path(args.tag)
    write_json(path, manifest)
    print(f"wrote {path.relative_to(REPO)}: {len(manifest['files'])} files at {manifest['commit'][:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
