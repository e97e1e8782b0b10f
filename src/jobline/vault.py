"""The secrets vault: master keys, sealed values, and ``{{secret:NAME}}`` references.

A secret belongs to the operator (owner None) or to one user. ``{{secret:NAME}}`` names the
operator's secret NAME; ``{{owner_secret:NAME}}`` names the secret NAME of the user who owns
the job making the call. Where a reference is resolved at all is the caller's rule
(``functions/http.py``): only in what the operator wrote, never in data a user supplied.

A secret's value is encrypted here, in the process that holds ``JOBLINE_MASTER_KEY``, before it
is sent to PostgreSQL, and decrypted here after it is read back: the database, its backups,
replicas, ``pg_dump`` output and statement log only ever see ciphertext. Each ciphertext is
AES-256-GCM under a fresh 96-bit nonce, with the secret's name and owner as associated data,
so a row copied onto another name or owner (or altered in any bit) fails to decrypt instead of
yielding the wrong value.

``JOBLINE_MASTER_KEY`` holds one key, or ``NEW,OLD,...`` during a rotation: the first key seals,
all of them open. Every row records the ``key_id`` (a fingerprint, never the key) it was sealed
under, so :func:`rotate` knows which rows still need re-sealing.

Everything here is pure except :func:`load`, which awaits the store it is given (anything with
``secret_get_many``), so this module imports nothing from ``db/``. Setting, listing and rotating
secrets are operations (operations/secrets.py).

>>> keys = MasterKeys.parse(generate_key())
>>> sealed = seal(keys, "api_token", "s3cr3t-value")
>>> open_sealed(keys, "api_token", sealed)
's3cr3t-value'
>>> substitute({"Authorization": "Bearer {{secret:api_token}}"}, {"{{secret:api_token}}": "s3cr3t-value"})
{'Authorization': 'Bearer s3cr3t-value'}
>>> scrub("401 for token s3cr3t-value", {"{{secret:api_token}}": "s3cr3t-value"})
'401 for token {{secret:api_token}}'
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import re
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, InvalidInput, SecretError, SecretNotFound

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

VARIABLE = "JOBLINE_MASTER_KEY"
KEY_BYTES = 32            # AES-256
NONCE_BYTES = 12          # 96 bits, GCM's native nonce size
MAX_VALUE_BYTES = 65536   # a token, a password, a URL or a PEM key; not a file store
MAX_PER_USER = 100        # secrets one user may hold (users may set their own over HTTP)
NAME_RULES = "1 to 200 characters of letters, digits, '_', '.' and '-'"
NAME = re.compile(r"[A-Za-z0-9_.\-]{1,200}")
# {{secret:NAME}}: the operator's secret; {{owner_secret:NAME}}: the job owner's. Resolved
# values are keyed by the reference's whole text, which is also what scrubbing writes back.
REFERENCE = re.compile(r"\{\{(secret|owner_secret):([A-Za-z0-9_.\-]+)\}\}")
OPERATOR, OWNER = "secret", "owner_secret"
# Values shorter than this are not scrubbed from outputs: replacing every "abc" or "42" in an
# error message or a response body would mangle ordinary text and, worse, point at where a
# short secret occurs. Such values are not secrets worth the name anyway.
MIN_SCRUB_LENGTH = 4

NO_KEY_MESSAGE = ("no master key: create one with `jobline secrets generate-key` and set "
                  f"{VARIABLE} to it")
_KEY_ID_LABEL = b"jobline-master-key-id\x00"
_AAD_LABEL = b"jobline-secret\x00"
_BASE64 = re.compile(r"[A-Za-z0-9_\-+/]+={0,2}")


def generate_key() -> str:
    """A new master key: 32 random bytes as urlsafe base64 (44 characters).

    >>> len(generate_key())
    44
    """
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def key_id_of(material: bytes) -> str:
    """The fingerprint stored beside each ciphertext: 16 hex characters of SHA-256 over a fixed
    label and the key. It identifies a key without revealing anything usable about it."""
    return hashlib.sha256(_KEY_ID_LABEL + material).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class MasterKey:
    key_id: str
    aead: AESGCM = dataclasses.field(repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class MasterKeys:
    """The keys of ``JOBLINE_MASTER_KEY``, in order: ``current`` seals, every key opens."""

    keys: tuple[MasterKey, ...]

    @classmethod
    def parse(cls, text: str) -> MasterKeys:
        """Parse ``"KEY"`` or ``"NEW,OLD,..."``; raise ConfigError saying which entry is wrong
        and how (never echoing the key).

        >>> keys = MasterKeys.parse(f"{generate_key()},{generate_key()}")
        >>> len(keys.ids), keys.current.key_id == keys.ids[0]
        (2, True)
        """
        # cryptography costs a process about 7 MB: it loads with the first key, not with jobline.
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        entries = text.split(",")
        keys: dict[str, MasterKey] = {}
        for position, entry in enumerate(entries, 1):
            where = VARIABLE if len(entries) == 1 else f"entry {position} of {VARIABLE}"
            material = _decode_key(entry.strip(), where)
            key_id = key_id_of(material)
            keys.setdefault(key_id, MasterKey(key_id, AESGCM(material)))  # a repeated key is harmless
        return cls(tuple(keys.values()))

    @classmethod
    def from_settings(cls, settings: Any) -> MasterKeys:
        """The keys of ``settings.master_key``; ConfigError saying how to create one if unset."""
        if not getattr(settings, "master_key", None):
            raise ConfigError(NO_KEY_MESSAGE)
        return cls.parse(settings.master_key)

    @property
    def current(self) -> MasterKey:
        return self.keys[0]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(key.key_id for key in self.keys)

    def find(self, key_id: str) -> MasterKey | None:
        return next((key for key in self.keys if key.key_id == key_id), None)


def _decode_key(entry: str, where: str) -> bytes:
    advice = "create a key with `jobline secrets generate-key`"
    if not entry:
        raise ConfigError(f"{where} is empty; {VARIABLE} holds one key, or 'NEW,OLD' during a rotation")
    if not _BASE64.fullmatch(entry):
        raise ConfigError(f"{where} is not base64 (a master key is 32 random bytes in urlsafe base64); {advice}")
    # Standard base64 (openssl rand -base64 32) is accepted too, padded or not.
    normalised = entry.rstrip("=").replace("+", "-").replace("/", "_")
    try:
        material = base64.urlsafe_b64decode(normalised + "=" * (-len(normalised) % 4))
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where} is not valid base64 (a master key is 32 random bytes in urlsafe "
                          f"base64); {advice}") from None  # the cause could quote the key
    if len(material) != KEY_BYTES:
        raise ConfigError(f"{where} decodes to {len(material)} bytes; a master key is {KEY_BYTES} random "
                          f"bytes in urlsafe base64: {advice}")
    return material


# -- names and values ---------------------------------------------------------------------------


def check_name(name: Any) -> str:
    """Return ``name`` if it follows the rules (the same CHECK is on the table), else InvalidInput."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        shown = name[:60] + "..." if isinstance(name, str) and len(name) > 60 else name
        raise InvalidInput(f"a secret's name must be {NAME_RULES}; got {shown!r}")
    return name


