"""The fingerprint of the code a run executes: results made by other code are stale.

The files are the scripts a run starts and, transitively, every module of this repository they
import (found in the source, lazy imports inside functions included), so a new module is covered
without a list to keep up to date. Each file counts by its syntax tree, not its bytes: comments,
docstrings, argparse ``help=``/``description=`` texts and formatting do not change what a run
computes, so editing them leaves the results current. The tree is written out by
:func:`canonical` rather than ``ast.dump``, whose format differs between Python versions, so that
two machines agree on a fingerprint.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

__all__ = ["code_files", "canonical", "imports", "file_digest", "text_digest", "combine", "fingerprint", "clear_cache"]

ROOT = Path(__file__).resolve().parents[1]
_TEXT_KEYWORDS = ("help", "description", "epilog")


def imports(tree: ast.AST) -> set:
    """Top-level names of every absolute import in ``tree``, those inside functions included."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@lru_cache(maxsize=None)
def _parse(path: Path) -> ast.AST:
    return ast.parse(path.read_text(), filename=str(path))


def code_files(scripts, root: Path = ROOT) -> tuple:
    """``scripts`` and the repository modules they import, transitively: sorted names relative to ``root``."""
    seen, todo = set(), list(scripts)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for mod in imports(_parse(root / name)):
            if (root / f"{mod}.py").is_file():
                todo.append(f"{mod}.py")
    return tuple(sorted(seen))


def _is_docstring(stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def canonical(node) -> str:
    """The syntax tree as text: node types and fields, without docstrings, help texts, positions or empty fields."""
    if isinstance(node, list):
        return "[" + ",".join(canonical(x) for x in node) + "]"
    if not isinstance(node, ast.AST):
        return repr(node)
    parts = [type(node).__name__]
    for field in node._fields:
        value = getattr(node, field, None)
        if field == "body" and isinstance(value, list) and value and _is_docstring(value[0]) and \
                isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            value = value[1:]
        if field == "keywords" and isinstance(node, ast.Call):
            value = [k for k in value if k.arg not in _TEXT_KEYWORDS]
        # Fields that are empty here may be absent in another Python version (e.g. type_params).
        if value is None or value == []:
            continue
        parts.append(f"{field}={canonical(value)}")
    return "(" + " ".join(parts) + ")"


@lru_cache(maxsize=None)
def file_digest(path: Path) -> str:
    """sha256 hex of one file's syntax tree (:func:`canonical`): what the file computes, not how it is worded.

    The band cache keys its folders by the engine's digest too, so a comment edit of ``pock.py``
    neither makes the ledger stale nor rebuilds a cache.
    """
    return hashlib.sha256(canonical(_parse(Path(path))).encode()).hexdigest()


def text_digest(source: str) -> str:
    """:func:`file_digest` of a file's text (e.g. as a git commit holds it)."""
    return hashlib.sha256(canonical(ast.parse(source)).encode()).hexdigest()


def combine(files: dict) -> str:
    """The fingerprint of ``{file: digest}``, the files in sorted order."""
    h = hashlib.sha256()
    for name, digest in sorted(files.items()):
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()


def fingerprint(scripts, root: Path = ROOT) -> tuple:
    """``(sha256 hex, {file: sha256 hex})`` of the code ``scripts`` execute (see the module docstring)."""
    files = {name: file_digest(root / name) for name in code_files(tuple(scripts), root)}
    return combine(files), files


def clear_cache() -> None:
    """Forget parsed files (the tests edit files between calls)."""
    _parse.cache_clear()
    file_digest.cache_clear()
