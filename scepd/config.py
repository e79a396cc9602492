"""The daemon's configuration file (``/etc/scepd/config.yaml``; every key is documented in
``config.example.yaml``).

The YAML is composed into nodes rather than loaded with ``safe_load``: every value is built
here from its node, so each error can name the file, the line and the key path.  A load reports
one error, the first in document order: values are validated while the document is walked, then
the typed configuration is built (and cross-checked) from the same nodes."""

from __future__ import annotations

import datetime as dt
import difflib
import ipaddress
import math
import os
import re
import urllib.parse
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, TypeAlias, TypeVar

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from scepd.durations import format_duration, parse_duration
from scepd.errors import UsageError
from scepd.protocol.csr import (
    DEFAULT_KEY_USAGE,
    EXTENDED_KEY_USAGES,
    KEY_USAGES,
    SubjectAltNames,
    parse_subject,
)
from scepd.protocol.fingerprint import Fingerprint

CONFIG_ENV = "SCEPD_CONFIG"
DEFAULT_CONFIG = Path("/etc/scepd/config.yaml")


def default_config_path() -> Path:
    """``$SCEPD_CONFIG`` if set (and not empty), else ``/etc/scepd/config.yaml``."""
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


class ConfigError(UsageError):
    """The configuration file cannot be read or is invalid (exit code 2)."""


@dataclass(frozen=True)
class ShellCommand:
    shell: str  # run with /bin/sh -c; only when asked for explicitly with {shell: "..."}


Command: TypeAlias = tuple[str, ...] | ShellCommand  # an argv tuple is run without a shell


@dataclass(frozen=True)
class Retry:
    initial: dt.timedelta | None  # None = "auto"
    max: dt.timedelta | None  # None = "auto"


@dataclass(frozen=True)
class Server:
    name: str
    urls: tuple[str, ...]
    ca_fingerprint: str | None
    profile: str
    ca_identifier: str | None
    ca_bundle: Path | None
    timeout: dt.timedelta
    debug: bool


@dataclass(frozen=True)
class Challenge:
    file: Path | None = None
    env: str | None = None
    credential: str | None = None  # a file name in $CREDENTIALS_DIRECTORY (systemd)


@dataclass(frozen=True)
class Renewal:
    mode: str
    new_key: bool
    send_challenge: bool | None  # None: the profile's default


@dataclass(frozen=True)
class Hooks:
    pre_renew: tuple[Command, ...] = ()
    post_renew: tuple[Command, ...] = ()


@dataclass(frozen=True)
class Identity:
    name: str
    server: Server
    subject: str
    san_dns: tuple[str, ...]
    san_ip: tuple[str, ...]
    san_email: tuple[str, ...]
    san_uri: tuple[str, ...]
    key_usage: tuple[str, ...]
    extended_key_usage: tuple[str, ...]
    key: Path
    cert: Path
    chain: Path | None
    fullchain: Path | None
    owner: str | None
    group: str | None
    key_mode: int
    cert_mode: int
    renew_at: float | None
    renew_before: dt.timedelta | None
    jitter: float
    retry: Retry
    key_bits: int
    hook_timeout: dt.timedelta
    challenge: Challenge | None
    renewal: Renewal
    hooks: Hooks
    line: int


@dataclass(frozen=True)
class Config:
    path: Path
    state_dir: Path
    metrics_file: Path | None
    servers: dict[str, Server] = field(default_factory=dict)
    identities: dict[str, Identity] = field(default_factory=dict)
    post_renew_batch: tuple[Command, ...] = ()


PROFILES = ("auto", "ndes", "rfc8894")
RENEWAL_MODES = ("auto", "renewalreq", "signed-pkcsreq")  # scepd.client.RenewalMode's values
DEFAULT_STATE_DIR = Path("/var/lib/scepd")
DEFAULT_TIMEOUT = dt.timedelta(seconds=30)
DEFAULT_HOOK_TIMEOUT = dt.timedelta(seconds=60)
DEFAULT_RENEW_AT = 0.66
DEFAULT_JITTER = 0.05
MIN_KEY_BITS = 2048  # NDES (and most CAs) refuse smaller RSA keys
MAX_KEY_BITS = 16384

