"""The boundaries the design rests on: sans-IO protocol, lean CLI start-up, one HTTP module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO

PROTOCOL = REPO / "scepd" / "protocol"


def modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    return set(out.stdout.split())


def test_protocol_imports_no_io_modules() -> None:
    names = [p.stem for p in PROTOCOL.glob("*.py") if p.stem != "__init__"]
    loaded = modules_after("\n".join(f"import scepd.protocol.{n}" for n in names))
    # (cryptography itself imports socket, so that one is checked in the sources below.)
    for forbidden in ("requests", "urllib3", "scepd.transport", "scepd.store",
                      "scepd.client", "http.client", "tempfile"):  # fmt: skip
        assert forbidden not in loaded, forbidden
    for path in PROTOCOL.glob("*.py"):
        text = path.read_text()
        for module in ("socket", "os", "time", "random", "secrets", "urllib"):
            assert f"import {module}\n" not in text and f"from {module} " not in text, path


def _calls(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                found.add(f"{func.value.id}.{func.attr}")
            elif isinstance(func, ast.Attribute):
                found.add(func.attr)
            elif isinstance(func, ast.Name):
                found.add(func.id)
    return found


def test_protocol_reads_no_clock_randomness_environment_or_files() -> None:
    forbidden = {"open", "now", "utcnow", "today", "time", "urandom", "getenv",
                 "token_bytes", "randbytes", "random_serial_number", "generate_private_key",
                 "read_bytes", "read_text", "write_bytes"}  # fmt: skip
    for path in PROTOCOL.glob("*.py"):
        calls = {c.split(".")[-1] for c in _calls(path)}
        assert not calls & forbidden, (path.name, calls & forbidden)
        assert "os.environ" not in path.read_text(), path.name


def test_only_transport_imports_requests() -> None:
    for path in (REPO / "scepd").rglob("*.py"):
        if path.name != "transport.py":
            assert "import requests" not in path.read_text(), path


def test_cli_start_up_is_lean() -> None:
    loaded = modules_after("import scepd.cli")
    for heavy in ("requests", "cryptography", "asn1crypto", "scepd.protocol"):
        assert not any(m == heavy or m.startswith(heavy + ".") for m in loaded), heavy