def check_value(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"a secret's value must be text, got {type(value).__name__}")
    if not value:
        raise InvalidInput("a secret's value must not be empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        # A lone surrogate: what Python makes of invalid UTF-8 in argv or a terminal. It could
        # not be sealed (or sent in a request); the message must not quote the value.
        raise InvalidInput("a secret's value must be valid UTF-8 text") from None
    if size > MAX_VALUE_BYTES:
        raise InvalidInput(f"a secret's value must be at most {MAX_VALUE_BYTES // 1024} KiB, got {size} bytes")
    return value


# -- sealing ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sealed:
    """A secret as stored: the id of the key it is sealed under, the nonce, and the ciphertext
    (with GCM's 16-byte tag at its end)."""

    key_id: str
    nonce: bytes
    ciphertext: bytes = dataclasses.field(repr=False)


def _aad(name: str, owner: str | None) -> bytes:
    # The name and owner are authenticated with the value: a row moved to another name or owner
    # does not open. An operator's secret has the name alone (as before owners existed); no
    # name holds a NUL, so the two forms never collide.
    aad = _AAD_LABEL + name.encode("utf-8")
    return aad if owner is None else aad + b"\x00" + owner.encode("utf-8")


def describe(name: str, owner: str | None) -> str:
    """How messages name a secret: "secret 'x'", or "user 'u1''s secret 'x'"."""
    return f"secret {name!r}" if owner is None else f"user {owner!r}'s secret {name!r}"


def set_command(name: str, owner: str | None) -> str:
    return f"`jobline secrets set {name}`" if owner is None else f"`jobline secrets set {name} --owner {owner}`"


def seal(keys: MasterKeys, name: str, plaintext: str, owner: str | None = None) -> Sealed:
    """Encrypt ``plaintext`` for the secret ``name`` of ``owner`` (None: the operator's) under
    the current master key."""
    check_name(name)
    check_value(plaintext)
    key = keys.current
    # Random nonces are safe for 2**32 seals per key (NIST SP 800-38D); a vault is far below.
    nonce = os.urandom(NONCE_BYTES)
    return Sealed(key.key_id, nonce, key.aead.encrypt(nonce, plaintext.encode("utf-8"), _aad(name, owner)))


def open_sealed(keys: MasterKeys, name: str, sealed: Sealed, owner: str | None = None) -> str:
    """Decrypt the secret ``name`` of ``owner``; SecretError (naming the secret, never the value
    or the key) when its key is not among ``keys`` or the row was altered or moved."""
    what = describe(name, owner)
    key = keys.find(sealed.key_id)
    if key is None:
        raise SecretError(
            f"{what} is encrypted under master key {sealed.key_id}, which is not in {VARIABLE} "
            f"(it holds {', '.join(keys.ids)}); put that key after the current one ({VARIABLE}=NEW,OLD) "
            f"and run `jobline secrets rotate-key`, or set the secret again with {set_command(name, owner)}")
    from cryptography.exceptions import InvalidTag  # loaded already: `keys` holds AESGCM objects

    try:
        data = key.aead.decrypt(bytes(sealed.nonce), bytes(sealed.ciphertext), _aad(name, owner))
    except (InvalidTag, ValueError) as exc:
        raise SecretError(
            f"{what} cannot be decrypted with master key {sealed.key_id}: its row was altered or "
            f"copied from another secret; set it again with {set_command(name, owner)}") from exc
    return data.decode("utf-8")


# -- references ---------------------------------------------------------------------------------


def _walk(value: Any, on_text: Callable[[str], str]) -> Any:
    """A copy of ``value`` with ``on_text`` applied to every string in it, dict keys included."""
    if isinstance(value, str):
        return on_text(value)
    if isinstance(value, Mapping):
        return {_walk(k, on_text): _walk(v, on_text) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_walk(v, on_text) for v in value)
    return value


def reference(name: str, *, owner: bool = False) -> str:
    """The text that references a secret: ``{{secret:NAME}}``, or ``{{owner_secret:NAME}}``
    for the job owner's."""
    return "{{" + (OWNER if owner else OPERATOR) + ":" + name + "}}"


def references(value: Any) -> set[str]:
    """The references (their whole text) anywhere in a str/dict/list.

    >>> sorted(references({"url": "https://x/{{secret:a}}", "headers": {"X": "{{owner_secret:b}}"}}))
    ['{{owner_secret:b}}', '{{secret:a}}']
    """
    found: set[str] = set()

    def collect(text: str) -> str:
        found.update(match[0] for match in REFERENCE.finditer(text))
        return text

    _walk(value, collect)
    return found


def substitute(value: Any, resolved: Mapping[str, str]) -> Any:
    """A copy of ``value`` with every reference replaced by its plaintext from ``resolved``
    (reference text -> value, as :func:`load` returns it); a reference missing there raises
    SecretNotFound. Keep the result in memory only."""
    missing = sorted(references(value) - set(resolved))
    if missing:
        raise SecretNotFound(f"not resolved: {', '.join(missing)}")  # load() says which secrets do not exist
    return _walk(value, lambda text: REFERENCE.sub(lambda m: resolved[m[0]], text))


def _encoded_forms(plaintext: str) -> set[str]:
    """The ways a value shows up in text an HTTP exchange produces: raw, percent-encoded (as
    urllib and most clients write it, upper- or lower-case hex), and JSON-escaped."""
    percent = {urllib.parse.quote(plaintext, safe=""), urllib.parse.quote(plaintext),
               urllib.parse.quote_plus(plaintext), urllib.parse.quote_plus(plaintext, safe="/")}
    percent |= {re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), form) for form in percent}
    escaped = {json.dumps(plaintext)[1:-1], json.dumps(plaintext, ensure_ascii=False)[1:-1]}
    escaped |= {form.replace("/", "\\/") for form in escaped}  # encoders that escape '/' too
    return {plaintext} | percent | escaped