T = TypeVar("T")
_TAG = "tag:yaml.org,2002:"
_NULL, _BOOL, _INT, _FLOAT, _MERGE = (_TAG + t for t in ("null", "bool", "int", "float", "merge"))
_IDENTITY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # becomes state file names
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OCTAL_MODE = re.compile(r"[0-7]{3,4}")
_PERCENT = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*%")
_DNS_NAME = re.compile(r"(\*\.)?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?")
_OID = re.compile(r"[0-2](\.[0-9]+)+")


# --- nodes, key paths and errors --------------------------------------------------------------


class _Invalid(Exception):
    """One configuration error, before the file name is known to the message."""

    def __init__(self, line: int, where: str, message: str) -> None:
        super().__init__(message)
        self.line, self.where, self.message = line, where, message


@dataclass(frozen=True)
class _Entry:
    """A value node with its key path (``servers.ndes.url[1]``) and the line of its key."""

    where: str
    key_line: int
    node: Node

    @property
    def line(self) -> int:
        return _line(self.node)

    def fail(self, message: str) -> NoReturn:
        """An error about the value: reported at the value's line."""
        raise _Invalid(self.line, self.where, message)

    def fail_key(self, message: str) -> NoReturn:
        """An error about the key (unknown, duplicate, missing keys inside): at the key's line."""
        raise _Invalid(self.key_line, self.where, message)

    def child(self, name: str, node: Node, key_line: int) -> _Entry:
        return _Entry(f"{self.where}.{name}" if self.where else name, key_line, node)


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL


def _show(node: Node) -> str:
    """A value as a message shows it: strings quoted, numbers as written."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "nothing" if node.value == "" else "null"
    text = str(node.value)
    shown = repr(text if len(text) <= 80 else text[:77] + "...")
    return text if node.tag in (_INT, _FLOAT, _BOOL) else shown


def _suggest(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _pairs(node: MappingNode, entry: _Entry, active: frozenset[int]) -> Iterator[tuple[Node, Node]]:
    """Key and value nodes in document order, ``<<`` merge keys expanded (explicit keys win)."""
    explicit = {k.value for k, _ in node.value if isinstance(k, ScalarNode) and k.tag != _MERGE}
    merged: set[str] = set()
    for key, value in node.value:
        if key.tag != _MERGE:
            yield key, value
            continue
        for source in _merge_sources(entry.child("<<", value, _line(key))):
            if id(source) in active:
                entry.fail_key("a << merge includes the mapping itself")
            for mkey, mvalue in _pairs(source, entry, active | {id(source)}):
                if not isinstance(mkey, ScalarNode):
                    yield mkey, mvalue  # refused by the caller, which names it
                elif mkey.value not in explicit and mkey.value not in merged:
                    merged.add(mkey.value)
                    yield mkey, mvalue


def _merge_sources(entry: _Entry) -> list[MappingNode]:
    node = entry.node
    sources: list[Node] = node.value if isinstance(node, SequenceNode) else [node]
    mappings = [source for source in sources if isinstance(source, MappingNode)]
    if len(mappings) != len(sources):
        entry.fail("expected a mapping (or a list of mappings) to merge")
    return mappings


def _named(entry: _Entry) -> Iterator[tuple[str, _Entry]]:
    """The keys of a mapping (null: none) with their values, rejecting duplicate keys."""
    node = entry.node
    if _is_null(node):
        return
    if not isinstance(node, MappingNode):
        entry.fail(f"expected a mapping, got {_show(node)}")
    seen: dict[str, int] = {}
    for key, value in _pairs(node, entry, frozenset({id(node)})):
        if not isinstance(key, ScalarNode):
            entry.child("?", key, _line(key)).fail_key(f"expected a key name, got {_show(key)}")
        child = entry.child(str(key.value), value, _line(key))
        if child.where in seen:
            child.fail_key(f"duplicate key (first at line {seen[child.where]})")
        seen[child.where] = child.key_line
        yield str(key.value), child


Parsers = Mapping[str, Callable[[_Entry], object]]


def _entries(entry: _Entry, parsers: Parsers, exclusive: Collection[str] = ()) -> dict[str, _Entry]:
    """A mapping whose keys are those of ``parsers``: each value is checked, in document order,
    by its parser; at most one of the ``exclusive`` keys may be set."""
    found: dict[str, _Entry] = {}
    for name, child in _named(entry):
        if name not in parsers:
            hint = _suggest(name, parsers) or f" (expected one of: {', '.join(parsers)})"
            child.fail_key(f"unknown key{hint}")
        if name in exclusive:
            other = next((k for k in found if k in exclusive), None)
            if other is not None:
                child.fail_key(
                    f"cannot be set together with {other} (line {found[other].key_line}); "
                    "choose one"
                )
        parsers[name](child)
        found[name] = child
    return found


def _items(entry: _Entry, example: str, *, hint: bool = True) -> list[_Entry]:
    """The items of a list (null: none); a lone string gets the hint to write it as a list."""
    node = entry.node
    if _is_null(node):
        return []
    if not isinstance(node, SequenceNode):
        hint_text = f" (write [{node.value}])" if hint and isinstance(node, ScalarNode) else ""
        entry.fail(f"expected a list like {example}, got {_show(node)}{hint_text}")
    return [_Entry(f"{entry.where}[{i}]", _line(item), item) for i, item in enumerate(node.value)]


def _get(entries: Mapping[str, _Entry], key: str, parse: Callable[[_Entry], T], default: T) -> T:
    entry = entries.get(key)
    return default if entry is None else parse(entry)


def _optional(parse: Callable[[_Entry], T]) -> Callable[[_Entry], T | None]:
    """``parse``, with an explicit null meaning "not set"."""

    def parse_optional(entry: _Entry) -> T | None:
        return None if _is_null(entry.node) else parse(entry)

    return parse_optional


def _reason(exc: UsageError, prefix: str) -> str:
    """The reason part of a scepd.* parser's message (``--option 'value': reason``)."""
    return str(exc).removeprefix(prefix)


