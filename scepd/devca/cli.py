"""``scepd devca init | serve | otp | approve | rollover | revoke``.

Only argparse at import time: each handler imports the crypto it needs when it runs, so
``scepd --help`` stays fast."""

# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from pathlib import Path

from scepd.errors import UsageError


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    devca = commands.add_parser(
        "devca",
        help="scepd's own SCEP CA for tests and labs (standard or NDES-like)",
        description="A SCEP CA for tests and labs: micromdm-like standard mode, or --ndes mode "
        "that behaves as Microsoft NDES does. Not for production certificates.",
    )
    sub = devca.add_subparsers(dest="devca_command", metavar="SUBCOMMAND", required=True)

    def command(
        name: str, help_text: str, func: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(
            name, help=help_text, description=help_text
        )
        parser.set_defaults(func=func)
        parser.add_argument("--dir", required=True, type=Path, metavar="D", help="state directory")
        parser.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        return parser

    init = command("init", "create a CA in --dir", cmd_init)
    init.add_argument("--ndes", action="store_true", help="behave as Microsoft NDES")
    init.add_argument("--validity", default="365d", help="issued certificates' lifetime (365d)")
    init.add_argument(
        "--ca-validity", default="3650d", help="the CA certificates' lifetime (3650d)"
    )
    init.add_argument("--pending", action="store_true", help="hold requests for `approve`")
    init.add_argument(
        "--key-bits", type=int, default=2048, help="CA/RA key size and minimum RSA size accepted"
    )
    init.add_argument(
        "--challenge-file", type=Path, metavar="F", help="static challenge (first line of F)"
    )
    init.add_argument("--oaep", action="store_true", help="NDES: RSAES-OAEP in CertReps")
    init.add_argument(
        "--auto-approve-after", type=int, metavar="N", help="issue at the Nth CertPoll"
    )
    init.add_argument("--otp-lifetime", default="60m", help="one-time password lifetime (60m)")

    serve = command("serve", "serve SCEP over HTTP", cmd_serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one")

    command("otp", "print a fresh one-time challenge password", cmd_otp)
    approve = command("approve", "issue a pending request", cmd_approve)
    approve.add_argument("transaction_id", metavar="TXID", help="the request's transactionID")
    command("rollover", "create the next CA certificate (GetNextCACert)", cmd_rollover)
    revoke = command("revoke", "revoke an issued certificate and refresh the CRL", cmd_revoke)
    revoke.add_argument("serial", metavar="SERIAL", help="serial number in hex")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def cmd_init(args: argparse.Namespace) -> int:
    from scepd import store
    from scepd.devca import challenges, identities, issuance
    from scepd.devca.state import CADir, Config
    from scepd.durations import format_duration, parse_duration

    validity = parse_duration(args.validity, option="--validity")
    ca_validity = parse_duration(args.ca_validity, option="--ca-validity")
    otp_lifetime = parse_duration(args.otp_lifetime, option="--otp-lifetime")
    if args.key_bits < store.MIN_KEY_BITS:
        raise UsageError(f"--key-bits {args.key_bits}: at least {store.MIN_KEY_BITS}")
    if args.auto_approve_after is not None and (args.auto_approve_after < 1 or not args.pending):
        raise UsageError("--auto-approve-after N needs --pending and N >= 1")
    if args.oaep and not args.ndes:
        raise UsageError("--oaep is an NDES-mode option; add --ndes")
    static = None
    if args.challenge_file is not None:
        static = challenges.static_challenge_record(store.read_secret(args.challenge_file))
    ca_dir = CADir(args.dir)
    ca_dir.create()
    config = Config(
        ndes=args.ndes,
        validity_seconds=int(validity.total_seconds()),
        pending=args.pending,
        key_bits=args.key_bits,
        oaep=args.oaep,
        auto_approve_after=args.auto_approve_after,
        otp_lifetime_seconds=int(otp_lifetime.total_seconds()),
        static_challenge=static,
    )
    now = _now()
    with ca_dir.locked():
        identities.create(
            ca_dir, ndes=args.ndes, key_bits=args.key_bits, now=now, ca_lifetime=ca_validity
        )
        ca_dir.save_config(config)  # last: a directory with config.json is complete
        issuance.refresh_crl(ca_dir, now)
    mode = "NDES" if args.ndes else "standard"
    print(
        f"created {mode} devca in {args.dir} (validity {format_duration(validity)}"
        f"{', pending approval' if args.pending else ''})"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from scepd.devca.server import serve
    from scepd.devca.state import CADir

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: not a port number")
    ca_dir = CADir(args.dir)
    ca_dir.require()
    try:
        return serve(ca_dir, args.host, args.port, debug=bool(getattr(args, "debug", False)))
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port} ({exc.strerror})") from None


def cmd_otp(args: argparse.Namespace) -> int:
    from scepd.devca import challenges
    from scepd.devca.state import CADir

    ca_dir = CADir(args.dir)
    lifetime = dt.timedelta(seconds=ca_dir.config().otp_lifetime_seconds)
    print(challenges.new_otp(ca_dir, now=_now(), lifetime=lifetime), flush=True)
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    from scepd.devca import issuance
    from scepd.devca.state import CADir

    ca_dir = CADir(args.dir)
    ca_dir.require()
    with ca_dir.locked():
        request = issuance.load_pending(ca_dir, args.transaction_id)
        if request is None:
            raise UsageError(f"no pending request with transactionID {args.transaction_id}")
        if request.serial is not None:
            raise UsageError(f"transactionID {args.transaction_id}: already issued")
        cert = issuance.approve(ca_dir, request, _now())
    print(f"issued {cert.subject.rfc4514_string()} serial {cert.serial_number:X}")
    return 0


def cmd_rollover(args: argparse.Namespace) -> int:
    from scepd.devca import certs
    from scepd.devca.state import CADir

    ca_dir = CADir(args.dir)
    config = ca_dir.config()
    if config.ndes:
        raise UsageError("rollover is a standard-mode operation (NDES has no GetNextCACert)")
    with ca_dir.locked():
        if ca_dir.has("next-ca.pem"):
            raise UsageError(f"{args.dir}: a next CA certificate exists already (next-ca.pem)")
        current = ca_dir.load_cert("ca.pem")
        key = certs.new_key(config.key_bits)
        subject = current.subject.rfc4514_string()
        cert = certs.make_ca(subject, key, serial=ca_dir.next_serial(), now=_now())
        ca_dir.save_key("next-ca.key", key)
        ca_dir.save_cert("next-ca.pem", cert)
    print(f"next CA certificate serial {cert.serial_number:X}, served by GetNextCACert")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from scepd.devca import issuance
    from scepd.devca.state import CADir

    try:
        serial = int(args.serial, 16)
    except ValueError:
        raise UsageError(f"SERIAL {args.serial!r}: expected hex digits") from None
    ca_dir = CADir(args.dir)
    ca_dir.require()
    with ca_dir.locked():
        issuance.revoke(ca_dir, serial, _now())
    print(f"revoked serial {serial:X}; CRL refreshed")
    return 0
