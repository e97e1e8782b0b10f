"""Where the database is: JOBLINE_DATABASE_URL, or the embedded PostgreSQL in the data dir."""

from __future__ import annotations

import logging
import re

from ..errors import ConfigError
from ..settings import Settings
from . import migrate

log = logging.getLogger(__name__)


def database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    from .embedded import EmbeddedPostgres, default_data_dir

    return EmbeddedPostgres(settings.data_dir or default_data_dir()).ensure_running()


def ready_database_url(settings: Settings) -> str:
    """A URL whose schema is current. The embedded database is migrated on first use (it is
    jobline's own); a server the user runs must be migrated with ``jobline db migrate``."""
    url = database_url(settings)
    if settings.database_url is None:
        migrate.migrate(url)
        return url
    waiting = migrate.pending(url)
    if waiting:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in waiting)
        raise ConfigError(f"the jobline schema in this database is not up to date (pending: {names}); "
                          "run `jobline db migrate` first")
    return url


_URL_PASSWORD = re.compile(r"(://[^:/@?#]*:)[^@/?#]*@")
_KEY_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")


def shown_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``****`` (for printing and logs).

    >>> shown_url("postgresql://app:s3cret@db:5432/jobs")
    'postgresql://app:****@db:5432/jobs'
    >>> shown_url("host=db password='a b' dbname=jobs")
    'host=db password=**** dbname=jobs'
    """
    url = _URL_PASSWORD.sub(lambda m: m[1] + "****@", url, count=1)
    url = re.sub(r"([?&]password=)[^&#]*", r"\1****", url)
    return _KEY_PASSWORD.sub(lambda m: m[1] + "****", url)
