"""Rewrite the README's configuration table from ``Settings`` (run after adding a setting)."""

from __future__ import annotations

import sys
from pathlib import Path

from otp_service.settings import settings_table

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def render() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, default, doc in settings_table():
        shown = default.replace("|", "\\|")
        lines.append(f"| `{name}` | `{shown}` | {doc} |")
    return "\n".join(lines)


def main() -> int:
    text = README.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    README.write_text(f"{head}{START}\n{render()}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
