"""import-sscep: print the scepd configuration that replaces an sscep.conf + mkrequest setup."""

from __future__ import annotations

import argparse
from pathlib import Path

from scepd.errors import LocalFileError, UsageError
from scepd.sscep_import import convert, default_name


def _read(path: Path, option: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LocalFileError(f"{option} {path}: cannot read ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{option} {path}: not UTF-8 text (at byte {exc.start})") from None


def run(args: argparse.Namespace) -> int:
    conf: Path = args.conf
    mkrequest: Path | None = getattr(args, "mkrequest", None)
    conf_text = _read(conf, "--conf")
    mkrequest_text = _read(mkrequest, "--mkrequest") if mkrequest is not None else None
    conf_dir = conf.absolute().parent
    labels = {
        "conf_label": str(conf),
        "mkrequest_label": str(mkrequest) if mkrequest is not None else "mkrequest",
    }
    name = getattr(args, "name", None) or default_name(
        conf_text, mkrequest_text, conf_dir=conf_dir, **labels
    )
    print(convert(conf_text, mkrequest_text, name=name, conf_dir=conf_dir, **labels), end="")
    return 0
