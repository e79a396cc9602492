"""``scepd import-sscep``: the ``servers:`` + ``identities:`` YAML that replaces an sscep setup
(``sscep.conf`` and the ``mkrequest`` script that made the key and the request).

sscep.conf is INI-like (``[section]``, ``Key = Value``, optional double quotes with ``\\"``
escapes, ``#`` comments).  mkrequest is a shell script that writes an ``openssl req`` config
(here-documents and ``echo ... >> $CONFIG`` lines) from the variables at its top; the CN and
the SAN usually come from its ``-dns``/``-ip`` argument, so when they are not in the script
they are read from the request (CertReqFile) or the certificate (LocalCertFile) if on disk.

Nothing secret is ever printed: the challenge password (PASSWORD=, challengePassword=) is
replaced by a ``challenge: {file: ...}`` reference, and values of keys that look like
passwords are not shown in the "not mapped" comments.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from scepd.errors import UsageError

_IDENTITY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_PLAIN = re.compile(r"[A-Za-z0-9/_.][A-Za-z0-9/_.:@=,+-]*")
_SECRET_KEY = re.compile(r"pass|secret|pin|challenge", re.IGNORECASE)
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*|[0-9$#@*?!-]))")

# sscep.conf keys (lower case) -> why scepd does not need them.
_NOT_MAPPED = {
    "engine": "scepd keeps its keys in files; no OpenSSL engines",
    "proxy": "set http_proxy / https_proxy in scepd's environment (systemd: Environment=)",
    "verbose": "scepd logs to the journal; use --debug for more",
    "certreqfile": "scepd builds the request itself from subject, san and key",
    "signkeyfile": "scepd signs renewals with the current key and certificate",
    "signcertfile": "scepd signs renewals with the current key and certificate",
    "selfsignedfile": "scepd makes its self-signed certificate in memory",
    "enccertfile": "scepd encrypts to the RA/CA certificate from GetCACert",
    "pollinterval": "scepd polls a pending request itself (retry: initial/max)",
    "maxpolltime": "scepd polls a pending request itself (retry: initial/max)",
    "maxpollcount": "scepd polls a pending request itself (retry: initial/max)",
    "resume": "scepd keeps pending requests in state_dir and resumes them",
    "fingerprint": "the algorithm goes in ca_fingerprint's prefix (sha256:, sha1:, md5:)",
    "getcertserial": "one-off query: scepd getcert --serial",
    "getcertfile": "one-off query: scepd getcert --out",
    "getcrlfile": "one-off query: scepd getcrl --out",
    "localcertfile": "another LocalCertFile is used",
    "privatekeyfile": "another PrivateKeyFile is used",
}
_MAPPED = {"url", "cacertfile", "caidentifier", "encalgorithm", "sigalgorithm", "debug"}

# openssl DN field names -> RFC 4514 attribute types (cryptography's, or dotted OIDs).
_DN_FIELDS = {
    "c": "C", "countryname": "C",
    "st": "ST", "s": "ST", "stateorprovincename": "ST",
    "l": "L", "localityname": "L",
    "o": "O", "organizationname": "O",
    "ou": "OU", "organizationalunitname": "OU",
    "cn": "CN", "commonname": "CN",
    "street": "STREET", "streetaddress": "STREET",
    "dc": "DC", "domaincomponent": "DC",
    "uid": "UID", "userid": "UID",
    "emailaddress": "1.2.840.113549.1.9.1",
    "serialnumber": "2.5.4.5",
    "unstructuredname": "1.2.840.113549.1.9.2",
    "unstructuredaddress": "1.2.840.113549.1.9.8",
}  # fmt: skip
# mkrequest's parameter variables (those at the top, "EDIT THE PARAMETERS BELOW") for DN fields.
_DN_VARIABLES = {
    "COUNTRY": "C", "STATE": "ST", "LOCALITY": "L", "ORGANIZATION": "O",
    "ORGANIZATIONAL_UNIT": "OU", "COMMON_NAME": "CN", "UNSTRUCTURED_NAME": "unstructuredName",
    "UNSTRUCTURED_ADDRESS": "unstructuredAddress", "SERIAL_NUMBER": "serialNumber",
    "EMAIL": "emailAddress",
}  # fmt: skip
_SAN_KINDS = {"dns": "dns", "ip": "ip", "email": "email", "uri": "uri"}
_PLACEHOLDER_CN = "CHANGE-ME.example.com"


@dataclass
class _Setting:
    section: str
    key: str
    value: str
    line: int


@dataclass
class _Request:
    """What mkrequest (or the request/certificate on disk) says about the request."""

    dn: list[tuple[str, str]] = field(default_factory=list)  # (openssl field name, value)
    cn_from_argument: bool = False  # CN=$PARAMETER: mkrequest's -dns/-ip argument
    san: dict[str, list[str]] = field(default_factory=dict)
    san_from_argument: bool = False
    key_bits: int | None = None
    key_bits_source: str = ""
    challenge: bool = False
    prefix: str | None = None
    notes: list[str] = field(default_factory=list)  # "# sscep: ..." comment lines
    subject: str | None = None  # RFC 4514, when read from a CSR or certificate

    def add_san(self, kind: str, value: str) -> None:
        values = self.san.setdefault(kind, [])
        if value not in values:
            values.append(value)


# --- sscep.conf ---------------------------------------------------------------------------------


def _unquote(value: str, label: str, number: int) -> str:
    value = value.strip()
    if not value.startswith('"'):
        return value.split(" #", 1)[0].strip() if " #" in value else value
    out, i = [], 1
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            out.append(value[i + 1])
            i += 2
            continue
        if ch == '"':
            rest = value[i + 1 :].strip()
            if rest and not rest.startswith("#"):
                raise UsageError(f"{label}:{number}: text after the closing quote: {rest!r}")
            return "".join(out)
        out.append(ch)
        i += 1
    raise UsageError(f"{label}:{number}: unterminated quoted value")


def parse_sscep_conf(text: str, label: str = "sscep.conf") -> list[_Setting]:
    """The ``Key = Value`` settings in file order.  Raises UsageError (file:line: what)."""
    settings: list[_Setting] = []
    section = "sscep"
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            match = re.fullmatch(r"\[\s*([^\]\s]+)\s*\]", line)
            if match is None:
                raise UsageError(f"{label}:{number}: expected a section like [sscep], got {line!r}")
            section = match.group(1)
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key.strip()):
            shown = line if len(line) <= 60 else line[:57] + "..."
            raise UsageError(f"{label}:{number}: expected Key = Value, got {shown!r}")
        settings.append(_Setting(section, key.strip(), _unquote(value, label, number), number))
    return settings


# --- mkrequest ----------------------------------------------------------------------------------


def _expand(text: str, variables: dict[str, str]) -> tuple[str, bool]:
    """``text`` with the script's literal variables substituted; True if any was unknown."""
    unknown = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal unknown
        name = match.group(1) or match.group(2)
        if name in variables:
            return variables[name]
        unknown = True
        return match.group(0)

    return _VAR.sub(substitute, text), unknown


