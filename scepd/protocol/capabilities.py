"""GetCACaps (RFC 8894 §3.5.2): parse the keyword list and negotiate algorithms from it."""

from __future__ import annotations

from dataclasses import dataclass, field

from scepd.errors import UsageError
from scepd.protocol.algorithms import ContentCipher, Digest

_DIGEST_KEYWORDS = {Digest.SHA1: "SHA-1", Digest.SHA256: "SHA-256", Digest.SHA512: "SHA-512"}


@dataclass(frozen=True)
class Capabilities:
    """The keywords a server advertised, in its order and spelling; lookups ignore case."""

    keywords: tuple[str, ...] = ()

    @classmethod
    def parse(cls, body: bytes | None) -> Capabilities:
        """Keywords from a GetCACaps body.  CRLF or LF, stray whitespace, any Content-Type;
        an empty body (or ``None`` for a failed request) means no capabilities."""
        if not body:
            return cls()
        text = body.decode("latin-1")  # keywords are ASCII; never fail on junk bytes
        seen: dict[str, str] = {}
        for line in text.replace("\r", "\n").split("\n"):
            word = line.strip()
            if word and word.isprintable() and word.lower() not in seen:
                seen[word.lower()] = word
        return cls(tuple(seen.values()))

    def has(self, keyword: str) -> bool:
        want = keyword.lower()
        return any(k.lower() == want for k in self.keywords)

    def __bool__(self) -> bool:
        return bool(self.keywords)

    @property
    def scep_standard(self) -> bool:
        return self.has("SCEPStandard")

    @property
    def post(self) -> bool:
        return self.has("POSTPKIOperation") or self.scep_standard

    @property
    def aes(self) -> bool:
        return self.has("AES") or self.scep_standard

    @property
    def renewal(self) -> bool:
        return self.has("Renewal")

    @property
    def get_next_ca_cert(self) -> bool:
        return self.has("GetNextCACert")

    def digests(self) -> set[Digest]:
        found = {d for d, keyword in _DIGEST_KEYWORDS.items() if self.has(keyword)}
        if self.scep_standard:
            found.add(Digest.SHA256)
        return found

    def negotiate(
        self,
        *,
        digest: Digest | None = None,
        cipher: ContentCipher | None = None,
        allow_legacy: bool = False,
    ) -> Negotiated:
        """Choose cipher, digest and HTTP method.  Explicit choices win (NDES often supports more
        than it advertises) with a warning; single DES and MD5 need ``allow_legacy``."""
        warnings: list[str] = []
        for choice in (digest, cipher):
            if choice is not None and choice.legacy and not allow_legacy:
                raise UsageError(
                    f"{choice.value} is forbidden by RFC 8894 §2.9; "
                    "pass --allow-legacy-crypto only if the server accepts nothing else"
                )
        if not self:
            warnings.append(
                "server advertised no capabilities: using 3DES, SHA-1 and GET (RFC 8894 §3.5.2)"
            )
        offered = self.digests()
        if digest is None:
            digest = next((d for d in (Digest.SHA512, Digest.SHA256) if d in offered), Digest.SHA1)
        elif self and digest not in offered:
            warnings.append(f"server does not advertise {digest.value}; sending it as asked")
        if cipher is None:
            cipher = ContentCipher.AES128 if self.aes else ContentCipher.DES3
        elif self and cipher is ContentCipher.AES128 and not self.aes:
            warnings.append("server does not advertise AES; sending it as asked")
        return Negotiated(cipher=cipher, digest=digest, post=self.post, warnings=tuple(warnings))


@dataclass(frozen=True)
class Negotiated:
    cipher: ContentCipher
    digest: Digest
    post: bool
    warnings: tuple[str, ...] = field(default=())
