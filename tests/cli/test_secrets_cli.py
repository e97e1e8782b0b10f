"""`jobline secrets ...` as a user runs it: a real process, real output, exit statuses."""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import sys
import time

import pytest

import canary
from jobline import vault
from jobline.vault import MasterKeys

OLD = vault.generate_key()
NEW = vault.generate_key()
CANARY = "canary-cli-5b1e-Quokka!/+=&value"


@pytest.fixture
def jobline(db_url):
    def run(*args: str, key: str | None = NEW, stdin: str | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "JOBLINE_DATABASE_URL": db_url, "JOBLINE_LOG_LEVEL": "warning",
               "PYTHONPATH": os.path.join(os.path.dirname(__file__), "..")}
        env.pop("JOBLINE_MASTER_KEY", None)
        if key is not None:
            env["JOBLINE_MASTER_KEY"] = key
        return subprocess.run([sys.executable, "-m", "jobline", *args], env=env, capture_output=True, text=True,
                              input=stdin if stdin is not None else "", timeout=60)

    return run


def key_id(key: str) -> str:
    return MasterKeys.parse(key).current.key_id


def test_generate_key_prints_only_a_valid_key(jobline):
    first, second = jobline("secrets", "generate-key", key=None), jobline("secrets", "generate-key", key=None)
    assert first.returncode == 0 and first.stderr == ""
    lines = first.stdout.splitlines()
    assert len(lines) == 1 and first.stdout == lines[0] + "\n"
    assert len(base64.urlsafe_b64decode(lines[0])) == 32
    MasterKeys.parse(lines[0])
    assert first.stdout != second.stdout


def test_set_from_an_argument_and_from_stdin_then_ls_shows_names_not_values(jobline, sql):
    made = jobline("secrets", "set", "api_token", "from-argument-value")
    assert made.returncode == 0, made.stderr
    assert made.stdout == f"set secret api_token (master key {key_id(NEW)})\n"
    piped = jobline("secrets", "set", "db_password", "--from-stdin", "--json", stdin=CANARY + "\n")
    assert piped.returncode == 0, piped.stderr
    shown = json.loads(piped.stdout)
    assert set(shown) == {"name", "owner", "key_id", "created_at", "updated_at"} and shown["name"] == "db_password"

    listed = jobline("secrets", "ls", "--json", key=None)
    assert listed.returncode == 0, listed.stderr
    assert [(s["name"], s["key_id"]) for s in json.loads(listed.stdout)] == [
        ("api_token", key_id(NEW)), ("db_password", key_id(NEW))]
    table = jobline("secrets", "ls")
    assert table.stdout.splitlines()[0].split() == ["NAME", "KEY_ID", "CREATED_AT", "UPDATED_AT", "NOTE"]
    assert "db_password" in table.stdout
    for output in (made, piped, listed, table):
        assert CANARY not in output.stdout + output.stderr and "from-argument-value" not in output.stdout

    rows = sql("SELECT name, ciphertext FROM jobline.secrets ORDER BY name")
    assert [name for name, _ in rows] == ["api_token", "db_password"]
    assert CANARY.encode() not in bytes(rows[1][1])


async def test_stdin_loses_exactly_one_trailing_newline(jobline, app, settings):
    import dataclasses

    assert jobline("secrets", "set", "two_lines", "--from-stdin", stdin="line one\nline two\n\n").returncode == 0
    assert jobline("secrets", "set", "crlf", "--from-stdin", stdin="windows-value\r\n").returncode == 0
    assert jobline("secrets", "set", "bare", "--from-stdin", stdin="no-newline").returncode == 0
    keys = MasterKeys.from_settings(dataclasses.replace(settings, master_key=NEW))
    assert await canary.load_by_name(app.store, keys, ["two_lines", "crlf", "bare"]) == {
        "two_lines": "line one\nline two\n", "crlf": "windows-value", "bare": "no-newline"}


def test_set_replaces_a_value_and_rm_deletes_it(jobline):
    assert jobline("secrets", "set", "token", "value-one").returncode == 0
    assert jobline("secrets", "set", "token", "value-two").returncode == 0
    assert len(json.loads(jobline("secrets", "ls", "--json").stdout)) == 1
    removed = jobline("secrets", "rm", "token", "--json", key=None)
    assert removed.returncode == 0, removed.stderr
    assert json.loads(removed.stdout) == {"name": "token", "owner": None, "deleted": True}
    assert jobline("secrets", "ls").stdout == "no secrets\n"
    again = jobline("secrets", "rm", "token")
    assert (again.returncode, again.stdout) == (3, "")
    assert again.stderr == "error: no secret named 'token'; `jobline secrets ls` lists them\n"


