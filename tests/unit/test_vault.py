"""vault.py, the pure parts: master keys, sealing, references, substitution and scrubbing."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import urllib.parse

import pytest

from jobline import vault
from jobline.errors import ConfigError, InvalidInput, SecretError, SecretNotFound
from jobline.settings import Settings
from jobline.vault import MasterKeys, Sealed, open_sealed, seal

KEY = vault.generate_key()
OTHER = vault.generate_key()


@pytest.fixture
def keys() -> MasterKeys:
    return MasterKeys.parse(KEY)


# -- master keys ---------------------------------------------------------------------------------


def test_generate_key_is_32_random_bytes_in_urlsafe_base64():
    made = {vault.generate_key() for _ in range(100)}
    assert len(made) == 100
    for key in made:
        assert len(base64.urlsafe_b64decode(key)) == 32
        assert MasterKeys.parse(key).current.key_id == vault.key_id_of(base64.urlsafe_b64decode(key))


def test_the_first_key_seals_and_every_key_opens():
    old = MasterKeys.parse(OTHER)
    sealed_under_old = seal(old, "token", "old-value")
    both = MasterKeys.parse(f"{KEY},{OTHER}")
    assert both.ids == (MasterKeys.parse(KEY).current.key_id, old.current.key_id)
    assert open_sealed(both, "token", sealed_under_old) == "old-value"
    assert seal(both, "token", "new-value").key_id == both.current.key_id


def test_key_ids_are_short_hex_fingerprints_that_reveal_nothing_of_the_key():
    key_id = MasterKeys.parse(KEY).current.key_id
    assert len(key_id) == 16 and int(key_id, 16) >= 0
    assert key_id not in base64.urlsafe_b64decode(KEY).hex()


def test_standard_base64_spaces_and_missing_padding_are_accepted():
    material = base64.urlsafe_b64decode(KEY)
    standard = base64.b64encode(material).decode()
    unpadded = KEY.rstrip("=")
    parsed = MasterKeys.parse(f" {standard} , {unpadded}")
    assert parsed.ids == (vault.key_id_of(material),)  # the same key twice is one key


@pytest.mark.parametrize("text, message", [
    ("", "JOBLINE_MASTER_KEY is empty"),
    (f"{KEY},", "entry 2 of JOBLINE_MASTER_KEY is empty"),
    (f"{KEY},,{OTHER}", "entry 2 of JOBLINE_MASTER_KEY is empty"),
    ("not a key!", "JOBLINE_MASTER_KEY is not base64"),
    ("Zm9v*YmFy", "is not base64"),
    ("c2hvcnQ=", "decodes to 5 bytes; a master key is 32 random bytes"),
    (base64.urlsafe_b64encode(os.urandom(33)).decode(), "decodes to 33 bytes"),
    ("A", "is not valid base64"),
], ids=["empty", "trailing comma", "empty middle", "not base64", "star", "short", "long", "truncated"])
def test_bad_master_keys_are_refused_naming_the_entry_but_never_the_key(text, message):
    with pytest.raises(ConfigError, match=message) as caught:
        MasterKeys.parse(text)
    assert "generate-key" in str(caught.value) or "empty" in str(caught.value)
    for entry in text.split(","):
        if len(entry.strip()) > 3:
            assert entry.strip() not in str(caught.value)


def test_without_a_master_key_the_message_says_how_to_create_one():
    with pytest.raises(ConfigError) as caught:
        MasterKeys.from_settings(Settings())
    assert str(caught.value) == ("no master key: create one with `jobline secrets generate-key` and set "
                                 "JOBLINE_MASTER_KEY to it")


def test_settings_read_the_key_validate_it_and_never_print_it():
    settings = Settings.from_env({"JOBLINE_MASTER_KEY": f"{KEY},{OTHER}"})
    assert settings.master_key == f"{KEY},{OTHER}"
    assert KEY not in repr(settings) and OTHER not in repr(settings) and "master_key" not in repr(settings)
    assert Settings.from_env({"JOBLINE_MASTER_KEY": ""}).master_key is None
    with pytest.raises(ConfigError, match="JOBLINE_MASTER_KEY decodes to 5 bytes"):
        Settings.from_env({"JOBLINE_MASTER_KEY": "c2hvcnQ="})
    assert KEY not in repr(MasterKeys.parse(KEY)) and base64.urlsafe_b64decode(KEY).hex() not in repr(
        MasterKeys.parse(KEY))


# -- sealing -------------------------------------------------------------------------------------


def test_seal_then_open_round_trips_unicode_and_long_values(keys):
    for value in ("s3cret", "ünïcödé ✓ \n\t \"quotes\"", "x" * vault.MAX_VALUE_BYTES, "\x00nul"):
        sealed = seal(keys, "name.with-all_chars", value)
        assert sealed.key_id == keys.current.key_id and len(sealed.nonce) == 12
        assert value.encode() not in sealed.ciphertext
        assert open_sealed(keys, "name.with-all_chars", sealed) == value


def test_a_thousand_seals_of_one_value_use_a_thousand_nonces(keys):
    sealed = [seal(keys, "token", "same value") for _ in range(1000)]
    assert len({s.nonce for s in sealed}) == 1000
    assert len({s.ciphertext for s in sealed}) == 1000


@pytest.mark.parametrize("field", ["nonce", "ciphertext", "tag"])
def test_flipping_any_bit_fails_and_names_the_secret(keys, field):
    sealed = seal(keys, "token", "the value")
    for bit in (0, 7, 13):
        if field == "nonce":
            nonce = bytearray(sealed.nonce)
            nonce[bit % len(nonce)] ^= 1 << (bit % 8)
            tampered = dataclasses.replace(sealed, nonce=bytes(nonce))
        else:
            data = bytearray(sealed.ciphertext)
            index = bit % 9 if field == "ciphertext" else len(data) - 1 - bit % 16  # the tag is the last 16
            data[index] ^= 1 << (bit % 8)
            tampered = dataclasses.replace(sealed, ciphertext=bytes(data))
        with pytest.raises(SecretError) as caught:
            open_sealed(keys, "token", tampered)
        message = str(caught.value)
        assert "'token'" in message and "altered" in message and "jobline secrets set token" in message
        assert "the value" not in message and KEY not in message


def test_a_row_moved_to_another_name_does_not_open(keys):
    sealed = seal(keys, "prod_token", "prod-value")
    with pytest.raises(SecretError, match="'dev_token' cannot be decrypted"):
        open_sealed(keys, "dev_token", sealed)


def test_a_row_under_a_key_not_given_says_which_key_and_what_to_do(keys):
    sealed = seal(MasterKeys.parse(OTHER), "token", "value")
    with pytest.raises(SecretError) as caught:
        open_sealed(keys, "token", sealed)
    message = str(caught.value)
    assert sealed.key_id in message and "JOBLINE_MASTER_KEY=NEW,OLD" in message and "'token'" in message
    assert OTHER not in message and KEY not in message


def test_a_truncated_row_fails_cleanly(keys):
    sealed = seal(keys, "token", "value")
    with pytest.raises(SecretError):
        open_sealed(keys, "token", Sealed(sealed.key_id, sealed.nonce[:4], sealed.ciphertext))
    with pytest.raises(SecretError):
        open_sealed(keys, "token", Sealed(sealed.key_id, sealed.nonce, sealed.ciphertext[:10]))


@pytest.mark.parametrize("name", ["", "has space", "slash/no", "brace}", "ü", "x" * 201, None, 42])
def test_bad_secret_names_are_refused(keys, name):
    with pytest.raises(InvalidInput, match="1 to 200 characters of letters, digits"):
        seal(keys, name, "value")


@pytest.mark.parametrize("value, message", [
    ("", "must not be empty"), (b"bytes", "must be text"),
    ("y" * (vault.MAX_VALUE_BYTES + 1), "at most 64 KiB"),
])
def test_bad_values_are_refused_without_echoing_them(keys, value, message):
    with pytest.raises(InvalidInput, match=message) as caught:
        seal(keys, "token", value)
    assert "yyyy" not in str(caught.value)


# -- references, substitution, scrubbing ----------------------------------------------------------


def S(**values: str) -> dict[str, str]:
    """Resolved operator secrets as vault.load returns them: reference text -> value."""
    return {vault.reference(name): value for name, value in values.items()}


CALL = {
    "url": "https://api.example.com/{{secret:project}}/items?key={{secret:api_key}}",
    "headers": {"Authorization": "Bearer {{secret:token}}", "X-{{secret:header_name}}": "1"},
    "body": ["{{secret:token}}", {"nested": "{{secret:a.b-c_d}}"}, 42, None, True],
    "method": "POST",
}


def test_references_walks_strings_dicts_lists_and_dict_keys():
    assert vault.references(CALL) == {vault.reference(n) for n in ("project", "api_key", "token", "header_name", "a.b-c_d")}
    assert vault.references("no refs {{secret:}} {{ secret:x }} {{secret:bad name}}") == set()
    assert vault.references(17) == set()


def test_substitute_replaces_every_reference_and_leaves_the_input_alone():
    secrets = {**S(project="p1", api_key="k&y", token="tok", header_name="Key"), "{{secret:a.b-c_d}}": "deep"}
    done = vault.substitute(CALL, secrets)
    assert done == {
        "url": "https://api.example.com/p1/items?key=k&y",
        "headers": {"Authorization": "Bearer tok", "X-Key": "1"},
        "body": ["tok", {"nested": "deep"}, 42, None, True],
        "method": "POST",
    }
    assert vault.references(CALL) == set(secrets)  # the original still holds references only


def test_substitute_with_a_missing_secret_names_all_that_are_missing():
    with pytest.raises(SecretNotFound) as caught:
        vault.substitute(CALL, S(token="t", project="p"))
    assert str(caught.value) == "not resolved: {{secret:a.b-c_d}}, {{secret:api_key}}, {{secret:header_name}}"


def test_missing_messages_name_whose_secret_and_how_to_set_it():
    assert vault.missing_message(["project_url"]) == (
        "secret 'project_url' does not exist; set it with `jobline secrets set project_url`")
    assert vault.missing_message(["b", "a"]) == (
        "secrets 'a', 'b' do not exist; set each with `jobline secrets set NAME`")
    assert vault.missing_message(["tok"], "user-42") == (
        "user 'user-42' has no secret 'tok'; set it with `jobline secrets set tok --owner user-42`")


def test_references_tell_the_operators_secrets_from_the_job_owners():
    refs = vault.references({"h": "{{secret:a}} {{owner_secret:b}} {{owner_secret:a}} {{user_secret:c}}"})
    assert refs == {"{{secret:a}}", "{{owner_secret:b}}", "{{owner_secret:a}}"}
    assert vault.split(refs) == ({"a"}, {"a", "b"})
    assert vault.substitute("x{{owner_secret:a}}y{{secret:a}}", {"{{owner_secret:a}}": "OWN", "{{secret:a}}": "OP"}) \
        == "xOWNyOP"


def test_scrub_replaces_raw_percent_encoded_and_json_escaped_values():
    value = 'p@ss w/rd"+é'
    secrets = S(db_password=value)
    texts = [
        f"raw {value} end",
        f"quote {urllib.parse.quote(value, safe='')}",
        f"quote/ {urllib.parse.quote(value)}",
        f"plus {urllib.parse.quote_plus(value)}",
        f"lower {urllib.parse.quote(value, safe='').lower()}",
        f"json {json.dumps({'password': value})}",
        f"json-ascii {json.dumps({'password': value}, ensure_ascii=False)}",
    ]
    for text in texts:
        scrubbed = vault.scrub(text, secrets)
        assert "{{secret:db_password}}" in scrubbed, text
        assert "ss w" not in scrubbed and "ss%20w" not in scrubbed and "ss+w" not in scrubbed, scrubbed


def test_scrub_walks_nested_values_and_dict_keys_and_keeps_other_types():
    secrets = S(token="abcd1234")
    value = {"abcd1234": ["x abcd1234 y", 3, None, {"k": "abcd1234abcd1234"}], "n": 1.5}
    assert vault.scrub(value, secrets) == {
        "{{secret:token}}": ["x {{secret:token}} y", 3, None, {"k": "{{secret:token}}{{secret:token}}"}],
        "n": 1.5}
    assert value["abcd1234"][0] == "x abcd1234 y"  # a copy


def test_scrub_prefers_the_longest_value_when_one_contains_another():
    secrets = S(short="abcd", long="abcdefgh")
    assert vault.scrub("abcdefgh abcd", secrets) == "{{secret:long}} {{secret:short}}"


def test_values_shorter_than_four_characters_are_not_scrubbed():
    # Scrubbing "abc" would rewrite every "abc" in ordinary text (and point at where it occurs).
    assert vault.scrub("abc cab abcd", S(tiny="abc", four="abcd")) == "abc cab {{secret:four}}"


def test_scrub_then_substitute_gives_the_original_back():
    secrets = S(token="t0k3n-value")
    original = {"message": "401: token t0k3n-value refused"}
    assert vault.substitute(vault.scrub(original, secrets), secrets) == original


def test_scrub_recognises_a_secret_url_as_a_url_client_normalises_it():
    scrubber = vault.Scrubber(S(base="https://API.Example.com:443", idn="http://Bücher.example"))
    assert scrubber.scrub("https://api.example.com/hook") == "{{secret:base}}/hook"       # lower case, no :443
    assert scrubber.scrub("https://api.example.com:443/hook") == "{{secret:base}}/hook"
    assert scrubber.scrub("certificate is not valid for 'api.example.com'") == (
        "certificate is not valid for '{{secret:base}}'")                                  # the host on its own
    assert scrubber.scrub("http://xn--bcher-kva.example/x") == "{{secret:idn}}/x"          # IDNA
    assert scrubber.scrub("https://API.EXAMPLE.COM:8443/") == "{{secret:base}}:8443/"        # its origin


def test_scrub_recognises_values_quoted_by_repr_and_in_any_case():
    value = "Qx\\Zq'\"Wv-é"
    scrubber = vault.Scrubber(S(weird=value))
    for shown in (repr(value), ascii(value), repr(value.encode()), repr("ftp://x/" + value), value.upper()):
        scrubbed = scrubber.scrub(shown)
        assert "{{secret:weird}}" in scrubbed and "Qx" not in scrubbed and "Zq" not in scrubbed, shown


def test_scrub_cut_replaces_a_value_the_cut_runs_through_whole():
    scrubber = vault.Scrubber(S(tok="0123456789abcdefghij"))
    body = "x" * 50 + "0123456789abcdefghij" + "tail"
    assert scrubber.scrub_cut(body, 60) == "x" * 50 + "{{secret:tok}}"
    assert scrubber.scrub_cut(body, 50) == "x" * 50
    assert scrubber.scrub_cut(body, 72) == "x" * 50 + "{{secret:tok}}ta"
    assert scrubber.margin_bytes >= 4 * len("0123456789abcdefghij")  # room to see a whole value, in bytes
    assert vault.Scrubber({}).scrub_cut("abcdef", 3) == "abc" and vault.Scrubber({}).margin_bytes == 0


def test_overlapping_values_leave_no_part_of_either():
    assert vault.scrub("xxabcdefghyy", S(a="abcdef", b="defghy")) == "xx{{secret:a}}{{secret:b}}y"
    assert vault.scrub("aaaaaa!", S(a="aaaa")) == "{{secret:a}}!"


def test_reveals_sees_values_that_scrubbing_left_in_an_unusual_encoding():
    scrubber = vault.Scrubber(S(tok="tok-S3cr3t"))
    assert scrubber.reveals("/done?t=" + "".join(f"%{b:02X}" for b in b"tok-S3cr3t"))
    assert scrubber.reveals("\\x74ok-S3cr3t")
    assert not scrubber.reveals("{{secret:tok}} and ordinary text")
    assert not vault.Scrubber(S(word="secret")).reveals("{{secret:word}}")  # the placeholder is not the value


def test_a_value_that_is_not_valid_utf8_is_refused_without_echoing_it(keys):
    value = "ab\udcffcd"  # what Python makes of the bytes ab\xffcd in argv
    with pytest.raises(InvalidInput, match="^a secret's value must be valid UTF-8 text$"):
        vault.check_value(value)
    with pytest.raises(InvalidInput, match="valid UTF-8"):
        seal(keys, "token", value)


def test_reveals_sees_a_value_inside_base64_or_hex_at_any_offset():
    value = "tok-S3cr3t-value"
    scrubber = vault.Scrubber(S(tok=value))
    for prefix in (b"", b"u", b"us", b"user:"):  # every alignment of the value in the encoded bytes
        raw = prefix + value.encode() + b"!"
        for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw), base64.b64encode(raw).rstrip(b"="),
                        raw.hex().encode(), raw.hex().upper().encode()):
            assert scrubber.reveals(f"echo: {encoded.decode()} ok"), (prefix, encoded)
    assert scrubber.reveals("x" + value.encode().hex())  # a hex run starting mid-byte
    assert not scrubber.reveals(base64.b64encode(b"tok-S3cr3t-valu").decode())  # not the whole value
    assert not scrubber.reveals("ordinary words, a UUID 0f8fad5b-d9cb-469f-a165-70867728950e and base64 aGVsbG8=")
