"""`scepd check [NAME]`: the online preflight, against a real devca process."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, run_scepd
from devca_peer import DevCA, start_devca
from test_daemon import write_config

from scepd.commands.preflight import check
from scepd.errors import UsageError
from scepd.protocol.fingerprint import display

CHALLENGE = "static-s3cret"


def _start(tmp_path_factory: pytest.TempPathFactory, *extra: str) -> Iterator[DevCA]:
    directory = tmp_path_factory.mktemp("devca")
    secret = directory / "static-challenge"
    secret.write_text(CHALLENGE + "\n")
    yield from start_devca(
        directory / "ca", "--validity", "1h", "--challenge-file", str(secret), *extra
    )


@pytest.fixture(scope="module")
def devca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCA]:
    yield from _start(tmp_path_factory)


@pytest.fixture(scope="module")
def ndes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCA]:
    yield from _start(tmp_path_factory, "--ndes")


def pin(ca: DevCA) -> str:
    return "sha256:" + display(ca.cert("ca.pem"), "sha256").replace(":", "")


def configure(tmp: Path, urls: list[str], *, fingerprint: str | None = None) -> Path:
    config = write_config(tmp, urls)
    if fingerprint:
        text = config.read_text().replace(
            "    timeout: 5s\n", f"    timeout: 5s\n    ca_fingerprint: {fingerprint}\n"
        )
        config.write_text(text)
    return config


def run_check(
    capsys: pytest.CaptureFixture[str], config: Path, name: str | None = None
) -> tuple[int, list[str]]:
    code = check(argparse.Namespace(config=config, name=name, debug=False))
    out = capsys.readouterr().out
    return code, out.splitlines()


def statuses(lines: list[str]) -> list[str]:
    return [line.split()[1] for line in lines]


def enroll(config: Path) -> None:
    result = run_scepd("--config", str(config), "enroll", "web")
    assert result.returncode == 0, result.stderr


def test_all_ok_after_enroll(
    devca: DevCA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = configure(tmp_path, [devca.url], fingerprint=pin(devca))
    enroll(config)
    code, lines = run_check(capsys, config, "web")
    assert code == 0, lines
    assert statuses(lines) == ["ok"] * len(lines), lines
    text = "\n".join(lines)
    assert f"web: ok   server ca reachable: {devca.url} answered GetCACaps (Renewal" in text
    assert "CA fingerprint sha256:" in text and "matches CN=" in text
    assert "current certificate can sign a renewal: serial " in text and "key matches" in text
    assert f"challenge source readable: file {tmp_path}/otp" in text
    assert f"target files writable: {tmp_path}" in text
    assert CHALLENGE not in text  # the challenge is never printed


def test_before_enroll_will_enroll(
    devca: DevCA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = configure(tmp_path, [devca.url])  # no pin: a warning, not a failure
    code, lines = run_check(capsys, config)
    assert code == 0, lines
    assert "web: ok   no certificate yet: will enroll" in lines
    assert any(line.startswith("web: warn no ca_fingerprint configured") for line in lines), lines


def test_wrong_fingerprint_fails(
    devca: DevCA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = configure(tmp_path, [devca.url], fingerprint="md5:" + "00" * 16)
    code, lines = run_check(capsys, config)
    assert code == 8, lines
    (line,) = [x for x in lines if "CA fingerprint" in x]
    assert line.startswith("web: FAIL CA fingerprint md5:0000"), line
    assert "matches no CA certificate" in line


def test_first_url_down_second_up(
    devca: DevCA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    down = f"http://127.0.0.1:{free_port()}/scep"
    config = configure(tmp_path, [down, devca.url], fingerprint=pin(devca))
    code, lines = run_check(capsys, config)
    assert code == 0, lines
    assert lines[0].startswith(f"web: warn server ca unreachable: {down}"), lines
    assert lines[1].startswith(f"web: ok   server ca reachable: {devca.url}"), lines


def test_no_url_answers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    down = f"http://127.0.0.1:{free_port()}/scep"
    config = configure(tmp_path, [down])
    code, lines = run_check(capsys, config)
    assert code == 8
    assert lines[0].startswith(f"web: FAIL server ca unreachable: {down}"), lines
    assert "web: ok   no certificate yet: will enroll" in lines  # local checks still run


def test_missing_challenge_file_fails(
    devca: DevCA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = configure(tmp_path, [devca.url], fingerprint=pin(devca))
    (tmp_path / "otp").unlink()
    code, lines = run_check(capsys, config)
    assert code == 8
    assert f"web: FAIL challenge source unreadable: {tmp_path}/otp (No such file or directory)" in (
        lines
    )
    assert "web: FAIL no certificate yet and no readable challenge to enroll with" in lines


def test_unwritable_target_fails(
    devca: DevCA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = configure(tmp_path, [devca.url], fingerprint=pin(devca))
    missing = tmp_path / "missing"
    config.write_text(
        config.read_text().replace(f"chain: {tmp_path}/web-chain.pem", f"chain: {missing}/c.pem")
    )
    code, lines = run_check(capsys, config)
    assert code == 8
    (line,) = [x for x in lines if "target file" in x]
    assert line == (
        f"web: FAIL target file not writable: {missing}/c.pem: directory {missing} does not exist"
    )


def test_key_not_matching_the_certificate_fails(
    devca: DevCA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = configure(tmp_path, [devca.url], fingerprint=pin(devca))
    enroll(config)
    other = tmp_path / "other"
    other.mkdir()
    enroll(configure(other, [devca.url]))
    (tmp_path / "web.key").write_bytes((other / "web.key").read_bytes())
    code, lines = run_check(capsys, config)
    assert code == 8
    assert any(
        line.startswith("web: FAIL current certificate cannot sign a renewal") for line in lines
    ), lines


def test_ndes_ra_certificates_and_challenge_not_needed(
    ndes: DevCA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = configure(tmp_path, [ndes.url], fingerprint=pin(ndes))
    enroll(config)
    code, lines = run_check(capsys, config)
    assert code == 0, lines
    (ra,) = [x for x in lines if "RA certificates" in x]
    assert ra.startswith("web: ok   RA certificates: CN=DEVCA-MSCEP-RA"), ra
    assert "(signs, " in ra and "(encryption, " in ra and "days left)" in ra
    assert any(
        line.startswith("web: warn challenge source file") and "not needed" in line
        for line in lines
    ), lines


def test_unknown_identity_is_a_usage_error(devca: DevCA, tmp_path: Path) -> None:
    config = configure(tmp_path, [devca.url])
    with pytest.raises(UsageError, match="no identity 'nope'"):
        check(argparse.Namespace(config=config, name="nope", debug=False))
