"""packaging/debian stays in step with the tree: one version everywhere, and every file the
package installs exists (dh_install would otherwise fail late, or dh_missing miss it)."""

from __future__ import annotations

import os
import re
import tomllib

from conftest import REPO

import scepd

DEBIAN = REPO / "packaging" / "debian"


def test_one_version_in_changelog_pyproject_and_module() -> None:
    first = (DEBIAN / "changelog").read_text().splitlines()[0]
    match = re.fullmatch(r"scepd \(([^)]+)\) \S+; urgency=\w+", first)
    assert match, first
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert match.group(1) == project == scepd.__version__


def test_every_installed_file_exists() -> None:
    for name in ("scepd.install", "scepd.manpages", "scepd.examples", "scepd.docs"):
        for line in (DEBIAN / name).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                source = line.split()[0]
                assert (REPO / source).is_file(), f"{name}: {source}"


def test_scripts_are_executable_and_the_autopkgtest_is_declared() -> None:
    for path in ("rules", "tests/installed"):
        assert os.access(DEBIAN / path, os.X_OK), path
    control = (DEBIAN / "tests" / "control").read_text()
    assert re.search(r"^Tests: installed$", control, re.M)
    assert re.search(r"^Depends: @, scep\b", control, re.M)


def test_python_dependencies_are_the_debian_packages() -> None:
    """dh_python3 turns Requires-Dist into Depends: the pyproject list is the package's."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~ ]", d, maxsplit=1)[0].lower() for d in deps}
    assert names == {"cryptography", "asn1crypto", "requests", "apscheduler", "pyyaml",
                     "systemd-python"}  # fmt: skip
