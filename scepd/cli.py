"""Command line: ``scepd getcaps | getca | enroll``.

Start-up stays lean: this module imports only argparse and the error tree; each command
imports the protocol, transport and crypto modules it needs when it runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from scepd import __version__
from scepd.errors import EXIT_CODES, EXIT_UNEXPECTED, ScepError, UsageError

if TYPE_CHECKING:
    from cryptography import x509

    from scepd.client import ScepClient
    from scepd.protocol.fingerprint import Fingerprint

log = logging.getLogger("scepd")

_EPILOG = "exit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in EXIT_CODES.items())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scepd",
        description="SCEP (RFC 8894) client for Microsoft NDES and other SCEP servers.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"scepd {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="log every HTTP exchange; tracebacks on errors"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str, help_text: str, func: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(func=func)
        # --debug works before or after the command; SUPPRESS keeps the global value.
        sub.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        _server_options(sub)
        return sub

    command("getcaps", "print the server's capabilities (GetCACaps), one per line", cmd_getcaps)

    getca = command(
        "getca", "fetch, verify and save the CA and RA certificates (GetCACert)", cmd_getca
    )
    getca.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    _fingerprint_option(getca)

    enroll = command("enroll", "enroll a new certificate (PKCSReq)", cmd_enroll)
    enroll.add_argument(
        "--key", required=True, type=Path, help="RSA private key; created (mode 0600) if missing"
    )
    enroll.add_argument("--cert", required=True, type=Path, help="where to write the certificate")
    enroll.add_argument(
        "--subject", required=True, metavar="DN", help="RFC 4514 subject, e.g. CN=web01,O=Example"
    )
    enroll.add_argument("--dns", action="append", default=[], metavar="NAME", help="DNS SAN")
    enroll.add_argument("--ip", action="append", default=[], metavar="ADDR", help="IP SAN")
    enroll.add_argument("--email", action="append", default=[], metavar="ADDR", help="email SAN")
    enroll.add_argument("--uri", action="append", default=[], metavar="URI", help="URI SAN")
    enroll.add_argument(
        "--key-usage",
        action="append",
        metavar="USAGE",
        help="keyUsage to request (repeatable; default digitalSignature and keyEncipherment, "
        "which NDES maps to its GeneralPurposeTemplate)",
    )
    enroll.add_argument(
        "--eku",
        action="append",
        default=[],
        metavar="USAGE",
        help="extendedKeyUsage to request: serverAuth, clientAuth, ... or a dotted OID",
    )
    challenge = enroll.add_mutually_exclusive_group()
    challenge.add_argument(
        "--challenge-file", type=Path, metavar="F", help="read the challenge password from F"
    )
    challenge.add_argument(
        "--challenge-env", metavar="VAR", help="read the challenge password from variable VAR"
    )
    enroll.add_argument(
        "--challenge-encoding",
        choices=["printable", "utf8"],
        default="printable",
        help="ASN.1 string type of the challenge (default printable; NDES rejects utf8)",
    )
    _fingerprint_option(enroll)
    enroll.add_argument("--key-size", type=int, default=2048, metavar="BITS", help="new key size")
    enroll.add_argument("--chain", type=Path, metavar="FILE", help="write the CA chain here")
    enroll.add_argument(
        "--digest", choices=["sha256", "sha512", "sha1", "md5"], help="default: negotiated"
    )
    enroll.add_argument("--cipher", choices=["aes", "des3", "des"], help="default: negotiated")
    enroll.add_argument(
        "--allow-legacy-crypto",
        action="store_true",
        help="allow sending single DES or MD5 (forbidden by RFC 8894; only for old servers)",
    )
    return parser


def _server_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--url", required=True, help="SCEP URL, e.g. http://ndes/certsrv/mscep/mscep.dll"
    )
    sub.add_argument(
        "--ca-identifier",
        metavar="ID",
        help="CA identifier sent as GetCACert's message (EJBCA needs the CA name); "
        "omitted by default",
    )
    sub.add_argument("--ca-bundle", metavar="FILE", help="CA bundle to verify an https server")
    sub.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="connect and read timeout"
    )


def _fingerprint_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--fingerprint",
        metavar="ALG:HEX",
        help="pin the CA certificate: sha256:HEX, sha1:HEX or md5:HEX (NDES shows MD5)",
    )


def _client(args: argparse.Namespace) -> ScepClient:
    from scepd.client import ScepClient
    from scepd.transport import HttpTransport

    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    transport = HttpTransport(
        args.url,
        connect_timeout=min(args.timeout, 10.0),
        read_timeout=args.timeout,
        ca_bundle=args.ca_bundle,
    )
    return ScepClient(transport, ca_identifier=args.ca_identifier)


def _pin(args: argparse.Namespace) -> Fingerprint | None:
    from scepd.protocol.fingerprint import Fingerprint

    return Fingerprint.parse(args.fingerprint) if args.fingerprint else None


def cmd_getcaps(args: argparse.Namespace) -> int:
    client = _client(args)
    caps = client.get_caps()
    for keyword in caps.keywords:
        print(keyword)
    return 0


def _describe(cert: x509.Certificate, role: str) -> str:
    from scepd._compat import not_valid_after
    from scepd.protocol.fingerprint import display

    return (
        f"{role}: {cert.subject.rfc4514_string()}\n"
        f"  notAfter {not_valid_after(cert):%Y-%m-%d %H:%M:%S}Z\n"
        f"  SHA-256  {display(cert, 'sha256')}\n"
        f"  MD5      {display(cert, 'md5')}"
    )


def cmd_getca(args: argparse.Namespace) -> int:
    from scepd import store

    pin = _pin(args)
    out: Path = args.out
    if not out.is_dir():
        raise UsageError(f"--out {out}: not a directory")
    ca = _client(args).get_ca(pin)
    files = {out / "ca.pem": ca.ca_certs}
    if ca.ra_certs:
        files[out / "ra-sign.pem"] = (ca.verifier,)
        files[out / "ra-enc.pem"] = (ca.recipient,)
    for path in files:
        store.check_writable(path)
    for path, certs in files.items():
        store.write_certificates(path, certs)
    for cert in (*ca.ra_certs, *ca.ca_certs):
        print(_describe(cert, ca.role(cert)))
    print("wrote " + ", ".join(str(p) for p in files))
    return 0


def _challenge(args: argparse.Namespace) -> str | None:
    from scepd import store

    if args.challenge_file is not None:
        return store.read_secret(args.challenge_file)
    if args.challenge_env is not None:
        value = os.environ.get(args.challenge_env, "").strip()
        if not value:
            raise UsageError(f"--challenge-env {args.challenge_env}: variable is unset or empty")
        return value
    return None


def cmd_enroll(args: argparse.Namespace) -> int:
    from scepd import store

    # Start the new key first: it is generated on another core while the rest happens.
    new_key = None if args.key.exists() else store.KeyGeneration(args.key_size)

    from scepd._compat import not_valid_after
    from scepd.client import Algorithms, EnrollmentRequest, Issued
    from scepd.protocol.algorithms import ContentCipher, Digest
    from scepd.protocol.csr import (
        DEFAULT_KEY_USAGE,
        SubjectAltNames,
        challenge_value,
        parse_subject,
    )

    # Everything local is checked before the first request, so a typo never costs an OTP.
    pin = _pin(args)
    request = EnrollmentRequest(
        subject=parse_subject(args.subject),
        sans=SubjectAltNames(
            dns=tuple(args.dns), ip=tuple(args.ip), email=tuple(args.email), uri=tuple(args.uri)
        ),
        key_usage=tuple(args.key_usage) if args.key_usage else DEFAULT_KEY_USAGE,
        extended_key_usage=tuple(args.eku),
        challenge=_challenge(args),
        challenge_utf8=args.challenge_encoding == "utf8",
    )
    if request.challenge is not None:
        challenge_value(request.challenge, utf8=request.challenge_utf8)
    algorithms = Algorithms(
        digest=Digest(args.digest) if args.digest else None,
        cipher=ContentCipher(args.cipher) if args.cipher else None,
        allow_legacy=args.allow_legacy_crypto,
    )
    for path in (args.cert, args.chain):
        if path is not None:
            store.check_writable(path)
    existing_key = store.load_key(args.key) if new_key is None else None
    if new_key is not None:
        store.check_writable(args.key)

    client = _client(args)
    negotiated = client.negotiate(client.get_caps(), algorithms)  # refuses legacy crypto early
    ca = client.get_ca(pin)
    if new_key is not None:
        key = store.save_new_key(args.key, new_key.result())
        log.info("created %d-bit RSA key %s (mode 0600)", args.key_size, args.key)
    else:
        assert existing_key is not None
        key = existing_key
    result = client.enroll(key=key, request=request, negotiated=negotiated, ca=ca)
    if not isinstance(result, Issued):
        print(
            f"pending: the CA holds the request for approval; transactionID {result.transaction_id}"
        )
        print(f"run the same command again once it is approved (the key {args.key} is kept)")
        return 3
    if args.chain is not None:
        store.write_certificates(args.chain, result.chain)
    store.write_certificates(args.cert, [result.certificate])
    cert = result.certificate
    print(
        f"issued {cert.subject.rfc4514_string()} serial {cert.serial_number:X}, valid until "
        f"{not_valid_after(cert):%Y-%m-%d %H:%M:%S}Z, issuer {cert.issuer.rfc4514_string()}"
    )
    written = [str(args.cert)] + ([str(args.chain)] if args.chain else [])
    print("wrote " + ", ".join(written))
    return 0


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname.lower()
        return f"scepd: {level}: {record.getMessage()}"


def _setup_logging(debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _setup_logging(args.debug)
    try:
        code: int = args.func(args)
        return code
    except ScepError as exc:
        if args.debug:
            log.exception("%s", exc)
        else:
            print(f"scepd: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("scepd: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            log.exception("unexpected error")
        else:
            print(
                f"scepd: unexpected error: {type(exc).__name__}: {exc} "
                "(rerun with --debug and report it)",
                file=sys.stderr,
            )
        return EXIT_UNEXPECTED