# --- scalar values ------------------------------------------------------------------------------


def _scalar(entry: _Entry, expected: str) -> ScalarNode:
    node = entry.node
    if not isinstance(node, ScalarNode) or node.tag == _NULL:
        entry.fail(f"expected {expected}, got {_show(node)}")
    return node


def _word(entry: _Entry) -> str:
    """Any scalar, as written: `owner: 1000` is the text 1000, `[chmod, 0640, f]` keeps 0640."""
    return str(_scalar(entry, "a string").value)


def _text(entry: _Entry) -> str:
    text = _word(entry)
    if not text.strip():
        entry.fail("expected a non-empty string")
    return text


def _bool(entry: _Entry) -> bool:
    node = _scalar(entry, "true or false")
    if node.tag != _BOOL:
        entry.fail(f"expected true or false, got {_show(node)}")
    return bool(SafeConstructor().construct_yaml_bool(node))


def _number(node: ScalarNode) -> float | None:
    try:
        return float(SafeConstructor().construct_object(node))
    except (ValueError, TypeError, yaml.YAMLError):
        return None


def _duration(entry: _Entry) -> dt.timedelta:
    node = _scalar(entry, "a duration like 30s")
    if node.tag in (_INT, _FLOAT):
        entry.fail(f"expected a duration like 30s, got {node.value} (write {node.value}s)")
    text = str(node.value)
    try:
        return parse_duration(text)
    except UsageError as exc:
        reason = _reason(exc, f"duration {text!r}: ")
        if reason.startswith("expected"):
            entry.fail(f"expected a duration like 30s, got {_show(node)}")
        entry.fail(f"{reason}, got {_show(node)}")


def _auto_duration(entry: _Entry) -> dt.timedelta | None:
    if isinstance(entry.node, ScalarNode) and entry.node.value == "auto":
        return None
    try:
        return _duration(entry)
    except _Invalid as exc:
        if not exc.message.startswith("expected a duration like 30s"):
            raise
        entry.fail(exc.message.replace("expected a duration", "expected auto or a duration"))