# What WHATWG URL parsers (httpx among them) leave unencoded in a path and in a query: every
# printable ASCII character except these. urllib.parse.quote encodes far more.
_PATH_KEPT = "".join(chr(i) for i in range(0x21, 0x7F) if chr(i) not in '"#<>?`{}%')
_QUERY_KEPT = "".join(chr(i) for i in range(0x21, 0x7F) if chr(i) not in '"#<>%')
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)(.*)\Z", re.DOTALL)
_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def _url_forms(plaintext: str) -> set[str]:
    """How a value that is a URL (or a host name, or part of one) reads once a URL client has
    normalised it: the host in lower case and IDNA, the default port dropped, the rest
    percent-encoded as a path or query is. For a URL its origin and host count too: they
    are part of the value, and error messages name them on their own."""
    match = _URL.match(plaintext)
    if match is None:
        return _host_forms(plaintext)
    scheme, authority, rest = match[1].lower(), match[2], match[3]
    hostport = authority.rpartition("@")[2]
    host, port = hostport, ""
    if hostport.startswith("[") and "]" in hostport:
        host, _, tail = hostport.partition("]")
        host, port = host + "]", tail.removeprefix(":")
    elif ":" in hostport:
        host, port = hostport.rsplit(":", 1)
    default = _DEFAULT_PORTS.get(scheme)
    ports = {f":{port}", f":{port.lstrip('0')}"} if port else {""}
    if default and (not port or port.lstrip("0") == default):  # the default port is dropped, or added
        ports |= {"", f":{default}"}
    rests = {rest, urllib.parse.quote(rest, safe=_PATH_KEPT + "?%"),
             urllib.parse.quote(rest, safe=_QUERY_KEPT + "%")}
    hosts = _host_forms(host)
    forms = set(hosts)
    for name in hosts | {host}:
        for shown_port in ports:
            origin = f"{scheme}://{name}{shown_port}"
            forms.add(origin)
            forms.update(origin + tail for tail in rests)
    return forms


