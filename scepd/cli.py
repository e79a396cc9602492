"""Command line: ``scepd getcaps | getca | enroll | renew | getcert | getcrl | getnextca``.

Start-up stays lean: this module imports only argparse and the error tree; a command's module
(``scepd.commands.*``) and with it the protocol, transport and crypto code is imported only
when that command runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from scepd import __version__
from scepd.errors import EXIT_CODES, EXIT_UNEXPECTED, ScepError

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
    parser.add_argument(
        "--config",
        type=Path,
        metavar="F",
        help="configuration file for run, status, check-config, enroll NAME, renew NAME|--all "
        "(default $SCEPD_CONFIG, else /etc/scepd/config.yaml)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str, help_text: str, handler: str, *, server: bool | None = True
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler)
        # --debug works before or after the command; SUPPRESS keeps the global value.
        sub.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        if server is not False:
            _server_options(sub, required=bool(server))
        return sub

    command(
        "getcaps",
        "print the server's capabilities (GetCACaps), one per line",
        "scepd.commands.ca:getcaps",
    )

    getca = command(
        "getca",
        "fetch, verify and save the CA and RA certificates (GetCACert)",
        "scepd.commands.ca:getca",
    )
    getca.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    _fingerprint_option(getca)

    enroll = command(
        "enroll",
        "enroll a new certificate (PKCSReq): a configured identity NAME, or one given by options",
        "scepd.commands.enroll:enroll",
        server=None,
    )
    enroll.add_argument("name", nargs="?", metavar="NAME", help="a configured identity")
    _key_cert_options(enroll, key_help="RSA private key; created (mode 0600) if missing")
    enroll.add_argument("--subject", metavar="DN", help="RFC 4514 subject, e.g. CN=web01,O=Example")
    _identity_options(enroll)
    _request_options(enroll)
    enroll.add_argument("--key-size", type=int, default=2048, metavar="BITS", help="new key size")

    renew = command(
        "renew",
        "renew a certificate (signed with the current certificate and key): configured "
        "identities (NAME or --all), or one given by options",
        "scepd.commands.enroll:renew",
        server=None,
    )
    renew.add_argument("name", nargs="?", metavar="NAME", help="a configured identity")
    renew.add_argument("--all", action="store_true", help="every configured identity that is due")
    renew.add_argument("--force", action="store_true", help="renew even if not due yet")
    renew.add_argument(
        "--dry-run", action="store_true", help="print what would be done; send nothing"
    )
    _key_cert_options(renew, key_help="the current private key; replaced only on success")
    keys = renew.add_mutually_exclusive_group()
    keys.add_argument(
        "--new-key",
        dest="reuse_key",
        action="store_false",
        help="generate a new key (default: NDES returns the old certificate for a reused key)",
    )
    keys.add_argument("--reuse-key", action="store_true", help="keep the current key")
    renew.set_defaults(reuse_key=False)
    renew.add_argument(
        "--mode",
        choices=[m for m in ("auto", "renewalreq", "signed-pkcsreq")],
        default="auto",
        help="renewalreq: RenewalReq (17); signed-pkcsreq: PKCSReq signed by the current "
        "certificate (NDES, sscep, certmonger); auto (default): renewalreq when the server "
        "advertises Renewal",
    )
    renew.add_argument(
        "--subject", metavar="DN", help="request another subject (default: the current one)"
    )
    _identity_options(renew, default_help=" (default: those of the current certificate)")
    _request_options(renew)
    renew.add_argument(
        "--key-size", type=int, metavar="BITS", help="new key size (default: the current one's)"
    )

    getcert = command(
        "getcert",
        "fetch a certificate by issuer and serial number (GetCert)",
        "scepd.commands.query:getcert",
    )
    getcert.add_argument(
        "--cert", required=True, type=Path, help="a certificate of the same issuer (ours)"
    )
    getcert.add_argument("--serial", required=True, help="serial number, decimal or 0x-hex")
    getcert.add_argument("--out", required=True, type=Path, metavar="FILE")
    _query_options(getcert)

    getcrl = command(
        "getcrl", "fetch the CRL of CERT's issuer (GetCRL)", "scepd.commands.query:getcrl"
    )
    getcrl.add_argument("--cert", required=True, type=Path, help="the certificate to check")
    getcrl.add_argument("--out", required=True, type=Path, metavar="FILE")
    _query_options(getcrl)

    getnextca = command(
        "getnextca",
        "fetch the CA's next certificate (GetNextCACert), verified by the current CA",
        "scepd.commands.ca:getnextca",
    )
    getnextca.add_argument("--out", required=True, type=Path, metavar="DIR")
    _fingerprint_option(getnextca)

    command(
        "run", "the renewal daemon, in the foreground", "scepd.commands.daemon:run", server=False
    )
    status = command(
        "status",
        "show each configured identity: certificate, next action, last attempt",
        "scepd.commands.identities:status",
        server=False,
    )
    status.add_argument("--json", action="store_true", help="the same as JSON")
    import_sscep = command(
        "import-sscep",
        "print the servers: and identities: configuration that replaces an sscep setup "
        "(sscep.conf and mkrequest)",
        "scepd.commands.import_sscep:run",
        server=False,
    )
    import_sscep.add_argument(
        "--conf", required=True, type=Path, metavar="FILE", help="sscep's configuration file"
    )
    import_sscep.add_argument(
        "--mkrequest", type=Path, metavar="FILE", help="the mkrequest script that made the request"
    )
    import_sscep.add_argument(
        "--name", metavar="NAME", help="server and identity name (default: from the CN, else web)"
    )
    check = command(
        "check",
        "online preflight of each configured identity: server, CA pin, RA certificates, "
        "current certificate, challenge source, writable files",
        "scepd.commands.preflight:check",
        server=False,
    )
    check.add_argument("name", nargs="?", metavar="NAME", help="only this identity")
    command(
        "check-config",
        "validate the configuration; list identities and their next renewal",
        "scepd.commands.identities:check_config",
        server=False,
    )
    from scepd.devca.cli import add_parser as add_devca_parser

    add_devca_parser(commands)
    return parser


def _server_options(sub: argparse.ArgumentParser, *, required: bool = True) -> None:
    sub.add_argument(
        "--url", required=required, help="SCEP URL, e.g. http://ndes/certsrv/mscep/mscep.dll"
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


def _key_cert_options(sub: argparse.ArgumentParser, *, key_help: str) -> None:
    sub.add_argument("--key", type=Path, help=key_help)
    sub.add_argument("--cert", type=Path, help="the certificate file")
    sub.add_argument("--chain", type=Path, metavar="FILE", help="write the CA chain here")


def _identity_options(sub: argparse.ArgumentParser, default_help: str = "") -> None:
    sub.add_argument("--dns", action="append", default=[], metavar="NAME", help="DNS SAN")
    sub.add_argument("--ip", action="append", default=[], metavar="ADDR", help="IP SAN")
    sub.add_argument("--email", action="append", default=[], metavar="ADDR", help="email SAN")
    sub.add_argument(
        "--uri", action="append", default=[], metavar="URI", help="URI SAN" + default_help
    )
    sub.add_argument(
        "--key-usage",
        action="append",
        metavar="USAGE",
        help="keyUsage to request (repeatable; default digitalSignature and keyEncipherment, "
        "which NDES maps to its GeneralPurposeTemplate)",
    )
    sub.add_argument(
        "--eku",
        action="append",
        default=[],
        metavar="USAGE",
        help="extendedKeyUsage to request: serverAuth, clientAuth, ... or a dotted OID",
    )


def _request_options(sub: argparse.ArgumentParser) -> None:
    challenge = sub.add_mutually_exclusive_group()
    challenge.add_argument(
        "--challenge-file", type=Path, metavar="F", help="read the challenge password from F"
    )
    challenge.add_argument(
        "--challenge-env", metavar="VAR", help="read the challenge password from variable VAR"
    )
    sub.add_argument(
        "--challenge-encoding",
        choices=["printable", "utf8"],
        default="printable",
        help="ASN.1 string type of the challenge (default printable; NDES rejects utf8)",
    )
    _fingerprint_option(sub)
    sub.add_argument(
        "--digest", choices=["sha256", "sha512", "sha1", "md5"], help="default: negotiated"
    )
    sub.add_argument("--cipher", choices=["aes", "des3", "des"], help="default: negotiated")
    sub.add_argument(
        "--allow-legacy-crypto",
        action="store_true",
        help="allow sending single DES or MD5 (forbidden by RFC 8894; only for old servers)",
    )
    sub.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where pending requests are kept (default $SCEPD_STATE_DIR, else /var/lib/scepd "
        "for root, $XDG_STATE_HOME/scepd otherwise)",
    )
    sub.add_argument(
        "--wait", action="store_true", help="poll a pending request until it is decided"
    )
    sub.add_argument(
        "--poll-interval", default="60s", metavar="DURATION", help="first poll interval (60s)"
    )
    sub.add_argument(
        "--max-wait", default="1h", metavar="DURATION", help="give up waiting after (1h)"
    )


def _query_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--key",
        type=Path,
        help="CERT's key, to sign the query with CERT (default: a throwaway self-signed key)",
    )
    _fingerprint_option(sub)


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


def _run(args: argparse.Namespace) -> int:
    if hasattr(args, "func"):
        code: int = args.func(args)
        return code
    module, _, name = args.handler.partition(":")
    code = getattr(importlib.import_module(module), name)(args)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _setup_logging(args.debug)
    try:
        return _run(args)
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
