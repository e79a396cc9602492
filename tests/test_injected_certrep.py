"""Answers micromdm's scepserver never gives (PENDING, an NDES-style FAILURE), injected by the
fault proxy and signed with the real server's CA key, which the test owns.

The request is scepd's real one: the proxy decrypts nothing, it only reads the transactionID and
senderNonce from the signed attributes to answer them, as a CA would."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from asn1crypto import cms, core
from conftest import CHALLENGE, PLACEHOLDER, ScepServer, decrypt_empty_passphrase, enroll_via
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from faultserver import FaultServer
from pki import key, make_cert

from scepd.protocol import oids
from scepd.protocol.algorithms import Digest
from scepd.protocol.keys import SoftwareKey
from scepd.protocol.signeddata import build_signed_data, parse_signed_data


def cert_rep(
    server: ScepServer, request: bytes, status: str, extra: list[cms.CMSAttribute]
) -> bytes:
    ca = x509.load_pem_x509_certificate(server.ca_pem)
    key = SoftwareKey(
        load_pem_private_key(decrypt_empty_passphrase((server.depot / "ca.key").read_bytes()), None)
    )
    asked = parse_signed_data(request)
    return build_signed_data(
        content=b"\x00",  # NDES sends one byte where RFC 8894 says "omit"
        signer_cert=ca,
        key=key,
        digest=Digest.SHA1,
        signing_time=dt.datetime.now(dt.UTC),
        scep_attributes=[
            cms.CMSAttribute({"type": "message_type", "values": ["3"]}),
            cms.CMSAttribute({"type": "pki_status", "values": [status]}),
            cms.CMSAttribute(
                {"type": "transaction_id", "values": [asked.attribute(oids.TRANSACTION_ID)]}
            ),
            cms.CMSAttribute(
                {"type": "recipient_nonce", "values": [asked.attribute(oids.SENDER_NONCE)]}
            ),
            cms.CMSAttribute({"type": "sender_nonce", "values": [b"\x01" * 16]}),
            *extra,
        ],
    )


def test_pending_exits_3_with_the_transaction_id(
    proxy: FaultServer, scepserver: ScepServer, tmp_path: Path, challenge_file: Path
) -> None:
    proxy.rules["PKIOperation"] = lambda path, body: (
        200, "application/x-pki-message", cert_rep(scepserver, body, "3", []),
    )  # fmt: skip
    result = enroll_via(proxy, tmp_path, challenge_file, "pending")
    assert result.returncode == 3, result.stderr
    (request,) = [s.body for s in proxy.seen if s.operation == "PKIOperation"]
    transaction_id = parse_signed_data(request).attribute(oids.TRANSACTION_ID)
    assert f"transactionID {transaction_id}" in result.stdout
    assert (tmp_path / "cert.pem").read_bytes() == PLACEHOLDER
    assert not (tmp_path / "key.pem").exists()  # KEY is written with the certificate only


def test_ndes_failure_shows_fail_info_and_hresult(
    proxy: FaultServer, scepserver: ScepServer, tmp_path: Path, challenge_file: Path
) -> None:
    hresult = cms.CMSAttribute(
        {
            "type": oids.MS_HRESULT,
            "values": [core.PrintableString(str(0x800B0110 - 2**32))],
        }  # 0x800B0110
    )
    fail = [cms.CMSAttribute({"type": "fail_info", "values": ["2"]}), hresult]
    proxy.rules["PKIOperation"] = lambda path, body: (
        200, "application/x-pki-message", cert_rep(scepserver, body, "2", fail),
    )  # fmt: skip
    result = enroll_via(proxy, tmp_path, challenge_file, "ndes-failure")
    assert result.returncode == 4, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "failInfo badRequest (2)" in line
    assert "0x800B0110" in line and "already used" in line
    assert (tmp_path / "cert.pem").read_bytes() == PLACEHOLDER


def test_certrep_signed_by_a_stranger_is_exit_6(
    proxy: FaultServer, scepserver: ScepServer, tmp_path: Path, challenge_file: Path
) -> None:
    stranger_key = key()
    stranger = make_cert("OU=SCEP CA", stranger_key, None, stranger_key, ca=True)

    def forged(path: str, body: bytes) -> tuple[int, str, bytes]:
        asked = parse_signed_data(body)
        rep = build_signed_data(
            content=b"\x00",
            signer_cert=stranger,
            key=SoftwareKey(stranger_key),
            digest=Digest.SHA256,
            signing_time=dt.datetime.now(dt.UTC),
            scep_attributes=[
                cms.CMSAttribute({"type": "message_type", "values": ["3"]}),
                cms.CMSAttribute({"type": "pki_status", "values": ["3"]}),
                cms.CMSAttribute(
                    {"type": "transaction_id", "values": [asked.attribute(oids.TRANSACTION_ID)]}
                ),
                cms.CMSAttribute(
                    {"type": "recipient_nonce", "values": [asked.attribute(oids.SENDER_NONCE)]}
                ),
            ],
        )
        return 200, "application/x-pki-message", rep

    proxy.rules["PKIOperation"] = forged
    result = enroll_via(proxy, tmp_path, challenge_file, "forged")
    assert result.returncode == 6, result.stderr
    assert "signer" in result.stderr
    assert (tmp_path / "cert.pem").read_bytes() == PLACEHOLDER


def _pki_requests(proxy: FaultServer) -> list[tuple[str, str, bytes]]:
    """(messageType, transactionID, senderNonce) of every PKIOperation the proxy saw."""
    out = []
    for seen in proxy.seen:
        if seen.operation == "PKIOperation":
            msg = parse_signed_data(seen.body)
            out.append(
                (
                    msg.attribute(oids.MESSAGE_TYPE),
                    msg.attribute(oids.TRANSACTION_ID),
                    msg.attribute(oids.SENDER_NONCE),
                )
            )
    return out


def test_pending_resumes_with_certpoll_then_failure_closes_it(
    proxy: FaultServer, scepserver: ScepServer, tmp_path: Path, challenge_file: Path
) -> None:
    state = tmp_path / "state"
    answer = {"status": "3", "extra": []}
    proxy.rules["PKIOperation"] = lambda path, body: (
        200,
        "application/x-pki-message",
        cert_rep(scepserver, body, answer["status"], answer["extra"]),
    )
    args = ("--state-dir", str(state))
    first = enroll_via(proxy, tmp_path, challenge_file, "resume", *args)
    assert first.returncode == 3, first.stderr
    (tx_dir,) = (state / "pending").iterdir()
    assert sorted(p.name for p in tx_dir.iterdir()) == [
        "ca.pem",
        "key.pem",
        "signer.pem",
        "transaction.json",
    ]
    assert oct(os.stat(tx_dir / "key.pem").st_mode & 0o777) == "0o600"
    assert CHALLENGE not in "".join(p.read_text() for p in tx_dir.iterdir())

    second = enroll_via(proxy, tmp_path, challenge_file, "resume", *args)
    assert second.returncode == 3, second.stderr
    answer["status"], answer["extra"] = (
        "2",
        [cms.CMSAttribute({"type": "fail_info", "values": ["2"]})],
    )
    third = enroll_via(proxy, tmp_path, challenge_file, "resume", *args)
    assert third.returncode == 4, third.stderr

    sent = _pki_requests(proxy)
    assert [m for m, _t, _n in sent] == ["19", "20", "20"]  # never a second PKCSReq
    assert len({t for _m, t, _n in sent}) == 1  # one transactionID throughout
    assert len({n for _m, _t, n in sent}) == 3  # a fresh senderNonce each time
    assert not tx_dir.exists()  # FAILURE closed the transaction and deleted its key
    assert (tmp_path / "cert.pem").read_bytes() == PLACEHOLDER
    assert not (tmp_path / "key.pem").exists()