def _fraction(entry: _Entry) -> float:
    """``66%`` as 0.66; a bare number is refused (is 0.5 half, or half a percent?)."""
    node = _scalar(entry, "a percentage like 66%")
    if node.tag in (_INT, _FLOAT):
        number = _number(node)
        if number is None or not math.isfinite(number):
            number = 66
        percent = number * 100 if 0 < number < 1 else number  # 0.66 meant as a fraction
        hint = f" (write {percent:g}%)"
        entry.fail(f"expected a percentage like 66%, got {node.value}{hint}")
    match = _PERCENT.fullmatch(str(node.value).strip())
    if match is None:
        entry.fail(f"expected a percentage like 66%, got {_show(node)}")
    return float(match.group(1)) / 100


def _renew_at(entry: _Entry) -> float:
    value = _fraction(entry)
    if not 0 < value < 1:
        entry.fail(f"expected a percentage above 0% and below 100%, got {_show(entry.node)}")
    return value


def _jitter(entry: _Entry) -> float:
    value = _fraction(entry)
    if not 0 <= value < 0.5:
        entry.fail(f"expected a percentage from 0% to below 50%, got {_show(entry.node)}")
    return value


def _key_bits(entry: _Entry) -> int:
    node = _scalar(entry, "a number of bits like 2048")
    if node.tag != _INT:
        entry.fail(f"expected a number of bits like 2048, got {_show(node)}")
    bits = int(SafeConstructor().construct_yaml_int(node))
    if bits < MIN_KEY_BITS:
        entry.fail(f"must be at least {MIN_KEY_BITS} (CAs refuse smaller RSA keys), got {bits}")
    if bits > MAX_KEY_BITS:
        entry.fail(f"must be at most {MAX_KEY_BITS}, got {bits}")
    return bits


def _mode(entry: _Entry) -> int:
    """A file mode as a quoted octal string: unquoted, YAML 1.1 reads 0640 as the number 416."""
    node = _scalar(entry, 'a file mode like "0640"')
    if node.tag != _TAG + "str":
        quoted = node.value if _OCTAL_MODE.fullmatch(str(node.value)) else "0640"
        entry.fail(
            f'expected a quoted octal string like "0640", got {node.value} '
            f'(unquoted it is read as a number; write "{quoted}")'
        )
    text = str(node.value)
    if not _OCTAL_MODE.fullmatch(text) or int(text, 8) > 0o777:
        entry.fail(f'expected 3 or 4 octal digits up to 0777 like "0640", got {text!r}')
    return int(text, 8)


def _choice(choices: tuple[str, ...]) -> Callable[[_Entry], str]:
    def parse_choice(entry: _Entry) -> str:
        text = _text(entry)
        if text not in choices:
            entry.fail(
                f"expected one of {', '.join(choices)}, got {text!r}{_suggest(text, choices)}"
            )
        return text

    return parse_choice


def _abs_path(entry: _Entry) -> Path:
    text = _text(entry)
    if not text.startswith("/"):
        entry.fail(f"must be an absolute path, got {text!r}")
    return Path(text)


def _env_name(entry: _Entry) -> str:
    text = _text(entry)
    if not _ENV_NAME.fullmatch(text):
        entry.fail(f"expected an environment variable name like SCEP_CHALLENGE, got {text!r}")
    return text


def _credential_name(entry: _Entry) -> str:
    text = _text(entry)
    if "/" in text or text in (".", ".."):
        entry.fail(f"expected a credential name (a file name, no /), got {text!r}")
    return text


# --- servers ------------------------------------------------------------------------------------


def _url(entry: _Entry) -> str:
    text = _text(entry)
    try:
        parts = urllib.parse.urlsplit(text)
        valid = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:  # e.g. an unclosed [IPv6 literal
        valid = False
    if not valid or re.search(r"\s", text):
        entry.fail(f"expected an http:// or https:// URL, got {text!r}")
    return text


