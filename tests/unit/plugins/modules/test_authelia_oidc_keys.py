"""datamancy.stack.authelia_oidc_keys: HMAC secret, issuer key ring, JWKS, rotation and retirement."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import stat

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ansible_collections.datamancy.stack.plugins.modules import authelia_oidc_keys as oidc_module

PREFIX = "authelia_oidc"


def thumbprint(public_key):
    """RFC 7638 computed independently of the module: {"e","kty","n"} sorted, compact, SHA-256, base64url."""
    numbers = public_key.public_numbers()

    def b64(n):
        return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
    text = '{"e":"%s","kty":"RSA","n":"%s"}' % (b64(numbers.e), b64(numbers.n))
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()


def read(store, suffix):
    return (store / ("%s_%s" % (PREFIX, suffix))).read_text()


@pytest.fixture
def store(tmp_path):
    return tmp_path / "secrets"


def test_default_creates_64_char_hmac_and_rsa4096_issuer_key(run_module, store):
    ok, result = run_module(oidc_module, {"store": str(store)})
    assert ok, result
    assert result["changed"] and result["created"] == ["hmac_secret", "issuer_key"]
    hmac_secret = read(store, "hmac_secret")
    assert len(hmac_secret) == 64 and hmac_secret.isalnum()
    pem = read(store, "issuer_key")
    assert pem.startswith("-----BEGIN PRIVATE KEY-----\n")
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 4096
    assert result["kid"] == thumbprint(key.public_key()) and result["kids"] == [result["kid"]]
    assert read(store, "issuer_key_single_line") == pem.rstrip("\n").replace("\n", "\\n")
    jwks = json.loads(read(store, "jwks"))
    assert jwks == result["jwks"]
    [jwk] = jwks["keys"]
    assert jwk["kid"] == result["kid"] and jwk["alg"] == "RS256" and jwk["use"] == "sig" and "d" not in jwk
    for path in store.iterdir():
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    dumped = json.dumps(result)
    assert hmac_secret not in dumped and pem.splitlines()[1] not in dumped


def test_idempotent_and_key_verifies_with_published_jwk(run_module, store, snapshot):
    args = {"store": str(store), "key_size": 2048}
    ok, first = run_module(oidc_module, args)
    before = snapshot(store)
    ok, second = run_module(oidc_module, args, diff=True)
    assert ok and second["changed"] is False and second["kid"] == first["kid"]
    assert snapshot(store) == before
    # a signature made with the stored private key verifies with the public numbers in the JWKS
    key = serialization.load_pem_private_key(read(store, "issuer_key").encode(), password=None)
    jwk = second["jwks"]["keys"][0]
    n = int.from_bytes(base64.urlsafe_b64decode(jwk["n"] + "=="), "big")
    e = int.from_bytes(base64.urlsafe_b64decode(jwk["e"] + "=="), "big")
    signature = key.sign(b"token", padding.PKCS1v15(), hashes.SHA256())
    rsa.RSAPublicNumbers(e, n).public_key().verify(signature, b"token", padding.PKCS1v15(), hashes.SHA256())


def test_rotation_keeps_previous_key_published_until_retired(run_module, store):
    args = {"store": str(store), "key_size": 2048}
    ok, first = run_module(oidc_module, args)
    hmac_secret = read(store, "hmac_secret")
    ok, rotated = run_module(oidc_module, dict(args, rotate=True), diff=True)
    assert ok and rotated["changed"] and rotated["rotated"] == ["issuer_key"]
    assert rotated["kid"] != first["kid"] and rotated["kids"] == [rotated["kid"], first["kid"]]
    assert [k["kid"] for k in json.loads(read(store, "jwks"))["keys"]] == rotated["kids"]
    assert read(store, "hmac_secret") == hmac_secret  # the HMAC secret only rotates when asked
    active = serialization.load_pem_private_key(read(store, "issuer_key").encode(), password=None)
    assert thumbprint(active.public_key()) == rotated["kid"]
    assert "issuer key: %s (active)" % rotated["kid"] in rotated["diff"]["after"]
    ok, again = run_module(oidc_module, args)
    assert ok and not again["changed"] and again["kids"] == rotated["kids"]
    ok, retired = run_module(oidc_module, dict(args, retire_previous=True))
    assert ok and retired["changed"] and retired["retired"] == [first["kid"]] and retired["kids"] == [rotated["kid"]]
    assert [k["kid"] for k in json.loads(read(store, "jwks"))["keys"]] == [rotated["kid"]]
    ok, hmac_rotated = run_module(oidc_module, dict(args, rotate_hmac=True))
    assert ok and hmac_rotated["rotated"] == ["hmac_secret"] and read(store, "hmac_secret") != hmac_secret


def test_each_published_key_has_a_file_until_it_is_retired(run_module, store):
    """Authelia's configuration reads every key of its JWKS from a file: the active one and each previous one."""
    args = {"store": str(store), "key_size": 2048}
    ok, first = run_module(oidc_module, args)
    assert ok and first["key_entries"] == [f"{PREFIX}_issuer_key"]
    first_pem = read(store, "issuer_key")
    ok, rotated = run_module(oidc_module, dict(args, rotate=True))
    assert ok and rotated["key_entries"] == [f"{PREFIX}_issuer_key", f"{PREFIX}_issuer_key_previous_1"]
    assert read(store, "issuer_key_previous_1") == first_pem
    assert stat.S_IMODE(os.lstat(store / f"{PREFIX}_issuer_key_previous_1").st_mode) == 0o600
    ok, twice = run_module(oidc_module, dict(args, rotate=True))
    assert ok and len(twice["kids"]) == 3 and read(store, "issuer_key_previous_2") == first_pem
    assert read(store, "issuer_key_previous_1") != first_pem
    ok, retired = run_module(oidc_module, dict(args, retire_previous=True))
    assert ok and retired["changed"] and retired["key_entries"] == [f"{PREFIX}_issuer_key"]
    assert not list(store.glob(f"{PREFIX}_issuer_key_previous_*")), "a retired key's file stays in the store"