def _host_forms(host: str) -> set[str]:
    forms = {host.lower(), host.lower().removesuffix(".")}
    try:
        forms.add(host.lower().encode("idna").decode("ascii"))  # bücher.example -> xn--bcher-kva.example
    except UnicodeError:
        pass
    return forms


def _python_forms(plaintext: str) -> set[str]:
    """The value inside the repr() of a str or of its UTF-8 bytes, in either quote style:
    exception messages (h11's, urllib's, ours before) quote what they reject that way."""

    def char(c: str, quote: str, ascii_only: bool) -> str:
        if c in ("\\", quote):
            return "\\" + c
        if c in "'\"":
            return c
        return (ascii(c) if ascii_only else repr(c))[1:-1]

    def byte(b: int, quote: str) -> str:
        c = chr(b)
        if c in ("\\", quote):
            return "\\" + c
        if c in "'\"":
            return c
        return repr(bytes([b]))[2:-1]

    forms = set()
    for quote in ("'", '"'):
        forms.add("".join(char(c, quote, False) for c in plaintext))
        forms.add("".join(char(c, quote, True) for c in plaintext))
        forms.add("".join(byte(b, quote) for b in plaintext.encode("utf-8")))
    return forms


def _all_forms(plaintext: str) -> set[str]:
    forms = _encoded_forms(plaintext) | _python_forms(plaintext) | _url_forms(plaintext)
    for kept in (_PATH_KEPT, _QUERY_KEPT):  # percent-encoded as httpx writes a path or a query
        forms |= {urllib.parse.quote(plaintext, safe=kept), urllib.parse.quote(plaintext, safe=kept + "%")}
    return {form for form in forms if len(form) >= MIN_SCRUB_LENGTH}


