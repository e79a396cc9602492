"""HTTPS is verified by default (system store or --ca-bundle); proxies come from the
environment.  The TLS server is the fault proxy, forwarding to the real scepserver."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ScepServer, free_port, run_scepd
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from faultserver import FaultServer
from pki import NOW, key, make_cert, name


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    ca_key = key()
    ca = make_cert("Test TLS CA", ca_key, None, ca_key, ca=True)
    server_key = key()
    server = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = (
        directory / "ca.pem",
        directory / "srv.pem",
        directory / "srv.key",
    )
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


@pytest.fixture
def https_proxy(
    scepserver: ScepServer, tls_files: tuple[Path, Path, Path]
) -> Iterator[FaultServer]:
    _ca, cert_file, key_file = tls_files
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server = FaultServer(upstream=scepserver.url, tls=context).start()
    yield server
    server.stop()


def test_https_unknown_ca_is_refused(https_proxy: FaultServer) -> None:
    result = run_scepd("getcaps", "--url", https_proxy.url)
    assert result.returncode == 5
    assert "TLS verification failed" in result.stderr and "--ca-bundle" in result.stderr


def test_https_with_ca_bundle(https_proxy: FaultServer, tls_files: tuple[Path, Path, Path]) -> None:
    result = run_scepd("getcaps", "--url", https_proxy.url, "--ca-bundle", str(tls_files[0]))
    assert result.returncode == 0, result.stderr
    assert "POSTPKIOperation" in result.stdout


def test_requests_ca_bundle_variable_is_honoured(
    https_proxy: FaultServer, tls_files: tuple[Path, Path, Path]
) -> None:
    result = run_scepd(
        "getcaps", "--url", https_proxy.url, env={"REQUESTS_CA_BUNDLE": str(tls_files[0])}
    )
    assert result.returncode == 0, result.stderr


def test_http_proxy_from_environment(scepserver: ScepServer, tmp_path: Path) -> None:
    proxy = FaultServer(upstream=scepserver.url).start()
    try:
        nothing_here = f"http://127.0.0.1:{free_port()}/scep"  # only reachable through the proxy
        result = run_scepd(
            "getca", "--url", nothing_here, "--out", str(tmp_path),
            env={"http_proxy": proxy.url.removesuffix("/scep"), "no_proxy": "", "NO_PROXY": ""},
        )  # fmt: skip
    finally:
        proxy.stop()
    assert result.returncode == 0, result.stderr
    assert [s.operation for s in proxy.seen] == ["GetCACert"]
    assert proxy.seen[0].path.startswith(nothing_here)  # absolute URI: a proxy request