def _age_ring(store, seconds):
    """Move every key's creation time back by ``seconds`` (as if the rotations happened that long ago)."""
    import datetime
    ring_path = store / f"{PREFIX}_keyring"
    ring = json.loads(ring_path.read_text())
    for key in ring["keys"]:
        created = datetime.datetime.fromisoformat(key["created"])
        key["created"] = (created - datetime.timedelta(seconds=seconds)).isoformat()
    ring_path.write_text(json.dumps(ring))


def test_a_superseded_key_is_retired_once_its_overlap_has_passed(run_module, store):
    args = {"store": str(store), "key_size": 2048, "retire_after": 3600}
    assert run_module(oidc_module, args)[0]
    ok, rotated = run_module(oidc_module, dict(args, rotate=True))
    assert ok and len(rotated["kids"]) == 2
    # Within the overlap the previous key stays published, and a re-run changes nothing.
    ok, again = run_module(oidc_module, args)
    assert ok and not again["changed"] and again["kids"] == rotated["kids"]
    _age_ring(store, 3599 - 60)
    ok, again = run_module(oidc_module, args)
    assert ok and not again["changed"] and len(again["kids"]) == 2
    _age_ring(store, 120)
    ok, retired = run_module(oidc_module, args)
    assert ok and retired["changed"] and retired["retired"] == rotated["kids"][1:]
    assert retired["kids"] == [rotated["kid"]] and retired["kid"] == rotated["kid"]
    assert [k["kid"] for k in json.loads(read(store, "jwks"))["keys"]] == [rotated["kid"]]
    assert not (store / f"{PREFIX}_issuer_key_previous_1").exists()
    # Without retire_after nothing is retired by age.
    ok, rotated = run_module(oidc_module, {"store": str(store), "key_size": 2048, "rotate": True})
    _age_ring(store, 10 ** 7)
    ok, kept = run_module(oidc_module, {"store": str(store), "key_size": 2048})
    assert ok and not kept["changed"] and len(kept["kids"]) == 2


