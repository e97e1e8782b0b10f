"""The outbound safety policy (egress.py): classification, the allow-list, URL checks. Pure."""

from __future__ import annotations

import ipaddress

import pytest

from jobline import ConfigError
from jobline.egress import Policy, classify, legacy_ipv4
from jobline.errors import DestinationBlocked, InvalidInput
from jobline.functions.http_sender import retry_after
from jobline.settings import Settings

ALWAYS = [
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("::1", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("::", "unspecified"),
    ("169.254.0.1", "link-local"),
    ("fe80::1", "link-local"),
    ("169.254.169.254", "cloud metadata"),
    ("fd00:ec2::254", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"),
    ("192.0.2.10", "documentation"),
    ("2001:db8::1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("100::1", "reserved"),             # discard prefix, outside 2000::/3
    ("::7f00:1", "reserved"),           # IPv4-compatible (deprecated) form of 127.0.0.1
    # IPv6 forms that embed an IPv4 address are judged by it.
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:169.254.169.254", "cloud metadata"),
    ("64:ff9b::7f00:1", "loopback address inside a NAT64"),
    ("64:ff9b::a9fe:a9fe", "cloud metadata address inside a NAT64"),
    ("2002:7f00:1::", "loopback address inside a 6to4"),
    ("2002:a9fe:a9fe::1", "cloud metadata address inside a 6to4"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback address inside a Teredo"),  # client 127.0.0.1
]
PRIVATE = [
    ("10.0.0.1", "RFC 1918"),
    ("172.16.0.1", "RFC 1918"),
    ("172.31.255.254", "RFC 1918"),
    ("192.168.1.1", "RFC 1918"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("fc00::1", "unique local"),
    ("fd12:3456::1", "unique local"),
    ("::ffff:10.0.0.1", "RFC 1918"),
    ("2002:a00:1::", "RFC 1918) inside a 6to4"),
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "64:ff9b::808:808",
          "2002:808:808::1", "::ffff:8.8.8.8", "2001:0:4136:e378:8000:63bf:f7f7:f7f7"]


@pytest.mark.parametrize(("address", "words"), ALWAYS)
def test_always_refused_ranges(address, words):
    verdict = classify(ipaddress.ip_address(address))
    assert verdict is not None and not verdict.private
    assert words in verdict.rule


@pytest.mark.parametrize(("address", "words"), PRIVATE)
def test_private_ranges_are_refused_unless_allowed(address, words):
    verdict = classify(ipaddress.ip_address(address))
    assert verdict is not None and verdict.private and words in verdict.rule
    with pytest.raises(DestinationBlocked, match="JOBLINE_HTTP_ALLOW_PRIVATE=on"):
        Policy().check_address(ipaddress.ip_address(address), address)
    Policy(allow_private=True).check_address(ipaddress.ip_address(address), address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address):
    assert classify(ipaddress.ip_address(address)) is None
    Policy().check_address(ipaddress.ip_address(address), address)


def test_allow_private_does_not_open_loopback_or_metadata():
    policy = Policy(allow_private=True)
    for address in ("127.0.0.1", "169.254.169.254", "::1", "fd00:ec2::254"):
        with pytest.raises(DestinationBlocked):
            policy.check_address(ipaddress.ip_address(address), address)


def test_allow_list_parses_hosts_addresses_and_networks():
    policy = Policy.parse(" 127.0.0.0/8 , Api.Internal., ::1, 10.17.17.17, [fd00::1], ::ffff:192.168.0.0/112")
    assert policy.hosts == {"api.internal"}
    assert [str(n) for n in policy.networks] == ["127.0.0.0/8", "::1/128", "10.17.17.17/32", "fd00::1/128",
                                                  "192.168.0.0/16"]
    assert Policy.parse("").hosts == frozenset() and Policy.parse(None).networks == ()


@pytest.mark.parametrize("entry", ["127.0.0.0/33", "10.0.0.300", "not a host", "http://x", "fe80::zz", "a..b"])
def test_bad_allow_entry_is_a_config_error_naming_it(entry):
    with pytest.raises(ConfigError, match="JOBLINE_HTTP_ALLOW") as caught:
        Policy.parse(f"127.0.0.1,{entry}")
    assert repr(entry) in str(caught.value)
    with pytest.raises(ConfigError, match="JOBLINE_HTTP_ALLOW"):
        Settings.from_env({"JOBLINE_HTTP_ALLOW": entry})


def test_allow_list_allows_exactly_what_it_names():
    policy = Policy.parse("10.17.17.17/32, 127.0.0.0/8, api.internal")
    policy.check_address(ipaddress.ip_address("10.17.17.17"), "10.17.17.17")
    policy.check_address(ipaddress.ip_address("::ffff:127.0.0.2"), "::ffff:127.0.0.2")  # mapped: normalised
    policy.check_address(ipaddress.ip_address("10.0.0.5"), "API.internal")  # a listed name, any address
    for address in ("10.17.17.18", "169.254.169.254", "::1"):
        with pytest.raises(DestinationBlocked):
            policy.check_address(ipaddress.ip_address(address), "other.example")


def test_refusal_names_host_address_rule_and_how_to_allow():
    with pytest.raises(DestinationBlocked) as caught:
        Policy().check_address(ipaddress.ip_address("10.1.2.3"), "db.internal")
    error = caught.value
    assert (error.code, error.host, error.address) == ("destination_blocked", "db.internal", "10.1.2.3")
    assert isinstance(error, InvalidInput)
    message = str(error)
    assert "db.internal (10.1.2.3)" in message and "RFC 1918" in message and "10.0.0.0/8" in message
    assert "add 10.1.2.3 (or a network containing it) to JOBLINE_HTTP_ALLOW" in message


@pytest.mark.parametrize(("spelling", "address"), [
    ("127.1", "127.0.0.1"), ("2130706433", "127.0.0.1"), ("0x7f000001", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"), ("0x7f.1", "127.0.0.1"), ("10.0x10.1", "10.16.0.1"), ("0", "0.0.0.0"),
])
def test_legacy_ipv4_spellings_are_read_as_addresses(spelling, address):
    assert legacy_ipv4(spelling) == ipaddress.IPv4Address(address)


@pytest.mark.parametrize("name", ["example.com", "1.2.3.4.5", "256.1.1.1", "08.1.1.1", "0x", "1e3", "4294967296"])
def test_names_are_not_taken_for_legacy_addresses(name):
    assert legacy_ipv4(name) is None


@pytest.mark.parametrize(("url", "rule"), [
    ("http://127.0.0.1:8080/", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://127.1/", "loopback"),
    ("http://2130706433/", "loopback"),
    ("http://0x7f000001/", "loopback"),
    ("http://0177.0.0.1/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[64:ff9b::7f00:1]/", "NAT64"),
    ("http://[2002:7f00:1::]/", "6to4"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://[fd00:ec2::254]/", "cloud metadata"),
    ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata host"),
    ("http://METADATA.GOOGLE.INTERNAL./", "cloud metadata host"),
    ("http://10.0.0.1/", "RFC 1918"),
    ("http://172.16.0.1/", "RFC 1918"),
    ("http://192.168.1.1/", "RFC 1918"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://[example.com]/", "malformed URL"),
    ("file:///etc/passwd", "scheme"),
    ("gopher://example.com/", "scheme"),
    ("ftp://example.com/", "scheme"),
    ("dict://example.com:11211/", "scheme"),
    ("example.com/path", "scheme"),
    ("http://user:pass@evil.example/", "credentials in URL"),
    ("https://token@evil.example/", "credentials in URL"),
    ("http:///nohost", "malformed URL"),
    ("http://example.com:99999/", "malformed URL"),
])
def test_check_url_refuses_before_any_lookup(url, rule):
    with pytest.raises(DestinationBlocked) as caught:
        Policy().check_url(url)
    assert rule in caught.value.rule
    assert caught.value.code == "destination_blocked"


def test_check_url_accepts_public_and_named_hosts_for_later_resolution():
    destination = Policy().check_url("https://API.example.com/v1?q=1")
    assert (destination.scheme, destination.host, destination.port, destination.address) == (
        "https", "api.example.com", 443, None)
    assert Policy().check_url("http://93.184.216.34:8080/").port == 8080
    assert Policy.parse("127.0.0.0/8").check_url("http://127.1:9/").address == ipaddress.IPv4Address("127.0.0.1")
    assert Policy.parse("metadata.google.internal").check_url("http://metadata.google.internal/").port == 80


def test_retry_after_reads_seconds_and_http_dates_capped_at_a_day():
    import datetime as dt

    now = dt.datetime(2026, 1, 31, 3, 0, 0, tzinfo=dt.timezone.utc)
    assert retry_after("7") == 7.0
    assert retry_after(" 120 ") == 120.0
    assert retry_after("Sat, 31 Jan 2026 03:00:30 GMT", now) == 30.0
    assert retry_after("Fri, 30 Jan 2026 03:00:00 GMT", now) == 0.0       # in the past: now
    assert retry_after("999999999") == 86400.0
    assert retry_after(None) is None and retry_after("-1") is None and retry_after("soon") is None


SECRET_HOST = "Qx\\Zq'\"Wv.internal"


@pytest.mark.parametrize(("url", "written", "words"), [
    ("gopher://h/Qx\\Zq'\"Wv", "gopher://h/{{secret:w}}", "gopher://"),
    ("zz-Qx-Wv://h/", "{{secret:w}}/", "a scheme other than http:// or https://"),
    ("http://h:99999/Qx\\Zq", "http://h:99999/{{secret:w}}", "its port is not a number"),
    ("http://10.11.12.13:8080", "{{secret:w}}", "private address (RFC 1918) in 10.0.0.0/8"),
    ("http://[64:ff9b::a0b:c0d]/", "{{secret:w}}", "inside a NAT64 address"),
    ("http://METADATA.goog/", "{{secret:w}}", "cloud metadata host"),
    ("http://[Qx.internal]/", "{{secret:w}}", "malformed"),
])
def test_a_url_from_a_secret_is_refused_naming_the_written_form_only(url, written, words):
    with pytest.raises(DestinationBlocked) as caught:
        Policy().check_url(url, written)
    error = caught.value
    message = str(error)
    assert written in message and words in message, message
    assert "once its secrets are filled in" in message or "filled in from a secret" in message
    assert error.host is None and error.address is None
    for piece in ("Qx", "Zq", "Wv", "10.11", "8080", "a0b", "10.11.12.13", "METADATA", "goog/", "zz-"):
        assert piece not in message and piece not in error.rule, (piece, message)


def test_an_address_from_a_secret_is_refused_without_naming_it_or_its_host():
    with pytest.raises(DestinationBlocked) as caught:
        Policy().check_address(ipaddress.ip_address("127.0.0.1"), "api.secret-host.example", "{{secret:u}}/x")
    message = str(caught.value)
    assert message.startswith("destination '{{secret:u}}/x' blocked: its host (filled in from a secret) is a "
                              "loopback address in 127.0.0.0/8")
    assert "add that host, or its address (or a network containing it), to JOBLINE_HTTP_ALLOW" in message
    assert "secret-host" not in message and "127.0.0.1" not in message


def test_an_embedded_ipv4_address_is_named_in_the_message_but_not_in_the_rule():
    with pytest.raises(DestinationBlocked) as caught:
        Policy().check_address(ipaddress.ip_address("64:ff9b::7f00:1"), "64:ff9b::7f00:1")
    assert "inside a NAT64 address (127.0.0.1)" in str(caught.value)
    assert caught.value.rule == "a loopback address inside a NAT64 address"


def test_a_host_written_out_is_named_though_a_secret_fills_in_the_rest_of_the_url():
    with pytest.raises(DestinationBlocked) as caught:
        Policy().check_url("http://10.1.2.3/tok-value", "http://10.1.2.3/{{secret:t}}")
    assert str(caught.value).startswith("destination 10.1.2.3 blocked: ") and caught.value.address == "10.1.2.3"
    assert "tok-value" not in str(caught.value)
    with pytest.raises(DestinationBlocked, match="has a scheme other than"):
        Policy().check_url("zz-tok://h/", "{{secret:u}}")
    with pytest.raises(DestinationBlocked, match="has zz-x://"):
        Policy().check_url("zz-x://h/tok-value", "zz-x://h/{{secret:t}}")
