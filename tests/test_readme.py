"""README.md keeps documenting what scepd does: every command, the exit codes, the NDES
walkthrough (a scripted edit once cut most of it; nothing else would have noticed)."""

from __future__ import annotations

import re

from conftest import REPO

from scepd.cli import _parser

README = (REPO / "README.md").read_text()


def test_every_command_is_in_the_readme() -> None:
    parser = _parser()
    (subparsers,) = [
        a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict)
    ]
    for name in subparsers.choices:
        assert re.search(rf"scepd {re.escape(name)}\b", README), name


def test_exit_code_table_and_sections() -> None:
    for code in range(10):
        assert re.search(rf"^\| {code} \| ", README, re.M), code
    for heading in ("## Install", "## Commands", "## The renewal daemon",
                    "## Walkthrough: a web server's certificate from Microsoft NDES",
                    "## Exit codes", "## Development"):  # fmt: skip
        assert f"\n{heading}\n" in README, heading
