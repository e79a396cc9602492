"""What several commands share: the client, the pin, the challenge, printing certificates."""

from __future__ import annotations

import argparse
import os

from cryptography import x509

from scepd import store
from scepd._compat import not_valid_after
from scepd.client import ScepClient, over_http
from scepd.errors import UsageError
from scepd.protocol.fingerprint import Fingerprint, display


def make_client(args: argparse.Namespace) -> ScepClient:
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    recorder = None
    if getattr(args, "debug", False):
        from scepd.debugdump import Recorder  # noqa: PLC0415 - --debug only
        from scepd.pending import default_state_dir  # noqa: PLC0415

        state_dir = getattr(args, "state_dir", None) or default_state_dir()
        recorder = Recorder(state_dir / "debug")
    return over_http(
        args.url,
        timeout=args.timeout,
        ca_bundle=args.ca_bundle,
        ca_identifier=args.ca_identifier,
        recorder=recorder,
    )


def pin(args: argparse.Namespace) -> Fingerprint | None:
    return Fingerprint.parse(args.fingerprint) if args.fingerprint else None


def challenge(args: argparse.Namespace) -> str | None:
    """From --challenge-file or --challenge-env; never from argv, never logged."""
    if args.challenge_file is not None:
        return store.read_secret(args.challenge_file)
    if args.challenge_env is not None:
        value = os.environ.get(args.challenge_env, "").strip()
        if not value:
            raise UsageError(f"--challenge-env {args.challenge_env}: variable is unset or empty")
        return value
    return None


def describe(cert: x509.Certificate, role: str) -> str:
    return (
        f"{role}: {cert.subject.rfc4514_string()}\n"
        f"  notAfter {not_valid_after(cert):%Y-%m-%d %H:%M:%S}Z\n"
        f"  SHA-256  {display(cert, 'sha256')}\n"
        f"  MD5      {display(cert, 'md5')}"
    )


def issued_line(cert: x509.Certificate) -> str:
    return (
        f"issued {cert.subject.rfc4514_string()} serial {cert.serial_number:X}, valid until "
        f"{not_valid_after(cert):%Y-%m-%d %H:%M:%S}Z, issuer {cert.issuer.rfc4514_string()}"
    )