def _urls(entry: _Entry) -> tuple[str, ...]:
    """One URL, or a list tried in order."""
    if isinstance(entry.node, ScalarNode):
        return (_url(entry),)
    urls = tuple(_url(item) for item in _items(entry, "[http://ndes.example.com/...]"))
    if not urls:
        entry.fail("expected a URL or a list of URLs, got an empty list")
    return urls


def _fingerprint(entry: _Entry) -> str:
    text = _text(entry)
    try:
        Fingerprint.parse(text)
    except UsageError as exc:
        reason = _reason(exc, f"--fingerprint {text!r}: ")
        entry.fail(
            f"{reason}, got {text!r}" if reason.startswith("expected") else f"{text!r}: {reason}"
        )
    return text  # kept as written: messages show what the admin pasted


_SERVER_PARSERS: Parsers = {
    "url": _urls,
    "ca_fingerprint": _optional(_fingerprint),
    "profile": _choice(PROFILES),
    "ca_identifier": _optional(_text),
    "ca_bundle": _optional(_abs_path),
    "timeout": _duration,
    "debug": _bool,
}


def _server(name: str, entry: _Entry) -> Server:
    found = _entries(entry, _SERVER_PARSERS)
    if "url" not in found:
        entry.fail_key("missing key 'url'")
    return Server(
        name=name,
        urls=_urls(found["url"]),
        ca_fingerprint=_get(found, "ca_fingerprint", _optional(_fingerprint), None),
        profile=_get(found, "profile", _choice(PROFILES), "auto"),
        ca_identifier=_get(found, "ca_identifier", _optional(_text), None),
        ca_bundle=_get(found, "ca_bundle", _optional(_abs_path), None),
        timeout=_get(found, "timeout", _duration, DEFAULT_TIMEOUT),
        debug=_get(found, "debug", _bool, False),
    )


def _servers(entry: _Entry) -> dict[str, Server]:
    servers: dict[str, Server] = {}
    for name, child in _named(entry):
        if not name.strip():
            child.fail_key("a server needs a name")
        servers[name] = _server(name, child)
    return servers


# --- identities ---------------------------------------------------------------------------------


def _subject(entry: _Entry) -> str:
    text = _text(entry)
    try:
        parse_subject(text)
    except UsageError:
        entry.fail(f"expected an RFC 4514 name like CN=web01.example.com,O=Example, got {text!r}")
    return text


def _san_item(pattern: Callable[[str], bool], what: str) -> Callable[[_Entry], str]:
    def parse_item(entry: _Entry) -> str:
        text = _text(entry)
        if not pattern(text):
            entry.fail(f"not {what}, got {text!r}")
        return text

    return parse_item


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


_SAN_ITEMS = {
    "dns": _san_item(lambda t: bool(_DNS_NAME.fullmatch(t)), "a DNS name"),
    "ip": _san_item(_is_ip, "an IPv4 or IPv6 address"),
    "email": _san_item(lambda t: bool(re.fullmatch(r"[^@\s]+@[^@\s]+", t)), "an email address"),
    "uri": _san_item(
        lambda t: bool(urllib.parse.urlsplit(t).scheme) and not re.search(r"\s", t),
        "a URI like https://example.com/",
    ),
}


def _san_list(kind: str) -> Callable[[_Entry], tuple[str, ...]]:
    def parse_list(entry: _Entry) -> tuple[str, ...]:
        return tuple(_SAN_ITEMS[kind](item) for item in _items(entry, "[web01.example.com]"))

    return parse_list


_SAN_PARSERS: Parsers = {kind: _san_list(kind) for kind in _SAN_ITEMS}


def _san(entry: _Entry) -> SubjectAltNames:
    found = _entries(entry, _SAN_PARSERS)
    none: tuple[str, ...] = ()
    return SubjectAltNames(*(_get(found, kind, _san_list(kind), none) for kind in _SAN_ITEMS))


def _key_usage(entry: _Entry) -> tuple[str, ...]:
    names = []
    for item in _items(entry, "[digitalSignature, keyEncipherment]"):
        name = _text(item)
        if name not in KEY_USAGES:
            hint = _suggest(name, KEY_USAGES) or f" (one of {', '.join(KEY_USAGES)})"
            item.fail(f"unknown key usage {name!r}{hint}")
        names.append(name)
    return tuple(names)