_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_\-]+")
_HEX_RUN = re.compile(r"[0-9A-Fa-f]+")


def _decoded_runs(text: str, shortest: int) -> Iterator[bytes]:
    """What each run of base64 (standard or urlsafe) or hex characters in ``text`` decodes to,
    at every alignment (a value may sit anywhere in the encoded bytes), for runs long enough to
    hold a value of ``shortest`` bytes."""
    for run in _BASE64_RUN.findall(text):
        if len(run) * 3 // 4 >= shortest:
            standard = run.replace("-", "+").replace("_", "/")
            for offset in range(4):
                chunk = standard[offset:]
                if len(chunk) % 4 == 1:  # one character past a whole group encodes no byte
                    chunk = chunk[:-1]
                yield base64.b64decode(chunk + "=" * (-len(chunk) % 4))
    for run in _HEX_RUN.findall(text):
        if len(run) // 2 >= shortest:
            for offset in range(2):
                chunk = run[offset:]
                yield bytes.fromhex(chunk[: len(chunk) - len(chunk) % 2])


_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|[\\'\"/nrtbf])")
_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}


def _unescaped(text: str) -> str:
    def one(m: re.Match) -> str:
        code = m[1]
        if code[0] in "xuU":
            value = int(code[1:], 16)
            return chr(value) if value <= 0x10FFFF else m[0]
        return _SIMPLE_ESCAPES.get(code, code)

    return _ESCAPE.sub(one, text)