def test_rotate_key_moves_every_secret_to_the_new_key(jobline):
    for index in range(3):
        assert jobline("secrets", "set", f"s{index}", f"value-{index}", key=OLD).returncode == 0
    noted = jobline("secrets", "ls", key=f"{NEW},{OLD}").stdout
    assert noted.count("older key: run `jobline secrets rotate-key`") == 3
    assert jobline("secrets", "ls", key=NEW).stdout.count("key not in JOBLINE_MASTER_KEY") == 3
    rotated = jobline("secrets", "rotate-key", key=f"{NEW},{OLD}")
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.splitlines() == [
        f"rotated 3 secret(s) to master key {key_id(NEW)}; 0 already under it",
        "every secret is now under the first key: JOBLINE_MASTER_KEY can drop the others"]
    again = jobline("secrets", "rotate-key", "--json", key=NEW)
    assert json.loads(again.stdout) == {"key_id": key_id(NEW), "rotated": 0, "current": 3}
    listed = json.loads(jobline("secrets", "ls", "--json").stdout)
    assert {s["key_id"] for s in listed} == {key_id(NEW)}


def test_rotate_key_without_the_old_key_names_the_secrets_it_could_not_move(jobline):
    assert jobline("secrets", "set", "orphan", "orphan-value", key=OLD).returncode == 0
    result = jobline("secrets", "rotate-key", key=NEW)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(f"error: rotated 0 secret(s) to master key {key_id(NEW)}, but not all; "
                                    f"secret 'orphan' is encrypted under master key {key_id(OLD)}")
    assert len(result.stderr.splitlines()) == 1 and "orphan-value" not in result.stderr


NO_KEY = ("error: no master key: create one with `jobline secrets generate-key` and set JOBLINE_MASTER_KEY "
          "to it\n")


@pytest.mark.parametrize("args", [["secrets", "set", "token", "value"], ["secrets", "set", "token", "--from-stdin"],
                                  ["secrets", "rotate-key"]])
def test_commands_that_need_the_key_say_how_to_create_one(jobline, args):
    result = jobline(*args, key=None, stdin="value\n")
    assert (result.returncode, result.stdout, result.stderr) == (1, "", NO_KEY)


def test_a_malformed_key_is_refused_without_echoing_it(jobline):
    bad = base64.urlsafe_b64encode(os.urandom(16)).decode()
    result = jobline("secrets", "set", "token", "value", key=f"{NEW},{bad}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr == ("error: entry 2 of JOBLINE_MASTER_KEY decodes to 16 bytes; a master key is 32 random "
                             "bytes in urlsafe base64: create a key with `jobline secrets generate-key`\n")
    assert bad not in result.stderr and NEW not in result.stderr
    listed = jobline("jobs", "list", key=bad)  # every command that uses the settings says so
    assert listed.returncode == 1 and "JOBLINE_MASTER_KEY" in listed.stderr
    fresh = jobline("secrets", "generate-key", key=bad)  # but the way out still works
    assert fresh.returncode == 0 and vault.MasterKeys.parse(fresh.stdout.strip())


@pytest.mark.parametrize("args, stdin, message", [
    (["secrets", "set", "bad name", "value"], "", "a secret's name must be 1 to 200 characters"),
    (["secrets", "set", "token", "--from-stdin"], "\n", "the value of secret 'token' is empty"),
    (["secrets", "set", "token", ""], "", "the value of secret 'token' is empty"),
    (["secrets", "set", "token", "value", "--from-stdin"], "x", "not both"),
    (["secrets", "set", "token"], "", "no value given: `jobline secrets set token --from-stdin`"),
    (["secrets", "rm", "no/such"], "", "a secret's name must be"),
])
def test_bad_input_gets_one_line_and_exit_status_2(jobline, args, stdin, message):
    result = jobline(*args, stdin=stdin)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.splitlines()) == 1 and result.stdout == ""


def test_without_a_value_a_terminal_is_asked_twice_without_echo(db_url, sql):
    """On a terminal, `secrets set NAME` prompts with hidden input (and a confirmation)."""
    primary, secondary = os.openpty()
    env = {**os.environ, "JOBLINE_DATABASE_URL": db_url, "JOBLINE_MASTER_KEY": NEW, "JOBLINE_LOG_LEVEL": "warning"}
    process = subprocess.Popen([sys.executable, "-m", "jobline", "secrets", "set", "typed"], env=env,
                               stdin=secondary, stdout=secondary, stderr=secondary, start_new_session=True)
    os.close(secondary)
    seen = b""
    try:
        for prompt in (b"value of typed: ", b"Repeat for confirmation: "):
            seen = _read_until(primary, seen, prompt)
            os.write(primary, CANARY.encode() + b"\n")
        seen = _read_until(primary, seen, b"set secret typed")
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(primary)
    assert CANARY.encode() not in seen  # not echoed
    assert sql("SELECT name FROM jobline.secrets") == [("typed",)]


def _read_until(fd: int, seen: bytes, wanted: bytes, timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"no {wanted!r} within {timeout} s; output so far: {seen!r}")
        seen += os.read(fd, 4096)
    return seen


def test_set_with_an_invalid_utf8_value_prints_one_error_line(db_url):
    env = {**os.environ, "JOBLINE_DATABASE_URL": db_url, "JOBLINE_MASTER_KEY": NEW, "JOBLINE_LOG_LEVEL": "warning"}
    done = subprocess.run([sys.executable, "-m", "jobline", "secrets", "set", "token", b"ab\xffcd"], env=env,
                          capture_output=True, input=b"", timeout=60)
    assert (done.returncode, done.stderr.decode(), done.stdout) == (
        2, "error: a secret's value must be valid UTF-8 text\n", b"")
