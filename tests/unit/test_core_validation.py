"""Pure code: validation of enqueue input, backoff maths, settings."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from jobline.errors import ConfigError, InvalidInput
from jobline.job import encode_payload, new_job, parse_payload, parse_run_at
from jobline.retry import Backoff
from jobline.settings import Settings, forwarded_proxies


@pytest.mark.parametrize("name", ["", " lead", "trail ", "tab\there", "nul\x00", "x" * 201, 42, None])
def test_bad_function_names_are_refused(name):
    with pytest.raises(InvalidInput, match="function name"):
        new_job(name)


@pytest.mark.parametrize("name", ["it's", 'say "hi"', "ünïcode ✓", "a/b:c", "x" * 200])
def test_names_with_quotes_and_unicode_are_kept_verbatim(name):
    assert new_job(name).function == name


@pytest.mark.parametrize("payload, message", [
    ([1, 2], "JSON object"), ("text", "JSON object"), ({"x": object()}, "not JSON-serialisable"),
    ({"x": math.nan}, "not JSON-serialisable"), ({"x": "a\x00b"}, "NUL"),
    ({"big": "y" * (1024 * 1024)}, "limit is 1048576 bytes"),
])
def test_bad_payloads_are_refused_with_the_reason(payload, message):
    with pytest.raises(InvalidInput, match=message):
        encode_payload(payload)


@pytest.mark.parametrize("options, message", [
    ({"priority": 1001}, "priority"), ({"priority": True}, "priority"), ({"max_attempts": 0}, "max_attempts"),
    ({"delay": -1}, "delay"), ({"delay": 1e12}, "delay"), ({"queue": "q" * 101}, "queue"),
    ({"run_at": dt.datetime.now(), "delay": 5}, "either run_at or delay"), ({"depends_on": ["1"]}, "depends_on"),
    ({"owner": ""}, "owner"), ({"unique_key": "k\n"}, "unique_key"),
    ({"unique_key": "jobline-notification-1-1"}, "jobline keeps for its own jobs"),
    ({"run_at": parse_run_at("9999-12-31T23:59:59-14:00")}, "outside the years 1 to 9999"),
    ({"run_at": parse_run_at("0001-01-01T00:00:00+14:00")}, "outside the years 1 to 9999"),
])
def test_bad_options_are_refused_naming_the_option(options, message):
    with pytest.raises(InvalidInput, match=message):
        new_job("f", **options)


def test_naive_run_at_is_utc_and_depends_on_is_deduplicated():
    job = new_job("f", run_at=dt.datetime(2030, 1, 1, 3), depends_on=[3, 1, 3])
    assert job.run_at.tzinfo is dt.timezone.utc and job.depends_on == (3, 1)


def test_parse_payload_and_run_at_say_what_is_wrong():
    with pytest.raises(InvalidInput, match="line 1 column 6"):
        parse_payload('{"a":')
    with pytest.raises(InvalidInput, match="JSON object"):
        parse_payload("[1]")
    assert parse_run_at("2026-01-31T03:00:00Z") == dt.datetime(2026, 1, 31, 3, tzinfo=dt.timezone.utc)
    with pytest.raises(InvalidInput, match="ISO 8601"):
        parse_run_at("tomorrow")


def test_backoff_grows_is_capped_and_jitters_within_bounds():
    backoff = Backoff(base=2, factor=2, max_delay=10, jitter=0.1)
    assert backoff.bounds(1) == pytest.approx((1.8, 2.2))
    assert backoff.bounds(3) == pytest.approx((7.2, 8.8))
    assert backoff.bounds(50) == pytest.approx((9, 11))
    assert backoff.bounds(10**6) == pytest.approx((9, 11))
    delays = [backoff.delay(2) for _ in range(200)]
    assert all(3.6 <= d <= 4.4 for d in delays) and len(set(delays)) > 100


@pytest.mark.parametrize("options", [{"base": -1}, {"factor": 0.5}, {"max_delay": 1, "base": 2}, {"jitter": 1}])
def test_backoff_refuses_absurd_settings(options):
    with pytest.raises(InvalidInput):
        Backoff(**options)


def test_settings_from_env_convert_and_validate():
    settings = Settings.from_env({"JOBLINE_CONCURRENCY": "20", "JOBLINE_WORKER_SYNCHRONOUS_COMMIT": "on"})
    assert settings.concurrency == 20 and settings.worker_synchronous_commit is True
    for env, message in [({"JOBLINE_CONCURRENCY": "many"}, "JOBLINE_CONCURRENCY must be a number"),
                         ({"JOBLINE_CONCURRENCY": "0"}, "concurrency"),
                         ({"JOBLINE_LEASE_SECONDS": "0"}, "JOBLINE_LEASE_SECONDS"),
                         ({"JOBLINE_WORKER_SYNCHRONOUS_COMMIT": "maybe"}, "on or off")]:
        with pytest.raises(ConfigError, match=message):
            Settings.from_env(env)


def test_forwarded_allow_ips_is_off_by_default_and_takes_addresses_and_networks():
    assert Settings.from_env({}).forwarded_allow_ips is None
    value = "10.0.0.0/8, 192.0.2.7,::1"
    assert Settings.from_env({"JOBLINE_FORWARDED_ALLOW_IPS": value}).forwarded_allow_ips == value
    assert forwarded_proxies(value) == ["10.0.0.0/8", "192.0.2.7", "::1"]


@pytest.mark.parametrize("value", ["*", "127.0.0.1,*", "proxy.internal", "10.0.0.1/8", "10.0.0.0/33", "127.0.0.1,,"])
def test_a_bad_forwarded_allow_ips_is_a_config_error_naming_the_variable(value):
    with pytest.raises(ConfigError, match="JOBLINE_FORWARDED_ALLOW_IPS") as caught:
        Settings.from_env({"JOBLINE_FORWARDED_ALLOW_IPS": value})
    assert "Traceback" not in str(caught.value)


def test_pool_timeout_and_handler_connections_settings_are_read_and_validated():
    settings = Settings.from_env({"JOBLINE_POOL_TIMEOUT": "2.5", "JOBLINE_HANDLER_CONNECTIONS": "3"})
    assert settings.pool_timeout == 2.5 and settings.handler_connections == 3
    defaults = Settings.from_env({})
    assert defaults.pool_timeout == 30 and defaults.handler_connections == 10
    for env, message in [({"JOBLINE_POOL_TIMEOUT": "soon"}, "JOBLINE_POOL_TIMEOUT must be a number"),
                         ({"JOBLINE_POOL_TIMEOUT": "0"}, "JOBLINE_POOL_TIMEOUT must be between 0.1 and 3600"),
                         ({"JOBLINE_POOL_TIMEOUT": "7200"}, "JOBLINE_POOL_TIMEOUT must be between"),
                         ({"JOBLINE_HANDLER_CONNECTIONS": "2.5"}, "JOBLINE_HANDLER_CONNECTIONS must be a number"),
                         ({"JOBLINE_HANDLER_CONNECTIONS": "0"}, "JOBLINE_HANDLER_CONNECTIONS must be between 1 and 1000")]:
        with pytest.raises(ConfigError, match=message):
            Settings.from_env(env)


def test_prepared_statements_setting_reads_on_and_off():
    assert Settings.from_env({"JOBLINE_PREPARED_STATEMENTS": "off"}).prepared_statements is False
    assert Settings.from_env({}).prepared_statements is True


def test_listen_database_url_is_unset_by_default_and_validated_naming_its_variable():
    assert Settings.from_env({}).listen_database_url is None
    url = "postgresql://app:s3cret@db-direct:5432/jobs"
    assert Settings.from_env({"JOBLINE_LISTEN_DATABASE_URL": url}).listen_database_url == url
    with pytest.raises(ConfigError, match="JOBLINE_LISTEN_DATABASE_URL is malformed") as caught:
        Settings.from_env({"JOBLINE_LISTEN_DATABASE_URL": "postgresql://app:p@ss@db:5432/jobs"})
    assert "p@ss" not in str(caught.value)


def test_a_workers_default_concurrency_follows_its_handlers_kind_unless_set():
    from jobline import App
    from jobline.runtime.registry import ASYNC_CONCURRENCY, SYNC_CONCURRENCY

    app = App("postgresql://nobody@127.0.0.1:1/none")

    @app.function("fetch")
    async def fetch(payload):
        return None

    assert app.registry.default_concurrency() == ASYNC_CONCURRENCY == 100  # the built-ins are async too

    @app.function("resize")
    def resize(payload):
        return None

    assert app.registry.default_concurrency() == SYNC_CONCURRENCY == 20
    assert Settings.from_env({}).concurrency is None
    assert Settings.from_env({"JOBLINE_CONCURRENCY": "7"}).concurrency == 7