class Scrubber:
    """Finds the values of some secrets in text a call produced, and replaces them.

    A value is recognised whole, in any letter case, in every form an HTTP exchange or an
    error message is known to give it: as it is, percent-encoded (as urllib writes it, or as
    httpx writes a path or a query), JSON-escaped, and inside the repr() of a str or bytes.
    A value that is a URL is also recognised as a URL client normalises it (host in lower case
    and IDNA, default port dropped), and so are its origin and its host on their own; a value
    that is not a URL is also recognised in its IDNA form. Each occurrence becomes the
    reference it was resolved from (``{{secret:NAME}}``). Values shorter than
    ``MIN_SCRUB_LENGTH`` are left alone (see there why). :meth:`reveals` also looks through
    percent-encoding, backslash escapes, base64 and hex, for text to withhold whole.

    >>> Scrubber({"{{secret:base}}": "https://API.Example.com:443"}).scrub("GET https://api.example.com/v1")
    'GET {{secret:base}}/v1'
    """

    def __init__(self, secrets: Mapping[str, str]):
        """``secrets``: reference text -> plaintext, as :func:`load` returns them."""
        forms: dict[str, tuple[str, str]] = {}  # lower case -> (form, reference): one of each, any case
        for ref, plaintext in sorted(secrets.items()):
            if len(plaintext) >= MIN_SCRUB_LENGTH:
                for form in _all_forms(plaintext):
                    forms.setdefault(form.lower(), (form, ref))
        self._values = sorted({v.encode("utf-8") for v in secrets.values() if len(v) >= MIN_SCRUB_LENGTH})
        # Longest first: at any position the regex takes the first alternative that matches, so
        # a value that contains another secret's value is replaced whole.
        ordered = sorted(forms.values(), key=lambda entry: (-len(entry[0]), entry[0]))
        self._references = [""] + [ref for _, ref in ordered]  # by group number
        self._pattern = (re.compile("|".join(f"({re.escape(form)})" for form, _ in ordered), re.IGNORECASE)
                         if ordered else None)
        # A match is as many characters as its form (case-insensitive matching is one character
        # for one), and a character is at most 4 bytes of UTF-8.
        self.margin_bytes = 4 * len(ordered[0][0]) if ordered else 0

    def __bool__(self) -> bool:
        return self._pattern is not None

    def scrub(self, value: Any) -> Any:
        """A copy of a str/dict/list with every occurrence replaced (dict keys included)."""
        return _walk(value, lambda text: self._replace(text, len(text)))

    def scrub_cut(self, text: str, limit: int) -> str:
        """The first ``limit`` characters of ``text``, scrubbed. An occurrence that starts
        before ``limit`` is replaced whole, even where it runs past it, so a cut never leaves
        part of a value behind; ``text`` must therefore extend far enough past ``limit`` to hold
        any occurrence that starts before it (``margin_bytes`` more, as UTF-8)."""
        return self._replace(text, limit)

    def reveals(self, text: str) -> bool:
        """Whether ``text`` shows a value in a recognised form, also once percent-decoded, with
        backslash escapes read, or inside base64 or hex (a last check before text that may
        quote a secret is kept)."""
        if self._pattern is None:
            return False
        # Placeholders out of the way first: a value may also be a word of "{{secret:NAME}}".
        text = REFERENCE.sub("\ufffe", text)
        unescaped = _unescaped(text)
        variants = {text, urllib.parse.unquote(text), urllib.parse.unquote_plus(text), unescaped}
        try:  # b'\xc3\xa9' read back as the UTF-8 it is
            variants.add(unescaped.encode("latin-1").decode("utf-8"))
        except UnicodeError:
            pass
        if any(self._pattern.search(variant) for variant in variants):
            return True
        shortest = len(self._values[0]) if self._values else 0
        return any(value in decoded for decoded in _decoded_runs(text, shortest) for value in self._values)

    def _replace(self, text: str, limit: int) -> str:
        if self._pattern is None:
            return text[:limit]
        out: list[str] = []
        position = 0
        for start, end, refs in self._spans(text, limit):
            out.append(text[position:start])
            out.append("".join(refs))
            position = end
        if position < limit:
            out.append(text[position:limit])
        return "".join(out)

    def _spans(self, text: str, limit: int) -> Iterator[tuple[int, int, list[str]]]:
        """(start, end, references) of each occurrence starting before ``limit``; occurrences that
        overlap (two values sharing characters, or one value repeating into itself) are one
        span, so no part of either is left."""
        assert self._pattern is not None
        # Placeholders already in the text stay as they are, even if a value is a word of one.
        placeholders = [m.span() for m in REFERENCE.finditer(text)] if "{{" in text else []
        search = 0
        while True:
            found = self._pattern.search(text, search)
            if found is None or found.start() >= limit:
                return
            start, end = found.span()
            around = next((span for span in placeholders if span[0] <= start and end <= span[1]), None)
            if around is not None:
                search = around[1]
                continue
            refs = [self._references[found.lastindex or 0]]
            inner = start + 1
            while inner < end:
                more = self._pattern.match(text, inner)
                if more is not None and more.end() > end:
                    end = more.end()
                    if self._references[more.lastindex or 0] not in refs:
                        refs.append(self._references[more.lastindex or 0])
                inner += 1
            yield start, end, refs
            search = end


