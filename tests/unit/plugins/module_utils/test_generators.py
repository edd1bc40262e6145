"""Kinds, formats and the password symbol set of module_utils.generators."""
from __future__ import annotations

import base64
import shlex
import subprocess
from urllib.parse import urlsplit

import pytest
import yaml

from ansible_collections.datamancy.stack.plugins.module_utils import generators as g
from ansible_collections.datamancy.stack.plugins.module_utils.envfile import quote_value


def test_symbol_set_is_the_documented_one():
    assert g.PASSWORD_SYMBOLS == "-_.+=,"


@pytest.mark.parametrize("symbol", list(g.PASSWORD_SYMBOLS))
def test_each_symbol_survives_shell_yaml_env_and_url(symbol):
    value = "Ab1" + symbol + "cD2" + symbol
    # shell: an unquoted word and a double-quoted word both come back unchanged from a real sh
    out = subprocess.run(["sh", "-c", "printf '%s|' " + value + ' "' + value + '"'], capture_output=True,
                         text=True, check=True).stdout
    assert out == value + "|" + value + "|"
    assert shlex.split(value) == [value]
    # YAML: plain, single- and double-quoted scalars
    for text in (value, "'" + value + "'", '"' + value + '"'):
        assert yaml.safe_load("k: " + text) == {"k": value}
    # env files: written bare, i.e. identical for docker --env-file, compose and systemd
    assert quote_value("K", value) == value
    # URL userinfo: usable unencoded in a DATABASE_URL
    assert urlsplit("postgres://user:" + value + "@db:5432/app").password == value


def test_generated_passwords_are_safe_everywhere():
    for dummy in range(300):
        value = g.generate_password(16, symbols=True)
        assert len(value) == 16
        assert value[0] in g.PASSWORD_ALPHANUMERIC
        assert any(c.islower() for c in value) and any(c.isupper() for c in value)
        assert any(c.isdigit() for c in value) and any(c in g.PASSWORD_SYMBOLS for c in value)
        assert set(value) <= set(g.PASSWORD_ALPHANUMERIC + g.PASSWORD_SYMBOLS)
        assert yaml.safe_load("k: " + value) == {"k": value}
        assert shlex.split(value) == [value]
        assert quote_value("K", value) == value


def test_password_without_symbols_is_alphanumeric():
    for dummy in range(50):
        assert g.generate_password(12).isalnum()


@pytest.mark.parametrize("spec, message", [
    ({"name": "x", "kind": "nope"}, "unknown kind 'nope'"),
    ({"name": "x", "kind": "hex", "bytes": 15}, "bytes=15 is out of range"),
    ({"name": "x", "kind": "base64", "bytes": 2048}, "bytes=2048 is out of range"),
    ({"name": "x", "kind": "password", "length": 11}, "length=11 is out of range"),
    ({"name": "x", "kind": "rsa", "size": 1024}, "RSA size 1024 is not supported"),
    ({"name": "x", "kind": "digest"}, "needs derive_from"),
    ({"name": "x", "kind": "digest", "derive_from": "x"}, "cannot name the secret itself"),
    ({"name": "x", "kind": "digest", "derive_from": "y", "scheme": "md5"}, "unknown scheme 'md5'"),
    ({"name": "x", "kind": "digest", "derive_from": "y", "rounds": 1000}, "rounds=1000 is too low"),
    ({"name": "x", "kind": "hex", "derive_from": "y"}, "only valid with kind digest"),
    ({"name": "../etc", "kind": "hex"}, "secret name '../etc' is invalid"),
    ({"name": "a.meta", "kind": "hex"}, "is invalid"),
    # "$" would match before a trailing newline: the store would get a file named "x\n".
    ({"name": "x\n", "kind": "hex"}, "secret name 'x\\n' is invalid"),
    ({"name": "x", "kind": "api_key", "prefix": "sk-\n"}, "prefix"),
    ({"name": "x", "kind": "api_key", "prefix": "sk $"}, "prefix"),
])
def test_normalize_spec_rejects(spec, message):
    with pytest.raises(g.SpecError, match=pytest.importorskip("re").escape(message)):
        g.normalize_spec(spec)


def test_formats_of_scalar_kinds():
    assert len(g.generate("hex", {"bytes": 16})[0]) == 32
    assert len(base64.b64decode(g.generate("base64", {"bytes": 48})[0])) == 48
    assert len(base64.urlsafe_b64decode(g.generate("urlsafe_base64", {"bytes": 32})[0])) == 32
    key = g.generate("api_key", {"bytes": 32, "prefix": "sk-"})[0]
    assert key.startswith("sk-") and len(key) == 67 and g.HEX_RE.match(key[3:])


@pytest.mark.parametrize("scheme, prefix", [
    ("pbkdf2_sha512", "$pbkdf2-sha512$310000$"),
    ("argon2id", "$argon2id$v=19$m=65536,t=3,p=4$"),
    ("ldap_ssha", "{SSHA}"),
    ("ldap_argon2", "{ARGON2}$argon2id$v=19$"),
])
def test_digests_verify_against_source(scheme, prefix):
    params = {"scheme": scheme, "rounds": 310000}
    digest = g.derive(params, "correct horse")
    assert digest.startswith(prefix)
    assert g.verify_digest(scheme, "correct horse", digest)
    assert not g.verify_digest(scheme, "wrong horse", digest)
    g.check_stored("d", "digest", params, digest)


def test_ssha_is_salted_sha1_of_source():
    import hashlib
    digest = g.derive({"scheme": "ldap_ssha"}, "pw")
    raw = base64.b64decode(digest[len("{SSHA}"):])
    assert hashlib.sha1(b"pw" + raw[20:]).digest() == raw[:20]


def test_source_fingerprint_is_keyed():
    a = g.source_fingerprint(b"k" * 32, "src", "value")
    assert a == g.source_fingerprint(b"k" * 32, "src", "value")
    assert a != g.source_fingerprint(b"j" * 32, "src", "value")
    assert a != g.source_fingerprint(b"k" * 32, "src", "value2")


def test_check_stored_detects_corruption():
    pem = g.generate_rsa_pem(2048)
    g.check_stored("r", "rsa", {"size": 2048}, pem)
    broken = pem.replace(pem.splitlines()[5], "AAAA" * 16)
    for bad in (broken, "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n", ""):
        with pytest.raises(g.CorruptValueError) as info:
            g.check_stored("r", "rsa", {"size": 2048}, bad)
        assert "stored secret 'r' is corrupt" in str(info.value)
        assert pem.splitlines()[1] not in str(info.value)
    with pytest.raises(g.CorruptValueError, match="RSA key size 2048 differs"):
        g.check_stored("r", "rsa", {"size": 4096}, pem)
    with pytest.raises(g.CorruptValueError, match="not lowercase hexadecimal"):
        g.check_stored("h", "hex", {}, "XYZ1")
    with pytest.raises(g.CorruptValueError, match="line break"):
        g.check_stored("h", "hex", {}, "ab\ncd")


def test_single_line_form():
    pem = "-----BEGIN PRIVATE KEY-----\nAAA\nBBB\n-----END PRIVATE KEY-----\n"
    assert g.pem_single_line(pem) == "-----BEGIN PRIVATE KEY-----\\nAAA\\nBBB\\n-----END PRIVATE KEY-----"


def test_rfc7638_thumbprint_vector():
    # RFC 7638 section 3.1 example key and its published thumbprint.
    jwk = {
        "kty": "RSA", "e": "AQAB",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV"
             "4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d"
             "0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-"
             "csFCur-kEgU8awapJzKnqDKgw",
    }
    assert g.jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