def _extended_key_usage(entry: _Entry) -> tuple[str, ...]:
    names = []
    for item in _items(entry, "[serverAuth]"):
        name = _text(item)
        if name not in EXTENDED_KEY_USAGES and not _OID.fullmatch(name):
            hint = _suggest(name, EXTENDED_KEY_USAGES) or (
                f" (one of {', '.join(EXTENDED_KEY_USAGES)} or a dotted OID)"
            )
            item.fail(f"unknown extended key usage {name!r}{hint}")
        names.append(name)
    return tuple(names)


_CHALLENGE_PARSERS: Parsers = {
    "file": _abs_path,
    "env": _env_name,
    "credential": _credential_name,
}


def _challenge(entry: _Entry) -> Challenge | None:
    if _is_null(entry.node):
        return None  # an identity can drop a challenge set in defaults
    found = _entries(entry, _CHALLENGE_PARSERS, exclusive=tuple(_CHALLENGE_PARSERS))
    if not found:
        entry.fail("expected one of file, env or credential")
    return Challenge(
        file=_get(found, "file", _abs_path, None),
        env=_get(found, "env", _env_name, None),
        credential=_get(found, "credential", _credential_name, None),
    )


def _command(entry: _Entry) -> Command:
    node = entry.node
    if isinstance(node, MappingNode):
        found = _entries(entry, {"shell": _text})
        if "shell" not in found:
            entry.fail_key("missing key 'shell'")
        return ShellCommand(_text(found["shell"]))
    if not isinstance(node, SequenceNode) or not node.value:
        entry.fail(
            'expected a command: an argument list like [systemctl, reload, nginx] or {shell: "..."}'
            f", got {_show(node)}"
        )
    argv = tuple(_word(item) for item in _items(entry, "[systemctl, reload, nginx]"))
    if not argv[0].strip():
        entry.fail("the command name (first item) is empty")
    return argv


def _commands(entry: _Entry) -> tuple[Command, ...]:
    # no "write [...]" hint: [systemctl reload nginx] would be one command named with spaces
    items = _items(entry, '[[systemctl, reload, nginx], {shell: "..."}]', hint=False)
    return tuple(_command(item) for item in items)


_RETRY_PARSERS: Parsers = {"initial": _auto_duration, "max": _auto_duration}
_RENEWAL_PARSERS: Parsers = {
    "mode": _choice(RENEWAL_MODES),
    "new_key": _bool,
    "send_challenge": _optional(_bool),
}
_HOOK_PARSERS: Parsers = {"pre_renew": _commands, "post_renew": _commands}
# Mappings merged key by key with defaults: renewal: {mode: ...} in defaults and
# renewal: {new_key: false} in an identity both apply.  san and challenge replace as a whole.
_NESTED: dict[str, Parsers] = {
    "retry": _RETRY_PARSERS,
    "renewal": _RENEWAL_PARSERS,
    "hooks": _HOOK_PARSERS,
}
_RENEW_POINT = ("renew_at", "renew_before")  # one or the other, per level

_IDENTITY_PARSERS: Parsers = {
    "server": _text,
    "subject": _subject,
    "san": _san,
    "key_usage": _key_usage,
    "extended_key_usage": _extended_key_usage,
    "key": _abs_path,
    "cert": _abs_path,
    "chain": _optional(_abs_path),
    "fullchain": _optional(_abs_path),
    "owner": _optional(_text),
    "group": _optional(_text),
    "key_mode": _mode,
    "cert_mode": _mode,
    "renew_at": _renew_at,
    "renew_before": _duration,
    "jitter": _jitter,
    "retry": lambda e: _entries(e, _RETRY_PARSERS),
    "key_bits": _key_bits,
    "hook_timeout": _duration,
    "challenge": _challenge,
    "renewal": lambda e: _entries(e, _RENEWAL_PARSERS),
    "hooks": lambda e: _entries(e, _HOOK_PARSERS),
}
_REQUIRED = ("server", "subject", "key", "cert")
_WRITTEN_FILES = ("key", "cert", "chain", "fullchain")

