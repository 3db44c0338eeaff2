"""The pure core imports nothing that does I/O or reads time or randomness by itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "otp_service" / "core"
FORBIDDEN = {
    "flask",
    "werkzeug",
    "redis",
    "socket",
    "http",
    "urllib",
    "requests",
    "os",
    "time",
    "random",
    "secrets",
    "subprocess",
    "otp_service.store.redis",
    "otp_service.store.memory",
    "otp_service.sms",
    "otp_service.service",
    "otp_service.api",
    "otp_service.app",
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_imports_no_io(module: Path) -> None:
    bad = {
        name
        for name in _imports(module)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    }
    assert not bad, f"{module.name} imports {sorted(bad)}"
