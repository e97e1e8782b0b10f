"""Property-based run of schemathesis against the /openapi.json of a running server, bounded
in time (reliability.md S6, the in-suite version): data that fits the spec and data that does
not, with the service key, a user's JWT and no credential. No answer may be a 5xx; every error has the error shape; and every
answer to valid data matches the status codes and schemas the spec documents.

A longer run takes its budget and examples per operation from JOBLINE_FUZZ_SECONDS and
JOBLINE_FUZZ_EXAMPLES."""

from __future__ import annotations

import dataclasses
import os
import time

import pytest
import schemathesis
from api_support import SERVICE, Server, api_settings, as_user
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from jobline import App, vault

# In the suite: about 40 s. A longer run: JOBLINE_FUZZ_SECONDS=900 JOBLINE_FUZZ_EXAMPLES=1000.
BUDGET_SECONDS = float(os.environ.get("JOBLINE_FUZZ_SECONDS", 40))
MAX_EXAMPLES = int(os.environ.get("JOBLINE_FUZZ_EXAMPLES", 60))
# Who calls, and the share of the budget: most for the service, which reaches every route.
CALLERS = {"service": (SERVICE, 0.6), "user": (as_user("fuzz-user"), 0.25), "anonymous": ({}, 0.15)}


class OutOfTime(Exception):
    """This operation's share of the budget is spent."""


def only_echo(app: App) -> App:
    """Functions that never fail by design: the gateway's 502/503/504 answers are its contract
    (test_api_functions covers them), not server errors."""

    @app.function("echo")
    def echo(payload):
        return payload

    return app


@pytest.fixture
def fuzz_server(settings):
    # With a master key, so that PUT /api/secrets stores what it is sent (without one it is 503).
    fuzz_settings = dataclasses.replace(api_settings(settings), master_key=vault.generate_key())
    running = Server(fuzz_settings, functions=only_echo, auth_failure_limit=1_000_000).start()
    yield running
    running.stop()


@pytest.mark.parametrize("caller", list(CALLERS))
def test_schemathesis_finds_no_server_error(fuzz_server, caller):
    headers, share = CALLERS[caller]
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 16
    runs = [(op, mode) for op in operations for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
    began = time.monotonic()
    slice_seconds = BUDGET_SECONDS * share / len(runs)
    calls = 0
    for index, (operation, mode) in enumerate(runs):
        # Each run gets its share of the budget, plus whatever earlier runs left unused.
        stop_at = began + slice_seconds * (index + 1)
        sent_here = 0

        @given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis_settings(max_examples=MAX_EXAMPLES, deadline=None, phases=[Phase.generate], database=None,
                             suppress_health_check=list(HealthCheck))
        def check(case):
            nonlocal calls, sent_here
            if sent_here and time.monotonic() > stop_at:  # every operation gets at least one request
                raise OutOfTime  # not `return`: hypothesis would still generate its other examples
            sent_here += 1
            response = case.call(base_url=fuzz_server.url, headers=headers, timeout=30)
            calls += 1
            where = f"{case.method} {case.formatted_path} ({mode.value}): {response.status_code} {response.text[:300]}"
            assert response.status_code < 500, where
            assert "Traceback" not in response.text, where
            if response.status_code >= 400:
                body = response.json()
                assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, where
            if mode is GenerationMode.POSITIVE:
                case.validate_response(response, checks=[status_code_conformance, response_schema_conformance])

        try:
            check()
        except OutOfTime:
            pass
        except Unsatisfiable:  # nothing in this operation can be made invalid (e.g. GET /healthz)
            assert mode is GenerationMode.NEGATIVE, operation.label
            continue
        # However busy the machine, every operation was tried (how many times depends on speed,
        # which is not what this test is about).
        assert sent_here >= 1, (operation.label, mode)
    print(f"schemathesis: {calls} requests in {time.monotonic() - began:.1f} s")