def _shell_value(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value.split(" #", 1)[0].strip()


def _config_lines(text: str, label: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """The openssl config lines the script writes (here-documents, ``echo ... >>``), and the
    shell lines; a file that is no script is all config."""
    lines = text.splitlines()
    is_script = any(line.startswith("#!") for line in lines[:1]) or bool(
        re.search(r"^\s*openssl\s", text, re.MULTILINE)
    )
    if not is_script:
        return list(enumerate(lines, 1)), []
    config: list[tuple[int, str]] = []
    shell: list[tuple[int, str]] = []
    terminator: str | None = None
    start = 0
    for number, line in enumerate(lines, 1):
        if terminator is not None:
            if line.strip() == terminator:
                terminator = None
            else:
                config.append((number, line))
            continue
        heredoc = re.search(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1", line)
        if heredoc is not None:
            terminator, start = heredoc.group(2), number
        echo = re.match(r"\s*echo\s+(['\"])(.*)\1\s*>>", line)
        if echo is not None:
            config.append((number, echo.group(2)))
        else:
            shell.append((number, line))
    if terminator is not None:
        raise UsageError(f"{label}:{start}: here-document not closed (no line {terminator})")
    return config, shell


def _parameters(shell: list[tuple[int, str]]) -> list[tuple[str, str, int]]:
    """Unindented ``NAME=value`` lines before the script's code starts (its parameters)."""
    found = []
    for number, line in shell:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", line.rstrip())
        if match is None:
            break
        found.append((match.group(1), _shell_value(match.group(2)), number))
    return found


def _dn_type(key: str) -> str | None:
    name = re.sub(r"^[0-9]+\.", "", key).lower().removesuffix("_default")
    return _DN_FIELDS.get(name)


def parse_mkrequest(text: str, label: str = "mkrequest") -> _Request:
    """What the script puts in the request.  Raises UsageError when it cannot be read."""
    if "\x00" in text:
        raise UsageError(f"{label}: not a text file (contains NUL bytes)")
    request = _Request()
    config, shell = _config_lines(text, label)
    variables: dict[str, str] = {}
    params = _parameters(shell)
    for name, value, _ in params:
        if "$" not in value and "`" not in value:
            variables[name] = value
    dn_from_vars: list[tuple[str, str]] = []
    for name, value, _ in params:
        if name in ("PASSWORD", "CHALLENGE", "CHALLENGE_PASSWORD"):
            request.challenge = request.challenge or bool(value)
        elif name == "KEYBITS":
            if value.isdigit():
                request.key_bits, request.key_bits_source = int(value), f"KEYBITS = {value}"
            elif value:
                request.notes.append(f"KEYBITS = {value}: not mapped (not a number)")
        elif name == "PREFIX":
            request.prefix = value or None
        elif name in _DN_VARIABLES:
            if value:
                dn_from_vars.append((_DN_VARIABLES[name], variables.get(name, value)))
        elif value:
            shown = "(value not shown)" if _SECRET_KEY.search(name) else value
            request.notes.append(f"{name} = {shown}: not mapped (not an mkrequest parameter)")
    if re.search(r"\$\{?(PASSWORD|CHALLENGE)\b", text) or re.search(
        r"challengePassword", text, re.IGNORECASE
    ):
        request.challenge = True
    for line in (s for _, s in shell):  # openssl genrsa ... 4096 / -newkey rsa:4096
        bits = re.search(r"\bgenrsa\b.*?\s([0-9]{3,5})\s*$", line) or re.search(
            r"-newkey\s+rsa:([0-9]{3,5})", line
        )
        if bits is not None and request.key_bits is None:
            request.key_bits = int(bits.group(1))
            request.key_bits_source = f"openssl {bits.group(0).strip()}"

    section = ""
    dn_section = "req_distinguished_name"
    dn_from_config: list[tuple[str, str]] = []
    for _, raw in config:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = re.fullmatch(r"\[\s*([^\]]+?)\s*\]", line)
        if header is not None:
            section = header.group(1)
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        expanded, unknown = _expand(value, variables)
        lower = key.lower()
        if section == "req" and lower == "distinguished_name":
            dn_section = value
        elif section == "req" and lower == "default_bits" and expanded.isdigit():
            if request.key_bits is None:
                request.key_bits, request.key_bits_source = int(expanded), f"default_bits = {value}"
        elif lower == "challengepassword":
            request.challenge = True  # its value is never shown
        elif lower == "string_mask":
            request.notes.append(
                f"string_mask = {value}: not mapped (scepd chooses the string types: "
                "PrintableString where it can, else UTF8String)"
            )
        elif lower in ("default_md", "encrypt_key", "default_keyfile"):
            request.notes.append(f"{key} = {value}: not mapped (scepd signs with the negotiated "
                                 "digest and writes its key unencrypted to key:)")  # fmt: skip
        elif lower == "subjectaltname":
            _san_value(request, expanded, unknown)
        elif section == dn_section:
            dn_type = _dn_type(key)
            if dn_type is None:
                if not lower.endswith(("_min", "_max")) and "$" not in value:
                    request.notes.append(f"{key} = {value}: not mapped (not a subject field)")
            elif unknown and dn_type == "CN":
                request.cn_from_argument = True
            elif not unknown and expanded:
                dn_from_config.append((dn_type, expanded))
        else:
            san_kind = _SAN_KINDS.get(re.sub(r"\.[0-9]+$", "", lower))
            if san_kind is not None:  # [alt_names] DNS.1 = ...
                if unknown:
                    request.san_from_argument = True
                else:
                    request.add_san(san_kind, expanded)
    # The config's own literal values win; the variables fill what the script's echo lines
    # would (a customized script may write literal fields instead of echo "C=$COUNTRY").
    request.dn = dn_from_config or dn_from_vars
    if dn_from_config:
        present = {t for t, _ in dn_from_config}
        request.dn = [(t, v) for t, v in dn_from_vars if t not in present] + dn_from_config
    return request


def _san_value(request: _Request, value: str, unknown: bool) -> None:
    for item in (part.strip() for part in value.split(",")):
        kind, sep, name = item.partition(":")
        if not sep or kind.lower() == "critical" or item.lower() == "critical":
            continue
        if kind.startswith("@"):
            continue
        san_kind = _SAN_KINDS.get(kind.strip().lower())
        if san_kind is None:
            request.notes.append(f"subjectAltName {kind}:{name}: not mapped (scepd requests "
                                 "DNS, IP, email and URI names)")  # fmt: skip
        elif "$" in name:
            request.san_from_argument = True
        else:
            request.add_san(san_kind, name.strip())
    if unknown and not request.san:
        request.san_from_argument = True


def _from_disk(request: _Request, paths: list[Path]) -> Path | None:
    """Subject and SAN from the request or the certificate sscep made, if one is on disk."""
    from cryptography import x509  # noqa: PLC0415 - only when a file is there

    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        loaded: x509.CertificateSigningRequest | x509.Certificate | None = None
        for load in (
            x509.load_pem_x509_csr,
            x509.load_der_x509_csr,
            x509.load_pem_x509_certificate,
            x509.load_der_x509_certificate,
        ):
            try:
                loaded = load(data)
                break
            except ValueError:
                continue
        if loaded is None:
            continue
        request.subject = loaded.subject.rfc4514_string() or None
        try:
            san = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            san = None
        if san is not None:
            for dns in san.get_values_for_type(x509.DNSName):
                request.add_san("dns", dns)
            for ip in san.get_values_for_type(x509.IPAddress):
                request.add_san("ip", str(ip))
            for email in san.get_values_for_type(x509.RFC822Name):
                request.add_san("email", email)
            for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
                request.add_san("uri", uri)
        return path
    return None


# --- output -------------------------------------------------------------------------------------


def _yaml(value: str) -> str:
    """A YAML scalar: plain when that reads back as the same string, else double-quoted."""
    if _PLAIN.fullmatch(value) and not re.fullmatch(
        r"(?i)(y|n|yes|no|on|off|true|false|null|~|[-+0-9.:_eE]+)", value
    ):
        return value
    return json.dumps(value, ensure_ascii=False)


def _escape_rdn(value: str) -> str:
    escaped = re.sub(r'([,+"\\<>;=])', r"\\\1", value)
    if escaped.startswith(("#", " ")):
        escaped = "\\" + escaped
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return escaped


def _subject(dn: list[tuple[str, str]]) -> str:
    """openssl's DN, in certificate order (C first), as RFC 4514 (most specific first)."""
    parts = []
    for dn_type, value in reversed(dn):
        attr = _DN_FIELDS.get(dn_type.lower(), dn_type)
        parts.append(f"{attr}={_escape_rdn(value)}")
    return ",".join(parts)


def _cn(request: _Request) -> str | None:
    for dn_type, value in request.dn:
        if dn_type == "CN":
            return value
    if request.subject:
        match = re.match(r"CN=((?:[^,\\]|\\.)+)", request.subject)
        if match:
            return match.group(1).replace("\\", "")
    return None


def _absolute(value: str, conf_dir: Path) -> str:
    return os.path.normpath(os.path.join(conf_dir, os.path.expanduser(value)))


def _fingerprint(ca_file: Path) -> tuple[str | None, str]:
    """``sha256:HEX`` of the first certificate in ``ca_file`` (or ``ca_file-0``, as sscep's
    getca names several), and which file it came from."""
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415

    for path in (ca_file, Path(f"{ca_file}-0")):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        try:
            first = re.search(
                rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", data, re.DOTALL
            )  # the first one (load_pem_x509_certificates is cryptography >= 39 only)
            if b"-----BEGIN" in data and first is None:
                raise ValueError("no PEM certificate")
            cert = (
                x509.load_pem_x509_certificate(first.group(0))
                if first is not None
                else x509.load_der_x509_certificate(data)
            )
        except ValueError:
            return None, f"{path} holds no certificate scepd can read"
        return "sha256:" + cert.fingerprint(hashes.SHA256()).hex().upper(), str(path)
    return None, f"{ca_file} is not on disk"


def default_name(
    conf_text: str,
    mkrequest_text: str | None,
    *,
    conf_dir: Path,
    conf_label: str = "sscep.conf",
    mkrequest_label: str = "mkrequest",
) -> str:
    """The name ``convert`` would suggest: the CN's first label, else ``web``."""
    settings = parse_sscep_conf(conf_text, conf_label)
    request = _request(settings, mkrequest_text, Path(os.path.abspath(conf_dir)), mkrequest_label)
    cn = _cn(request) or ""
    label = re.sub(r"[^A-Za-z0-9_.-]", "-", cn.split(".")[0]).strip("-._")
    return label if label and _IDENTITY_NAME.fullmatch(label) and cn != _PLACEHOLDER_CN else "web"


def _first(settings: list[_Setting], key: str) -> _Setting | None:
    """A key's setting: the [sscep_enroll] one first (that is what makes the certificate)."""
    matches = [s for s in settings if s.key.lower() == key]
    matches.sort(key=lambda s: (s.section != "sscep_enroll", s.section != "sscep", s.line))
    return matches[0] if matches else None


def _request(
    settings: list[_Setting], mkrequest_text: str | None, conf_dir: Path, label: str = "mkrequest"
) -> _Request:
    request = parse_mkrequest(mkrequest_text, label) if mkrequest_text is not None else _Request()
    if not any(t == "CN" for t, _ in request.dn) or (not request.san and request.san_from_argument):
        candidates = []
        for key in ("certreqfile", "localcertfile"):
            setting = _first(settings, key)
            if setting is not None:
                candidates.append(Path(_absolute(setting.value, conf_dir)))
        if request.prefix:
            candidates += [Path(_absolute(f"{request.prefix}.{ext}", conf_dir))
                           for ext in ("csr", "crt")]  # fmt: skip
        found = _from_disk(request, candidates)
        if found is not None:
            request.notes.append(f"subject and san: read from {found}")
    return request


def convert(
    conf_text: str,
    mkrequest_text: str | None,
    *,
    name: str,
    conf_dir: Path,
    conf_label: str = "sscep.conf",
    mkrequest_label: str = "mkrequest",
) -> str:
    """The ``servers:`` and ``identities:`` YAML for an sscep.conf (+ mkrequest) setup.

    Relative paths are taken relative to ``conf_dir``.  Raises UsageError for a file that
    cannot be parsed (one line: ``label:line: what``) or a bad ``name``."""
    if not _IDENTITY_NAME.fullmatch(name):
        raise UsageError(
            f"--name {name!r}: expected letters, digits, '.', '_' or '-' (it names state files)"
        )
    conf_dir = Path(os.path.abspath(conf_dir))
    settings = parse_sscep_conf(conf_text, conf_label)
    url = _first(settings, "url")
    if url is None or not url.value:
        raise UsageError(f"{conf_label}: no URL = ... setting (the SCEP server's URL)")
    request = _request(settings, mkrequest_text, conf_dir, mkrequest_label)
    notes: list[str] = []
    used: set[int] = set()

    def take(key: str) -> _Setting | None:
        setting = _first(settings, key)
        if setting is not None:
            used.add(id(setting))
        return setting

    take("url")
    server = [f"  {name}:", f"    url: {_yaml(url.value)}"]
    ca_file = take("cacertfile")
    server.append("    # scepd needs no CA certificate files: it fetches them with GetCACert and")
    server.append("    # pins them by ca_fingerprint. To see the fingerprints (SHA-256 and MD5):")
    server.append(f"    #   scepd getca --url {url.value} --out DIR")
    if ca_file is not None:
        path = Path(_absolute(ca_file.value, conf_dir))
        fingerprint, source = _fingerprint(path)
        server.append(f"    # sscep: CACertFile = {ca_file.value} (getca writes {path.name}-0, "
                      f"{path.name}-1, ... for several)")  # fmt: skip
        if fingerprint is not None:
            server.append(f"    # The first certificate in {source}; check it before you trust it:")
            server.append(f"    ca_fingerprint: {fingerprint}")
        else:
            server.append(f"    # ({source}: no fingerprint computed)")
            server.append("    # ca_fingerprint: sha256:...")
    else:
        server.append("    # ca_fingerprint: sha256:...")
    identifier = take("caidentifier")
    if identifier is not None and identifier.value:
        server.append(f"    ca_identifier: {_yaml(identifier.value)}")
    for algorithm in ("encalgorithm", "sigalgorithm"):
        setting = take(algorithm)
        if setting is not None:
            server.append(
                f"    # sscep: {setting.key} = {setting.value}: not mapped (scepd negotiates the "
                "algorithms from GetCACaps; it never sends DES or MD5 unless forced)"
            )
    debug = take("debug")
    if debug is not None and debug.value.lower() in ("true", "yes", "1", "on"):
        server.append("    debug: true")

    identity = [f"  {name}:", f"    server: {name}"]
    subject_note = None
    if request.subject and not any(t == "CN" for t, _ in request.dn):
        subject = request.subject
    elif any(t == "CN" for t, _ in request.dn):
        subject = _subject(request.dn)
    else:
        subject = _subject([*request.dn, ("CN", _PLACEHOLDER_CN)])
        subject_note = (
            "    # CHANGE the CN: mkrequest takes it from its -dns/-ip argument"
            if request.cn_from_argument or mkrequest_text is not None
            else "    # CHANGE the CN: no mkrequest given to read the subject from"
        )
    if subject_note:
        identity.append(subject_note)
    identity.append(f"    subject: {_yaml(subject)}")
    if request.san:
        identity.append("    san:")
        for kind in ("dns", "ip", "email", "uri"):
            values = request.san.get(kind)
            if values:
                identity.append(f"      {kind}:")
                identity += [f"        - {_yaml(v)}" for v in values]
    elif request.san_from_argument:
        identity.append("    # mkrequest puts its -dns/-ip/-email argument in subjectAltName:")
        identity.append("    # san: {dns: [" + _PLACEHOLDER_CN + "]}")
    key = take("privatekeyfile")
    key_path = _absolute(key.value if key else f"{request.prefix or 'local'}.key", conf_dir)
    if key is None:
        identity.append("    # sscep.conf has no PrivateKeyFile: mkrequest's PREFIX.key")
    identity.append(f"    key: {_yaml(key_path)}")
    cert = take("localcertfile")
    cert_path = _absolute(cert.value if cert else f"{request.prefix or 'local'}.crt", conf_dir)
    if cert is None:
        identity.append("    # sscep.conf has no LocalCertFile: sscep's -l file, CHANGE if needed")
    identity.append(f"    cert: {_yaml(cert_path)}")
    if request.key_bits is not None:
        if request.key_bits < 2048:
            identity.append(f"    # sscep: {request.key_bits_source}: raised to 2048 (scepd's "
                            "minimum; NDES and most CAs refuse smaller RSA keys)")  # fmt: skip
            identity.append("    key_bits: 2048")
        elif request.key_bits > 16384:
            identity.append(f"    # sscep: {request.key_bits_source}: lowered to 16384 (scepd's "
                            "maximum)")  # fmt: skip
            identity.append("    key_bits: 16384")
        else:
            identity.append(f"    key_bits: {request.key_bits}")
    otp = f"/etc/scepd/{name}.otp"
    if request.challenge or mkrequest_text is None:
        identity.append("    # write the one-time password to this file; scepd never reads it from")
        identity.append("    # the configuration")
        line = f"    challenge: {{file: {otp}}}"
        identity.append(line if request.challenge else "    # " + line[4:])
    identity.append("    # sscep renews with a PKCSReq signed by the current certificate: so does")
    identity.append("    # scepd (renewal.mode auto picks RenewalReq when the server offers it).")

    for setting in settings:
        if id(setting) in used:
            continue
        lower = setting.key.lower()
        shown = "(value not shown)" if _SECRET_KEY.search(setting.key) else setting.value
        if lower in _MAPPED:
            chosen = _first(settings, lower)
            why = f"another {setting.key} (line {chosen.line if chosen else '?'}) is used"
        elif setting.section.startswith("sscep_engine") or not setting.section.startswith("sscep"):
            why = "scepd keeps its keys in files; no OpenSSL engines"
        else:
            why = _NOT_MAPPED.get(lower, "scepd has no such setting")
        notes.append(f"# sscep: {setting.key} = {shown}: not mapped ({why})")
    notes += [f"# sscep: {note}" for note in request.notes]

    out = [f"# scepd configuration made by scepd import-sscep from {conf_label}"
           + (f" and {mkrequest_label}" if mkrequest_text is not None else "")]  # fmt: skip
    out += notes
    out += ["servers:", *server, "", "identities:", *identity]
    return "\n".join(out) + "\n"