Layer = dict[str, _Entry]  # identity keys set at one level, nested ones as "renewal.mode"


def _layer(entry: _Entry) -> Layer:
    """The identity keys of ``defaults:`` or of one identity, checked."""
    layer: Layer = {}
    for name, child in _entries(entry, _IDENTITY_PARSERS, exclusive=_RENEW_POINT).items():
        if name in _NESTED:
            for sub, item in _entries(child, _NESTED[name]).items():
                layer[f"{name}.{sub}"] = item
        else:
            layer[name] = child
    return layer


def _merge(defaults: Layer, layer: Layer) -> Layer:
    merged = dict(defaults)
    if layer.keys() & set(_RENEW_POINT):  # renew_before in an identity overrides renew_at too
        for key in _RENEW_POINT:
            merged.pop(key, None)
    merged.update(layer)
    return merged


def _identity_layers(entry: _Entry) -> list[tuple[str, _Entry, Layer]]:
    layers = []
    for name, child in _named(entry):
        if not _IDENTITY_NAME.fullmatch(name):
            child.fail_key(
                "an identity name has letters, digits, '.', '_' and '-' only (it names state files)"
            )
        layers.append((name, child, _layer(child)))
    return layers


def _server_ref(entry: _Entry, servers: Mapping[str, Server]) -> Server:
    name = _text(entry)
    if name not in servers:
        hint = _suggest(name, servers) or (
            f" (servers: {', '.join(servers)})" if servers else " (no servers are defined)"
        )
        entry.fail(f"no server {name!r}{hint}")
    return servers[name]


def _renew_point(merged: Layer) -> tuple[float | None, dt.timedelta | None]:
    if "renew_before" in merged:
        return None, _duration(merged["renew_before"])
    return _get(merged, "renew_at", _renew_at, DEFAULT_RENEW_AT), None


def _retry(merged: Layer) -> Retry:
    retry = Retry(
        initial=_get(merged, "retry.initial", _auto_duration, None),
        max=_get(merged, "retry.max", _auto_duration, None),
    )
    if retry.initial is not None and retry.max is not None and retry.initial > retry.max:
        merged["retry.max"].fail(f"shorter than retry.initial ({format_duration(retry.initial)})")
    return retry


def _identity(name: str, entry: _Entry, merged: Layer, servers: Mapping[str, Server]) -> Identity:
    for key in _REQUIRED:
        if key not in merged:
            entry.fail_key(f"missing key {key!r}")
    sans = _get(merged, "san", _san, SubjectAltNames())
    renew_at, renew_before = _renew_point(merged)
    return Identity(
        name=name,
        server=_server_ref(merged["server"], servers),
        subject=_subject(merged["subject"]),
        san_dns=sans.dns,
        san_ip=sans.ip,
        san_email=sans.email,
        san_uri=sans.uri,
        key_usage=_get(merged, "key_usage", _key_usage, DEFAULT_KEY_USAGE),
        extended_key_usage=_get(merged, "extended_key_usage", _extended_key_usage, ()),
        key=_abs_path(merged["key"]),
        cert=_abs_path(merged["cert"]),
        chain=_get(merged, "chain", _optional(_abs_path), None),
        fullchain=_get(merged, "fullchain", _optional(_abs_path), None),
        owner=_get(merged, "owner", _optional(_text), None),
        group=_get(merged, "group", _optional(_text), None),
        key_mode=_get(merged, "key_mode", _mode, 0o600),
        cert_mode=_get(merged, "cert_mode", _mode, 0o644),
        renew_at=renew_at,
        renew_before=renew_before,
        jitter=_get(merged, "jitter", _jitter, DEFAULT_JITTER),
        retry=_retry(merged),
        key_bits=_get(merged, "key_bits", _key_bits, MIN_KEY_BITS),
        hook_timeout=_get(merged, "hook_timeout", _duration, DEFAULT_HOOK_TIMEOUT),
        challenge=_get(merged, "challenge", _challenge, None),
        renewal=Renewal(
            mode=_get(merged, "renewal.mode", _choice(RENEWAL_MODES), "auto"),
            new_key=_get(merged, "renewal.new_key", _bool, True),
            send_challenge=_get(merged, "renewal.send_challenge", _optional(_bool), None),
        ),
        hooks=Hooks(
            pre_renew=_get(merged, "hooks.pre_renew", _commands, ()),
            post_renew=_get(merged, "hooks.post_renew", _commands, ()),
        ),
        line=entry.key_line,
    )


