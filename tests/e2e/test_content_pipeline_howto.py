"""docs/howto/content-pipeline.md's script, run as a user would: seed 003's generate -> post ->
schedule against local stand-ins, the post failing once (503) and retried, the run succeeding."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

HOWTO = pathlib.Path(__file__).parents[2] / "docs" / "howto" / "content-pipeline.md"


def test_the_content_pipeline_howto_runs_and_retries_the_failed_post(tmp_path, db_url):
    script = re.search(r"```python\n(.*?)```", HOWTO.read_text(), re.S).group(1)
    (tmp_path / "content_pipeline.py").write_text(script)
    env = {**os.environ, "JOBLINE_DATABASE_URL": db_url, "JOBLINE_LOG_LEVEL": "warning"}
    done = subprocess.run([sys.executable, "content_pipeline.py"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    assert lines[0][2] == "succeeded"
    assert ["post", "succeeded", "attempts=2"] in lines and ["generate", "succeeded", "attempts=1"] in lines
    assert any(line[:2] == ["post", "retrying"] and "503" in line for line in lines)
    assert "'platform': 'linkedin'" in done.stdout and "PostgreSQL queues" in done.stdout
