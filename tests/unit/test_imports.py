"""Imports flow one way: cli → app → runtime → db (STYLE.md section 1)."""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).parents[2] / "src" / "jobline"


def imports_of(path: pathlib.Path) -> set[str]:
    """Modules a file imports, as paths inside the package (e.g. 'runtime.worker')."""
    module = path.relative_to(PACKAGE).with_suffix("").parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(module[: len(module) - node.level])
            target = ".".join(base + ([node.module] if node.module else []))
            found.add(target)
            found.update(f"{target}.{alias.name}" if target else alias.name for alias in node.names)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            found.update(n.removeprefix("jobline.") for n in names if n and n.startswith("jobline."))
    return found


def violations(layer: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in (PACKAGE / layer).rglob("*.py"):
        for target in imports_of(path):
            if target.split(".")[0] in forbidden:
                bad.append(f"{path.relative_to(PACKAGE)} imports {target}")
    return bad


def test_db_never_imports_runtime_app_or_interfaces():
    assert violations("db", ("runtime", "app", "cli", "demo")) == []


def test_runtime_never_imports_app_or_interfaces():
    assert violations("runtime", ("app", "cli", "demo")) == []


def test_nothing_outside_cli_imports_cli():
    bad = [f"{p.relative_to(PACKAGE)}" for p in PACKAGE.rglob("*.py")
           if "cli" not in p.relative_to(PACKAGE).parts and p.name != "__main__.py"
           and any(t.split(".")[0] == "cli" for t in imports_of(p))]
    assert bad == []


def test_the_core_never_imports_the_http_api():
    """api/ calls the core; nothing outside api/ (and the CLI that serves it) imports api/."""
    bad = [f"{p.relative_to(PACKAGE)} imports {t}" for p in PACKAGE.rglob("*.py")
           if not {"api", "cli"} & set(p.relative_to(PACKAGE).parts)
           for t in imports_of(p) if t.split(".")[0] == "api"]
    assert bad == []


def test_only_the_cli_and_the_package_root_import_the_client():
    """client/ uses the core; only the CLI (`worker --remote`) and `jobline` itself (which exports
    Client) import it."""
    bad = [f"{p.relative_to(PACKAGE)}" for p in PACKAGE.rglob("*.py")
           if p.relative_to(PACKAGE).parts[0] not in ("cli", "client", "__init__.py")
           and any(t.split(".")[0] == "client" for t in imports_of(p))]
    assert bad == []


INTERFACES = ("api", "cli", "client", "dashboard")


def test_interfaces_act_through_the_operations_layer_never_the_store():
    """The API, CLI, dashboard and Client call operations/ (or App); none reaches the Store, whose
    methods apply no owner rule (STYLE.md section 1)."""
    bad = []
    for layer in INTERFACES:
        for path in (PACKAGE / layer).rglob("*.py"):
            bad += [f"{path.relative_to(PACKAGE)} imports {t}" for t in imports_of(path) if t.startswith("db.store")]
            bad += [f"{path.relative_to(PACKAGE)}:{node.lineno} uses .store" for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.Attribute) and node.attr == "store"]
    assert bad == []


def test_the_operations_layer_imports_no_interface():
    assert violations("operations", INTERFACES + ("app", "demo")) == []


# The package's top level holds pure leaves (no I/O), and the facade and entry points named here;
# whatever does I/O lives in a layer's folder (db/ runtime/ operations/ functions/ interfaces).
NOT_LEAVES = {"__init__.py", "__main__.py", "app.py", "demo.py", "_sync.py"}


def test_top_level_modules_are_pure_leaves():
    layers = ("db", "runtime", "operations", "functions", *INTERFACES, "app", "demo")
    bad = [f"{p.name} imports {t}" for p in PACKAGE.glob("*.py") if p.name not in NOT_LEAVES
           for t in imports_of(p) if t.split(".")[0] in layers]
    assert bad == []


# Loaded only by a process that uses them: httpx (and httpcore, anyio, h11, click under it) by
# the first outbound call or Client request, cryptography by the first master key, PyJWT by the
# first JWT; the API, the dashboard and the CLI by `jobline serve` and the `jobline` command.
# Together about 19 MB of a worker's memory (issue 12). OpenTelemetry (the otel extra) is never
# imported by jobline: it traces only when the application has imported it and set a provider.
HEAVY = ("httpx", "httpcore", "anyio", "h11", "click", "cryptography", "jwt", "fastapi", "starlette", "uvicorn",
         "jinja2", "opentelemetry", "prometheus_client")


def loaded_after(code: str) -> list[str]:
    """Which of HEAVY a fresh interpreter holds after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "JOBLINE_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_import_jobline_loads_no_optional_dependency():
    assert loaded_after("import jobline") == []


def test_an_app_and_its_worker_load_no_optional_dependency_until_used():
    """Registering functions (an HTTP function's checks included) and building a worker, as a
    worker process does before its first job; the store is never opened."""
    code = """
import jobline
from jobline.db.store import Store
from jobline.runtime.worker import Worker
app = jobline.App()
app.function("noop")(lambda payload: None)
app.http_function("hook", url="https://example.com/hook", headers={"Authorization": "Bearer {{secret:t}}"})
Worker(Store(app.settings.database_url), app.registry, app.settings)
"""
    assert loaded_after(code) == []


def test_the_probe_sees_what_a_sender_loads():
    """The check above would pass vacuously if the probe could not see a module load."""
    assert {"httpx", "click"} <= set(loaded_after("import jobline.functions.http_sender"))