def _check_distinct_files(merged_layers: list[tuple[str, Layer]]) -> None:
    """No two identities (or two outputs of one) write the same file."""
    writers: dict[str, tuple[str, _Entry]] = {}
    for name, merged in merged_layers:
        for key in _WRITTEN_FILES:
            entry = merged.get(key)
            if entry is None or _is_null(entry.node):
                continue
            path = os.path.normpath(_abs_path(entry))
            if path in writers:
                other_name, other = writers[path]
                if other.where == entry.where:  # one value in defaults, inherited by both
                    entry.fail(
                        f"{path} would be written by both identities {other_name} and {name}; "
                        f"set {key} in each identity"
                    )
                entry.fail(f"{path} is already written by {other.where} (line {other.line})")
            writers[path] = (name, entry)


# --- the file -----------------------------------------------------------------------------------


def _top_hooks(entry: _Entry) -> dict[str, _Entry]:
    return _entries(entry, {"post_renew_batch": _commands})


_TOP_PARSERS: Parsers = {
    "state_dir": _abs_path,
    "metrics_file": _optional(_abs_path),
    "defaults": _layer,
    "servers": _servers,
    "identities": _identity_layers,
    "hooks": _top_hooks,
}


def _compose(text: str, name: str) -> Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)  # nodes only: nothing is constructed
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "not valid YAML"
        raise ConfigError(f"{name}:{line}: YAML syntax error: {problem}") from None
    except yaml.reader.ReaderError as exc:  # a control character, before any token
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(f"{name}:{line}: YAML syntax error: {exc.reason}") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "not valid YAML"
        raise ConfigError(f"{name}:1: YAML syntax error: {first}") from None


def _build(path: Path, root: _Entry) -> Config:
    top = _entries(root, _TOP_PARSERS)  # every value checked here, in document order
    servers: dict[str, Server] = _get(top, "servers", _servers, {})
    defaults: Layer = _get(top, "defaults", _layer, {})
    layers: list[tuple[str, _Entry, Layer]] = _get(top, "identities", _identity_layers, [])
    merged_layers = [(name, entry, _merge(defaults, layer)) for name, entry, layer in layers]
    identities = {
        name: _identity(name, entry, merged, servers) for name, entry, merged in merged_layers
    }
    _check_distinct_files([(name, merged) for name, _, merged in merged_layers])
    hooks: dict[str, _Entry] = _get(top, "hooks", _top_hooks, {})
    return Config(
        path=path,
        state_dir=_get(top, "state_dir", _abs_path, DEFAULT_STATE_DIR),
        metrics_file=_get(top, "metrics_file", _optional(_abs_path), None),
        servers=servers,
        identities=identities,
        post_renew_batch=_get(hooks, "post_renew_batch", _commands, ()),
    )


def parse_config(text: str, path: Path) -> Config:
    """The configuration in ``text``; errors name ``path`` as given.  Raises ConfigError."""
    name = str(path)
    node = _compose(text, name)
    if not isinstance(node, MappingNode):
        got = "an empty file" if node is None else _show(node)
        raise ConfigError(
            f"{name}:1: expected a mapping of settings (servers:, identities:, ...), got {got}"
        )
    try:
        return _build(path, _Entry("", 1, node))
    except _Invalid as exc:
        raise ConfigError(f"{name}:{exc.line}: {exc.where}: {exc.message}") from None


def load_config(path: Path) -> Config:
    """Read and parse the configuration file.  Raises ConfigError (also when unreadable)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read (not UTF-8 text, at byte {exc.start})") from None
    return parse_config(text, path)
