"""The docs name the tests that prove each promise; a renamed or deleted test must not leave a
row pointing at nothing. ``docs/standards.md`` rows that claim a requirement is met must name at
least one test."""

from __future__ import annotations

import ast
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md", ROOT / "bench" / "README.md"]

# `tests/x.py::test_a` names a file and a test; a following `::test_b` in the same cell or
# sentence names another test of the file named last.
REFERENCE = re.compile(r"(tests/[\w/]+\.py)?::(test_\w+)")


@cache
def defined_tests(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text())
    return frozenset(
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    )


def references(text: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    current = ""
    for match in REFERENCE.finditer(text):
        current = match.group(1) or current
        found.append((current, match.group(2)))
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_test_the_docs_name_exists(doc: Path) -> None:
    missing = [
        f"{file}::{name}"
        for file, name in references(doc.read_text())
        if not file or not (ROOT / file).is_file() or name not in defined_tests(ROOT / file)
    ]
    assert missing == []


def test_every_met_standard_names_a_test() -> None:
    rows = [
        line
        for line in (ROOT / "docs" / "standards.md").read_text().splitlines()
        if re.match(r"\| [\d.–]+ \|", line)
    ]
    assert len(rows) >= 20
    unproved = [row[:60] for row in rows if "| met |" in row and not references(row)]
    assert unproved == []


def test_reference_parser_follows_the_last_named_file() -> None:
    text = "`tests/a.py::test_x`, `::test_y`; `tests/b.py::test_z`"
    assert references(text) == [
        ("tests/a.py", "test_x"),
        ("tests/a.py", "test_y"),
        ("tests/b.py", "test_z"),
    ]


CONFLICT_MARKER = re.compile(r"^(<{7} |={7}$|>{7} )", re.MULTILINE)


def project_files() -> list[Path]:
    """The files git would commit: tracked or new, never ignored (virtualenvs, caches, builds).

    Walking the tree instead once flagged a conflict marker inside a third-party package in
    ``.venv-lowest`` — a file the project does not own."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    return [ROOT / name for name in listed.split("\0") if name]


def test_no_file_keeps_a_merge_conflict_marker() -> None:
    """A merge once committed CHANGES.md with its conflict markers; nothing else caught it."""
    suffixes = {".md", ".py", ".toml", ".txt", ".yaml", ".yml", ".html", ".js", ".css", ".sh"}
    offenders = [
        str(path.relative_to(ROOT))
        for path in project_files()
        if path.suffix in suffixes
        and path.is_file()
        and CONFLICT_MARKER.search(path.read_text(errors="replace"))
    ]
    assert not offenders, f"merge conflict markers in {offenders}"


def test_project_files_leave_out_ignored_virtualenvs() -> None:
    names = {path.relative_to(ROOT).parts[0] for path in project_files()}
    assert "otp_service" in names and "tests" in names
    assert not {".venv", ".venv-lowest", ".git"} & names
