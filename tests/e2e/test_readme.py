"""The README's quick start, run as a user would: its code blocks, through the real CLI."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import psycopg

README = pathlib.Path(__file__).parents[2] / "README.md"


def code_block(after: str) -> str:
    """The first ```python block following the line containing ``after``."""
    text = README.read_text()
    start = text.index(after)
    match = re.search(r"```python\n(.*?)```", text[start:], re.S)
    return match.group(1)


def jobline(args: list[str], cwd: pathlib.Path, db_url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "JOBLINE_DATABASE_URL": db_url, "JOBLINE_LOG_LEVEL": "warning"}
    return subprocess.run([sys.executable, "-m", "jobline", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_quick_start_tasks_module_runs_through_the_cli(tmp_path, db_url):
    (tmp_path / "tasks.py").write_text(code_block("## Quick start"))
    enqueued = jobline(["--app", "tasks:app", "enqueue", "streak-updater", "--payload", '{"users": [1, 2]}',
                        "--json"], tmp_path, db_url)
    assert enqueued.returncode == 0, enqueued.stderr
    job_id = json.loads(enqueued.stdout)["id"]
    bad = jobline(["--app", "tasks:app", "enqueue", "batch-ai-processor", "--payload", '{"batch_size": 0}'],
                  tmp_path, db_url)
    assert bad.returncode == 0, bad.stderr

    processed = jobline(["--app", "tasks:app", "process", "--json"], tmp_path, db_url)
    assert processed.returncode == 0, processed.stderr
    summary = json.loads(processed.stdout)
    assert summary["processed"] == 2 and summary["succeeded"] == 1 and summary["failed"] == 1

    shown = json.loads(jobline(["jobs", "show", str(job_id), "--json"], tmp_path, db_url).stdout)
    assert shown["status"] == "succeeded" and shown["result"] == {"updated": 2}
    assert [a["outcome"] for a in shown["attempt_history"]] == ["succeeded"]


def test_transactional_enqueue_snippet_from_readme_rolls_back_with_the_transaction(tmp_path, db_url):
    snippet = code_block("Inside your own transaction")
    namespace = {"psycopg": psycopg, "url": db_url}
    exec(compile(code_block("## Quick start"), "tasks.py", "exec"), namespace)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int)")
    body = snippet.replace("INSERT INTO orders ...", "INSERT INTO orders VALUES (42)").replace(
        '"send-receipt"', '"streak-updater"')
    exec(compile(body, "README", "exec"), namespace)
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM jobline.jobs").fetchone()[0] == 1

    failing = body.rstrip("\n") + "\n    raise RuntimeError('rollback')\n"  # inside the with block
    try:
        exec(compile(failing, "README", "exec"), namespace)
    except RuntimeError:
        pass
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM jobline.jobs").fetchone()[0] == 1


def test_readme_sql_block_runs_as_written(sql):
    text = README.read_text()
    block = re.search(r"```sql\n(.*?)```", text[text.index("## SQL"):], re.S).group(1)
    sql("SELECT jobline.enqueue('setup') FROM generate_series(1, 17)")  # the block depends on job 17
    statements = [s.strip() for s in re.sub(r"--[^\n]*", "", block).split(";") if s.strip()]
    for statement in statements:
        sql(statement)
    assert sql("SELECT count(*) FROM jobline.scheduled_tasks WHERE function_name = 'daily-token-reset'") == [(1,)]
    assert sql("SELECT status, owner, priority FROM jobline.jobs WHERE function = 'streak-updater'") == [
        ("waiting", "user-42", 5)]
    assert sql("SELECT jobname, schedule FROM jobline.job") == [("daily-usage-rollup", "5 0 * * *")]
    assert sql("SELECT payload->>'url', payload->'timeout_ms' FROM jobline.jobs WHERE function = 'http'") == [
        ("{{secret:project_url}}/functions/v1/sync", 10000)]
