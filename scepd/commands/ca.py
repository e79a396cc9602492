"""getcaps, getca, getnextca."""

from __future__ import annotations

import argparse
from pathlib import Path

from scepd import store
from scepd._compat import not_valid_before
from scepd.commands.common import describe, make_client, pin
from scepd.errors import UsageError


def getcaps(args: argparse.Namespace) -> int:
    for keyword in make_client(args).get_caps().keywords:
        print(keyword)
    return 0


def _out_dir(path: Path) -> Path:
    if not path.is_dir():
        raise UsageError(f"--out {path}: not a directory")
    return path


def getca(args: argparse.Namespace) -> int:
    fingerprint = pin(args)
    out = _out_dir(args.out)
    ca = make_client(args).get_ca(fingerprint)
    files = {out / "ca.pem": ca.ca_certs}
    if ca.ra_certs:
        files[out / "ra-sign.pem"] = (ca.verifier,)
        files[out / "ra-enc.pem"] = (ca.recipient,)
    for path in files:
        store.check_writable(path)
    for path, certs in files.items():
        store.write_certificates(path, certs)
    for cert in (*ca.ra_certs, *ca.ca_certs):
        print(describe(cert, ca.role(cert)))
    print("wrote " + ", ".join(str(p) for p in files))
    return 0


def getnextca(args: argparse.Namespace) -> int:
    fingerprint = pin(args)
    out = _out_dir(args.out)
    path = out / "next-ca.pem"
    store.check_writable(path)
    client = make_client(args)
    caps = client.get_caps()
    ca = client.get_ca(fingerprint)
    certs = client.get_next_ca(caps, ca)
    store.write_certificates(path, certs)
    for cert in certs:
        print(describe(cert, f"next CA (valid from {not_valid_before(cert):%Y-%m-%d}Z)"))
    print(f"wrote {path}")
    return 0
