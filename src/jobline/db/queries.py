"""The SQL statements of jobline, one file each in ``queries/``, loaded once by name.

``q.JOB_CLAIM_MANY`` is the text of ``queries/job_claim_many.sql``: the same name is used for
the file, the constant and the ``Store`` method, so one grep finds them all.
"""

from __future__ import annotations

from importlib import resources


def _load() -> dict[str, str]:
    folder = resources.files(__package__).joinpath("queries")
    return {
        entry.name.removesuffix(".sql").upper(): entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    }


_QUERIES = _load()
globals().update(_QUERIES)
ALL = dict(_QUERIES)