def test_a_key_id_authelia_refuses_is_never_generated_and_a_stored_one_is_replaced(run_module, store, monkeypatch):
    """Authelia refuses a key id that starts or ends with anything but a letter or digit; a thumbprint starts with
    '-' or '_' once in 32 keys. Simulated here: the first key drawn gets such an id."""
    real_kid = oidc_module._kid
    unlucky = {}

    def kid(pem):
        if not unlucky:
            unlucky[pem] = "-" + real_kid(pem)[1:]
        return unlucky.get(pem) or real_kid(pem)

    monkeypatch.setattr(oidc_module, "_kid", kid)
    ok, result = run_module(oidc_module, {"store": str(store), "key_size": 2048})
    assert ok and result["kid"][0].isalnum() and result["kid"] not in unlucky.values()
    assert read(store, "issuer_key") not in unlucky

    # A ring stored before this rule, with such an id as its only key: replaced by a usable key.
    bad_pem = next(iter(unlucky))
    ring_path = store / f"{PREFIX}_keyring"
    ring = json.loads(ring_path.read_text())
    ring["keys"] = [dict(ring["keys"][0], key=bad_pem, kid=unlucky[bad_pem])]
    ring_path.write_text(json.dumps(ring))
    ok, repaired = run_module(oidc_module, {"store": str(store), "key_size": 2048})
    assert ok and repaired["changed"] and repaired["replaced"] == [unlucky[bad_pem]]
    assert repaired["rotated"] == ["issuer_key"] and repaired["kids"] == [repaired["kid"]]
    assert repaired["kid"][0].isalnum() and read(store, "issuer_key") != bad_pem


def test_check_mode_and_diff_never_leak(run_module, tmp_path, store, snapshot):
    args = {"store": str(store), "key_size": 2048}
    before = snapshot(tmp_path)
    ok, planned = run_module(oidc_module, args, check_mode=True, diff=True)
    assert ok and planned["changed"] and snapshot(tmp_path) == before and not store.exists()
    ok, created = run_module(oidc_module, args, diff=True)
    before = snapshot(tmp_path)
    ok, planned = run_module(oidc_module, dict(args, rotate=True, rotate_hmac=True), check_mode=True, diff=True)
    assert ok and planned["changed"] and snapshot(tmp_path) == before
    dumped = json.dumps([created, planned])
    for suffix in ("hmac_secret", "issuer_key", "issuer_key_single_line"):
        assert read(store, suffix).strip() not in dumped
    for line in read(store, "issuer_key").splitlines():
        if len(line) > 20:
            assert line not in dumped


def test_return_values(run_module, store):
    ok, result = run_module(oidc_module, {"store": str(store), "key_size": 2048, "return_values": True})
    assert ok
    values = result["values"]
    assert values["hmac_secret"] == read(store, "hmac_secret")
    assert values["issuer_private_key"] == read(store, "issuer_key")
    assert values["issuer_private_key_single_line"] == read(store, "issuer_key_single_line")
    assert [k["kid"] for k in values["keys"]] == result["kids"]


@pytest.mark.parametrize("case, message", [
    ("short_hmac", "hmac_length=32 is out of range"),
    ("corrupt_ring", "is not valid JSON"),
    ("corrupt_pem_in_ring", "is corrupt or not of kind rsa"),
    ("kid_mismatch", "does not match its key"),
    ("store_is_file", "not a directory"),
    ("bad_name", "is invalid"),
    ("negative_retire_after", "must not be negative"),
])
def test_failures_change_nothing(run_module, tmp_path, store, snapshot, case, message):
    args = {"store": str(store), "key_size": 2048}
    assert run_module(oidc_module, args)[0]
    ring_path = store / ("%s_keyring" % PREFIX)
    if case == "short_hmac":
        args["hmac_length"] = 32
    elif case == "corrupt_ring":
        ring_path.write_text("{not json")
    elif case == "corrupt_pem_in_ring":
        ring = json.loads(ring_path.read_text())
        lines = ring["keys"][0]["key"].splitlines()
        lines[2] = "A" * len(lines[2])
        ring["keys"][0]["key"] = "\n".join(lines) + "\n"
        ring_path.write_text(json.dumps(ring))
    elif case == "kid_mismatch":
        ring = json.loads(ring_path.read_text())
        ring["keys"][0]["kid"] = "forged"
        ring_path.write_text(json.dumps(ring))
    elif case == "store_is_file":
        (tmp_path / "file").write_text("")
        args["store"] = str(tmp_path / "file")
    elif case == "bad_name":
        args["name"] = "a/b"
    elif case == "negative_retire_after":
        args["retire_after"] = -1
    before = snapshot(tmp_path)
    ok, result = run_module(oidc_module, args)
    assert not ok and message in result["msg"], result
    assert snapshot(tmp_path) == before
