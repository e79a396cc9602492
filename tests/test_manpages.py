"""scepd(8) and scepd.yaml(5) are generated (scepd/manpage.py) and committed in man/: they must
not drift from the parser and the example configuration, and must render cleanly."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO

from scepd.cli import _parser
from scepd.manpage import generate

MAN = REPO / "man"


def test_committed_pages_are_what_the_code_generates(tmp_path: Path) -> None:
    for page in generate(tmp_path, REPO / "config.example.yaml"):
        committed = MAN / page.name
        assert committed.read_text() == page.read_text(), (
            f"{committed} is stale: run `make man` and commit it"
        )


def test_every_command_and_option_is_documented() -> None:
    text = (MAN / "scepd.8").read_text().replace("\\-", "-")
    parser = _parser()
    (subparsers,) = [
        a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict)
    ]
    for name, sub in subparsers.choices.items():
        assert f".SS {name}\n" in text, name
        for action in sub._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help") and action.help != "==SUPPRESS==":
                    assert option in text, (name, option)
    for code in range(10):
        assert f".TP\n\\fB{code}\\fR\n" in text


def test_config_page_holds_the_whole_example() -> None:
    text = (MAN / "scepd.yaml.5").read_text().replace("\\-", "-").replace("\\e", "\\")
    for line in (REPO / "config.example.yaml").read_text().splitlines():
        assert line.removeprefix("\\&") in text


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff not installed")
@pytest.mark.parametrize("page", ["scepd.8", "scepd.yaml.5"])
def test_pages_render_without_warnings(page: str) -> None:
    result = subprocess.run(
        ["groff", "-man", "-ww", "-z", str(MAN / page)], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stderr) == (0, "")