def scrub(value: Any, secrets: Mapping[str, str]) -> Any:
    """A copy of a str/dict/list in which every occurrence of a secret's value is replaced by
    ``{{secret:NAME}}``, in every form :class:`Scrubber` recognises. Values shorter than
    ``MIN_SCRUB_LENGTH`` are left alone (see there why)."""
    return Scrubber(secrets).scrub(value)


def missing_message(names: Iterable[str], owner: str | None = None) -> str:
    names = sorted(names)
    whose = "" if owner is None else f"user {owner!r} has no "
    if len(names) == 1:
        what = f"secret {names[0]!r}"
        return (f"{what} does not exist; set it with {set_command(names[0], owner)}" if owner is None
                else f"{whose}{what}; set it with {set_command(names[0], owner)}")
    listed = ", ".join(repr(n) for n in names)
    if owner is None:
        return f"secrets {listed} do not exist; set each with `jobline secrets set NAME`"
    return f"{whose}secrets {listed}; set each with `jobline secrets set NAME --owner {owner}`"


# -- with a store -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SecretInfo:
    """What may be shown about a secret: everything but its value."""

    name: str
    owner: str | None     # None: the operator's
    key_id: str
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> SecretInfo:
        return cls(row["name"], row["owner"], row["key_id"], row["created_at"], row["updated_at"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the field names of the CLI's --json (and the HTTP API)."""
        return {"name": self.name, "owner": self.owner, "key_id": self.key_id,
                "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat()}


def sealed_from_row(row: Mapping[str, Any]) -> Sealed:
    return Sealed(row["key_id"], bytes(row["nonce"]), bytes(row["ciphertext"]))


def split(refs: Iterable[str]) -> tuple[set[str], set[str]]:
    """The names that ``refs`` (reference texts) give of the operator's secrets, and of the job
    owner's.

    >>> split({"{{secret:a}}", "{{owner_secret:b}}"})
    ({'a'}, {'b'})
    """
    operator: set[str] = set()
    owners: set[str] = set()
    for ref in refs:
        kind, name = REFERENCE.fullmatch(ref).groups()
        (owners if kind == OWNER else operator).add(name)
    return operator, owners


async def load(store: Any, keys: MasterKeys, refs: Iterable[str], owner: str | None = None) -> dict[str, str]:
    """Fetch and decrypt the secrets that ``refs`` name: ``{{secret:NAME}}`` the operator's,
    ``{{owner_secret:NAME}}`` those of ``owner`` (the job's owner; the caller refuses such a
    reference when there is none). Returns reference text -> plaintext; SecretNotFound lists
    every missing name. Keep the result in memory only.

    >>> keys = MasterKeys.from_settings(app.settings)  # doctest: +SKIP
    >>> secrets = await load(app.store, keys, {"{{secret:api_token}}"})  # doctest: +SKIP
    """
    operator_names, owner_names = split(refs)
    if owner_names and owner is None:
        raise InvalidInput("{{owner_secret:...}} names the job owner's secret, and this call has no owner")
    resolved: dict[str, str] = {}
    for names, whose, owned in ((operator_names, None, False), (owner_names, owner, True)):
        if not names:
            continue
        rows = {row["name"]: row for row in await store.secret_get_many(sorted(names), owner=whose)}
        missing = sorted(names - set(rows))
        if missing:
            raise SecretNotFound(missing_message(missing, whose))
        for name, row in rows.items():
            resolved[reference(name, owner=owned)] = open_sealed(keys, name, sealed_from_row(row), whose)
    return resolved
