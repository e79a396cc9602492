"""`scepd run`."""

from __future__ import annotations

import argparse

from scepd.config import default_config_path


def run(args: argparse.Namespace) -> int:
    from scepd.daemon.journal import setup_logging  # noqa: PLC0415
    from scepd.daemon.service import run as run_service  # noqa: PLC0415

    setup_logging(debug=args.debug)  # journald's JournalHandler when systemd runs us
    return run_service(args.config or default_config_path(), debug=args.debug)
