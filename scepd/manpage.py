"""Man pages that cannot drift from the code: scepd(8) from the argparse parser, scepd.yaml(5)
from config.example.yaml (whose keys a test checks against the configuration loader).

``python -m scepd.manpage OUTDIR`` writes both; tests/test_manpages.py fails when the committed
pages in man/ differ from what this generates."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scepd import __version__
from scepd.errors import EXIT_CODES

_DATE = "2026-12-01"  # bump with the version, so regeneration is reproducible


def _esc(text: str) -> str:
    """roff-safe text: backslashes, and a leading dot or quote that roff would take as a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def _usage(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_usage().split()[1:])


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[str]:
    lines = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        if isinstance(action, argparse._HelpAction):
            continue
        names = ", ".join(action.option_strings) or str(action.metavar or action.dest)
        if action.option_strings and action.nargs != 0:
            metavar = str(action.metavar or action.dest.upper())
            names += f" {metavar}"
        lines += [".TP", f"\\fB{_esc(str(names))}\\fR", _esc(action.help or "")]
    return lines


def scepd_8(parser: argparse.ArgumentParser) -> str:
    out = [
        f'.TH SCEPD 8 "{_DATE}" "scepd {__version__}" "System Administration"',
        ".SH NAME",
        "scepd \\- SCEP (RFC 8894) client and certificate renewal daemon",
        ".SH SYNOPSIS",
        _esc(_usage(parser)),
        ".SH DESCRIPTION",
        _esc(parser.description or ""),
        "Configured identities (run, status, check, check\\-config, enroll NAME, "
        "renew NAME|\\-\\-all) are read from /etc/scepd/config.yaml; see \\fBscepd.yaml\\fR(5).",
        ".SH GLOBAL OPTIONS",
        *_options(parser),
        ".SH COMMANDS",
    ]
    for name, sub in _subcommands(parser).items():
        out += [f".SS {name}", _esc(sub.description or ""), ".PP", f"\\fB{_esc(_usage(sub))}\\fR"]
        out += _options(sub)
    out += [".SH EXIT STATUS"]
    for code, text in EXIT_CODES.items():
        out += [".TP", f"\\fB{code}\\fR", _esc(text)]
    out += [
        ".SH FILES",
        ".TP",
        "/etc/scepd/config.yaml",
        "the configuration (\\fBSCEPD_CONFIG\\fR or \\fB\\-\\-config\\fR override it)",
        ".TP",
        "/var/lib/scepd",
        "state: pending requests, swap journal, locks, last versions, debug dumps",
        ".TP",
        "/lib/systemd/system/scepd.service",
        "the daemon (\\fBscepd run\\fR) as root with CAP_CHOWN as its only capability, in a "
        "sandbox that its hooks share; \\fBscepd\\-renew.timer\\fR is the alternative",
        ".TP",
        "/usr/share/doc/scepd/examples/",
        "config.example.yaml, and drop\\-ins for scepd.service: other\\-owners.conf.example "
        "(CAP_FOWNER, CAP_DAC_OVERRIDE) and unprivileged.conf.example (User=scepd)",
        ".SH SEE ALSO",
        "\\fBscepd.yaml\\fR(5), \\fBsystemd.service\\fR(5), \\fBjournalctl\\fR(1)",
    ]
    return "\n".join(out) + "\n"


def scepd_yaml_5(example: str) -> str:
    out = [
        f'.TH SCEPD.YAML 5 "{_DATE}" "scepd {__version__}" "File Formats"',
        ".SH NAME",
        "scepd.yaml \\- configuration of the scepd certificate renewal daemon",
        ".SH DESCRIPTION",
        "/etc/scepd/config.yaml lists SCEP servers and the identities (key, certificate, "
        "subject, hooks) scepd keeps enrolled and renewed. Every key is shown below in the "
        "annotated example the package installs; its comments say what each key does, its "
        "default and the allowed values. Unknown keys are errors naming the file, line and key.",
        ".SH EXAMPLE",
        ".nf",
        *(_esc(line) for line in example.splitlines()),
        ".fi",
        ".SH SEE ALSO",
        "\\fBscepd\\fR(8)",
    ]
    return "\n".join(out) + "\n"


def generate(out_dir: Path, example: Path) -> list[Path]:
    from scepd.cli import _parser  # noqa: PLC0415 - only when generating

    out_dir.mkdir(parents=True, exist_ok=True)
    pages = {
        out_dir / "scepd.8": scepd_8(_parser()),
        out_dir / "scepd.yaml.5": scepd_yaml_5(example.read_text()),
    }
    for path, text in pages.items():
        path.write_text(text)
    return list(pages)


if __name__ == "__main__":
    repo = Path(__file__).resolve().parents[1]
    for page in generate(
        Path(sys.argv[1]) if len(sys.argv) > 1 else repo / "man", repo / "config.example.yaml"
    ):
        print(page)
