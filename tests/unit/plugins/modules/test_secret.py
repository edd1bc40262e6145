"""datamancy.stack.secret: kinds, generate-once, rotation, never_rotate, modes, check mode, diff, failures."""
from __future__ import annotations

import base64
import fcntl
import json
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from passlib.hash import argon2, ldap_salted_sha1, pbkdf2_sha512

from ansible_collections.datamancy.stack.plugins.modules import secret as secret_module

ALL_KINDS = [
    {"name": "hex32", "kind": "hex"},
    {"name": "hex16", "kind": "hex", "bytes": 16},
    {"name": "b64", "kind": "base64", "bytes": 24},
    {"name": "ub64", "kind": "urlsafe_base64"},
    {"name": "pw", "kind": "password", "length": 20},
    {"name": "pwsym", "kind": "password", "length": 40, "symbols": True},
    {"name": "apikey", "kind": "api_key"},
    {"name": "rsa2048", "kind": "rsa", "size": 2048},
    {"name": "ec", "kind": "ecdsa_p256"},
    {"name": "ssh", "kind": "ssh_ed25519", "comment": "stackops"},
    {"name": "client_digest", "kind": "digest", "derive_from": "pw"},
    {"name": "client_argon", "kind": "digest", "derive_from": "pw", "scheme": "argon2id"},
    {"name": "ldap_ssha", "kind": "digest", "derive_from": "pwsym", "scheme": "ldap_ssha"},
    {"name": "ldap_argon", "kind": "digest", "derive_from": "pwsym", "scheme": "ldap_argon2"},
]


@pytest.fixture
def store(tmp_path):
    return tmp_path / "etc" / "secrets"


def read(store, name, suffix=""):
    return (store / (name + suffix)).read_text()


def all_values(store):
    """Every private value in the store plus each long PEM line, for leak searches (.pub lines are public)."""
    found = []
    for path in store.iterdir():
        if path.name.startswith(".") or path.name.endswith((".meta", ".pub")):
            continue
        text = path.read_text()
        found.append(text.strip())
        found.extend(line for line in text.splitlines() if len(line) > 20)
    return found


def test_every_kind_has_its_format(run_module, store):
    ok, result = run_module(secret_module, {"store": str(store), "secrets": ALL_KINDS})
    assert ok, result
    assert result["changed"] is True
    assert sorted(result["created"]) == sorted(s["name"] for s in ALL_KINDS)

    assert len(read(store, "hex32")) == 64 and int(read(store, "hex32"), 16) >= 0
    assert read(store, "hex32") == read(store, "hex32").lower()
    assert len(read(store, "hex16")) == 32
    assert len(base64.b64decode(read(store, "b64"), validate=True)) == 24
    assert len(base64.urlsafe_b64decode(read(store, "ub64"))) == 32
    assert "+" not in read(store, "ub64") and "/" not in read(store, "ub64")
    pw = read(store, "pw")
    assert len(pw) == 20 and pw.isalnum()
    pwsym = read(store, "pwsym")
    assert len(pwsym) == 40 and set(pwsym) - set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    assert set(pwsym) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+=,")
    key = read(store, "apikey")
    assert key.startswith("sk-") and len(key) == 67 and int(key[3:], 16) >= 0

    pem = read(store, "rsa2048")
    assert pem.startswith("-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    loaded = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(loaded, rsa.RSAPrivateKey) and loaded.key_size == 2048
    ec_key = serialization.load_pem_private_key(read(store, "ec").encode(), password=None)
    assert isinstance(ec_key, ec.EllipticCurvePrivateKey) and ec_key.curve.name == "secp256r1"
    assert read(store, "ec").startswith("-----BEGIN PRIVATE KEY-----")

    ssh_private = read(store, "ssh")
    assert ssh_private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    ssh_key = serialization.load_ssh_private_key(ssh_private.encode(), password=None)
    assert isinstance(ssh_key, ed25519.Ed25519PrivateKey)
    pub = read(store, "ssh", ".pub")
    expected_pub = ssh_key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                     serialization.PublicFormat.OpenSSH).decode()
    assert pub == expected_pub + " stackops\n"
    assert result["public_keys"] == {"ssh": expected_pub + " stackops"}

    digest = read(store, "client_digest")
    assert digest.startswith("$pbkdf2-sha512$310000$") and pbkdf2_sha512.verify(pw, digest)
    assert read(store, "client_argon").startswith("$argon2id$") and argon2.verify(pw, read(store, "client_argon"))
    assert ldap_salted_sha1.verify(pwsym, read(store, "ldap_ssha"))
    ldap_argon = read(store, "ldap_argon")
    assert ldap_argon.startswith("{ARGON2}$argon2id$") and argon2.verify(pwsym, ldap_argon[len("{ARGON2}"):])

    # metadata holds kinds and fingerprints, never a value
    meta = json.loads(read(store, "client_digest", ".meta"))
    assert meta["kind"] == "digest" and meta["source"] == "pw" and len(meta["source_fingerprint"]) == 64
    for value in all_values(store):
        for path in store.glob("*.meta"):
            assert value not in path.read_text()
    # the result names secrets, never values
    dumped = json.dumps(result)
    for value in all_values(store):
        assert value not in dumped


def test_modes_and_ownership(run_module, store):
    ok, result = run_module(secret_module, {"store": str(store), "secrets": ALL_KINDS[:5] + ALL_KINDS[9:11]})
    assert ok, result
    st = os.stat(store)
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == 0 and st.st_gid == 0
    assert stat.S_IMODE(os.stat(store.parent).st_mode) == 0o755  # parents keep the ordinary mode
    files = list(store.iterdir())
    assert {p.name for p in files} >= {"hex32", "hex32.meta", "ssh.pub", ".lock", ".fingerprint-key"}
    for path in files:
        st = os.lstat(path)
        assert stat.S_ISREG(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600, path
        assert st.st_uid == 0 and st.st_gid == 0
    assert not [p for p in files if p.name.startswith(".tmp-")]  # no temporary file left behind


def test_second_run_is_unchanged_and_keeps_values(run_module, store, snapshot):
    args = {"store": str(store), "secrets": ALL_KINDS}
    assert run_module(secret_module, args)[0]
    before = snapshot(store)
    ok, result = run_module(secret_module, args, diff=True)
    assert ok and result["changed"] is False
    assert result["created"] == [] and result["rotated"] == [] and result["rederived"] == []
    assert sorted(result["unchanged"]) == sorted(s["name"] for s in ALL_KINDS)
    assert snapshot(store) == before  # same bytes, same mtimes: nothing rewritten
    assert result["diff"]["before"] == result["diff"]["after"]


def test_rotation_changes_only_the_named_secret_and_rederives(run_module, store):
    specs = [{"name": "src", "kind": "password"}, {"name": "other", "kind": "hex"},
             {"name": "dig", "kind": "digest", "derive_from": "src", "scheme": "ldap_ssha"}]
    assert run_module(secret_module, {"store": str(store), "secrets": specs})[0]
    old = {n: read(store, n) for n in ("src", "other", "dig")}
    ok, result = run_module(secret_module, {"store": str(store), "secrets": specs, "rotate": ["src"]}, diff=True)
    assert ok, result
    assert result["changed"] and result["rotated"] == ["src"] and result["rederived"] == ["dig"]
    assert read(store, "src") != old["src"] and read(store, "other") == old["other"]
    assert ldap_salted_sha1.verify(read(store, "src"), read(store, "dig"))
    assert json.loads(read(store, "src", ".meta"))["generation"] == 2
    assert "src: password (generation 2) [rotated]" in result["diff"]["after"]
    # and the run after that is quiet again
    ok, result = run_module(secret_module, {"store": str(store), "secrets": specs})
    assert ok and not result["changed"]


def test_rotating_a_source_rederives_digests_not_listed(run_module, store):
    assert run_module(secret_module, {"store": str(store), "secrets": [
        {"name": "src", "kind": "password"}, {"name": "dig", "kind": "digest", "derive_from": "src"}]})[0]
    ok, result = run_module(secret_module, {"store": str(store), "secrets": [{"name": "src", "kind": "password"}],
                                            "rotate": ["src"]})
    assert ok and result["rederived"] == ["dig"]
    assert pbkdf2_sha512.verify(read(store, "src"), read(store, "dig"))


def test_digest_from_a_source_only_in_the_store(run_module, store):
    assert run_module(secret_module, {"store": str(store), "secrets": [{"name": "src", "kind": "password"}]})[0]
    ok, result = run_module(secret_module, {"store": str(store), "secrets": [
        {"name": "dig", "kind": "digest", "derive_from": "src", "scheme": "ldap_ssha"}]})
    assert ok and result["created"] == ["dig"]
    assert ldap_salted_sha1.verify(read(store, "src"), read(store, "dig"))


def test_never_rotate_refuses_then_force_rotates(run_module, store, snapshot):
    specs = [{"name": "storage_key", "kind": "hex", "never_rotate": True}, {"name": "plain", "kind": "hex"}]
    assert run_module(secret_module, {"store": str(store), "secrets": specs})[0]
    before = snapshot(store)
    ok, result = run_module(secret_module, {"store": str(store), "secrets": specs, "rotate": ["storage_key"]})
    assert not ok
    assert "storage_key" in result["msg"] and "never_rotate" in result["msg"] and "force=true" in result["msg"]
    assert snapshot(store) == before
    # sticky: a later task that forgets the flag is still refused
    ok, result = run_module(secret_module, {"store": str(store), "secrets": [{"name": "storage_key", "kind": "hex"}],
                                            "rotate": ["storage_key"]})
    assert not ok and "never_rotate" in result["msg"]
    assert snapshot(store) == before
    # rotate_all skips it with a warning and rotates the rest
    old = read(store, "storage_key")
    ok, result = run_module(secret_module, {"store": str(store), "secrets": specs, "rotate_all": True})
    assert ok and result["rotated"] == ["plain"] and result["skipped_never_rotate"] == ["storage_key"]
    assert read(store, "storage_key") == old
    # force overrides
    ok, result = run_module(secret_module, {"store": str(store), "secrets": specs, "rotate": ["storage_key"],
                                            "force": True})
    assert ok and result["rotated"] == ["storage_key"] and read(store, "storage_key") != old
    assert json.loads(read(store, "storage_key", ".meta"))["never_rotate"] is True


def test_check_mode_on_a_new_store_writes_nothing(run_module, tmp_path, store, snapshot):
    before = snapshot(tmp_path)
    ok, result = run_module(secret_module, {"store": str(store), "secrets": ALL_KINDS}, check_mode=True, diff=True)
    assert ok and result["changed"] is True
    assert sorted(result["created"]) == sorted(s["name"] for s in ALL_KINDS)
    assert snapshot(tmp_path) == before
    assert not store.exists()


def test_check_mode_on_an_existing_store_writes_nothing(run_module, tmp_path, store, snapshot):
    specs = ALL_KINDS[:2] + [{"name": "pw", "kind": "password"},
                             {"name": "dig", "kind": "digest", "derive_from": "pw"}]
    assert run_module(secret_module, {"store": str(store), "secrets": specs})[0]
    os.chmod(store / "hex32", 0o644)  # a mode the module would fix
    before = snapshot(tmp_path)
    ok, result = run_module(secret_module, {"store": str(store), "secrets": specs + [{"name": "new", "kind": "hex"}],
                                            "rotate": ["pw"]}, check_mode=True, diff=True)
    assert ok and result["changed"]
    assert result["created"] == ["new"] and result["rotated"] == ["pw"] and result["rederived"] == ["dig"]
    assert result["fixed_modes"][0]["before"] == "0644"
    assert snapshot(tmp_path) == before


def test_no_diff_ever_contains_a_value(run_module, store):
    outputs = []
    args = {"store": str(store), "secrets": ALL_KINDS, "return_values": False}
    outputs.append(run_module(secret_module, args, diff=True)[1])
    old_values = all_values(store)
    outputs.append(run_module(secret_module, dict(args, rotate=["pw", "rsa2048", "ssh"]), diff=True)[1])
    outputs.append(run_module(secret_module, dict(args, rotate_all=True), check_mode=True, diff=True)[1])
    outputs.append(run_module(secret_module, args, diff=True)[1])
    dumped = json.dumps(outputs)
    assert all("diff" in o for o in outputs)
    for value in old_values + all_values(store):
        assert value not in dumped
    assert "pw: password" in outputs[0]["diff"]["after"]


def test_return_values_only_when_asked(run_module, store):
    specs = [{"name": "a", "kind": "hex"}, {"name": "k", "kind": "ecdsa_p256"}]
    ok, result = run_module(secret_module, {"store": str(store), "secrets": specs})
    assert ok and "values" not in result
    ok, result = run_module(secret_module, {"store": str(store), "secrets": specs, "return_values": True})
    assert ok and not result["changed"]
    assert result["values"] == {"a": read(store, "a"), "k": read(store, "k")}


def test_mode_drift_is_corrected(run_module, store):
    specs = [{"name": "a", "kind": "hex"}]
    assert run_module(secret_module, {"store": str(store), "secrets": specs})[0]
    os.chmod(store / "a", 0o644)
    os.chmod(store, 0o755)
    ok, result = run_module(secret_module, {"store": str(store), "secrets": specs})
    assert ok and result["changed"]
    assert {f["path"] for f in result["fixed_modes"]} == {str(store), str(store / "a")}
    assert stat.S_IMODE(os.stat(store / "a").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o700


def test_existing_value_without_metadata_is_adopted(run_module, store):
    store.mkdir(parents=True, mode=0o700)
    (store / "legacy").write_text("ab" * 32)
    os.chmod(store / "legacy", 0o600)
    ok, result = run_module(secret_module, {"store": str(store), "secrets": [{"name": "legacy", "kind": "hex"}]})
    assert ok and result["adopted"] == ["legacy"] and read(store, "legacy") == "ab" * 32
    assert json.loads(read(store, "legacy", ".meta"))["kind"] == "hex"


def test_missing_ssh_public_half_is_restored(run_module, store):
    specs = [{"name": "ssh", "kind": "ssh_ed25519"}]
    assert run_module(secret_module, {"store": str(store), "secrets": specs})[0]
    pub = read(store, "ssh", ".pub")
    os.unlink(store / "ssh.pub")
    ok, result = run_module(secret_module, {"store": str(store), "secrets": specs})
    assert ok and result["changed"] and read(store, "ssh", ".pub") == pub


def test_a_concurrent_writer_holding_the_lock_blocks_until_timeout(run_module, store):
    assert run_module(secret_module, {"store": str(store), "secrets": [{"name": "a", "kind": "hex"}]})[0]
    with open(store / ".lock", "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        ok, result = run_module(secret_module, {"store": str(store), "secrets": [{"name": "b", "kind": "hex"}],
                                                "lock_timeout": 1})
    assert not ok and "timed out" in result["msg"]
    assert not (store / "b").exists()


def _corrupt_pem(store):
    text = read(store, "key")
    lines = text.splitlines()
    lines[3] = "B" * len(lines[3])
    (store / "key").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("case, message", [
    ("unknown_kind", "value of kind must be one of"),
    ("short_hex", "bytes=8 is out of range"),
    ("short_password", "length=8 is out of range"),
    ("bad_rsa_size", "value of size must be one of"),
    ("relative_store", "must be an absolute path"),
    ("dotdot_store", "must not contain \"..\""),
    ("store_is_a_file", "exists but is not a directory"),
    ("store_is_a_symlink", "is a symbolic link"),
    ("store_unreadable_file", "is not a regular file"),
    ("corrupt_pem", "stored secret 'key' is corrupt or not of kind rsa"),
    ("unknown_source", "derive_from names 'ghost', which is neither in secrets nor in the store"),
    ("digest_of_digest", "is itself a digest"),
    ("duplicate", "listed twice"),
    ("rotate_unknown", "rotate names 'nope'"),
    ("kind_changed", "stored as kind hex but requested as kind password"),
    ("bad_name", "is invalid"),
])
def test_malformed_input_fails_and_changes_nothing(run_module, tmp_path, store, snapshot, case, message):
    base = [{"name": "a", "kind": "hex"}, {"name": "key", "kind": "rsa", "size": 2048}]
    assert run_module(secret_module, {"store": str(store), "secrets": base})[0]
    args = {"store": str(store), "secrets": base + [{"name": "new", "kind": "hex"}]}
    if case == "unknown_kind":
        args["secrets"] = [{"name": "x", "kind": "uuid"}]
    elif case == "short_hex":
        args["secrets"] = base + [{"name": "x", "kind": "hex", "bytes": 8}]
    elif case == "short_password":
        args["secrets"] = base + [{"name": "x", "kind": "password", "length": 8}]
    elif case == "bad_rsa_size":
        args["secrets"] = [{"name": "x", "kind": "rsa", "size": 1024}]
    elif case == "relative_store":
        args["store"] = "relative/secrets"
    elif case == "dotdot_store":
        args["store"] = str(store) + "/../elsewhere"
    elif case == "store_is_a_file":
        (tmp_path / "file").write_text("not a dir")
        args["store"] = str(tmp_path / "file")
    elif case == "store_is_a_symlink":
        os.symlink(store, tmp_path / "link")
        args["store"] = str(tmp_path / "link")
    elif case == "store_unreadable_file":
        os.mkdir(store / "a.meta.d")
        os.unlink(store / "a")
        os.mkdir(store / "a")
    elif case == "corrupt_pem":
        _corrupt_pem(store)
    elif case == "unknown_source":
        args["secrets"] = base + [{"name": "d", "kind": "digest", "derive_from": "ghost"}]
    elif case == "digest_of_digest":
        args["secrets"] = base + [{"name": "d1", "kind": "digest", "derive_from": "a"},
                                  {"name": "d2", "kind": "digest", "derive_from": "d1"}]
    elif case == "duplicate":
        args["secrets"] = base + [{"name": "a", "kind": "hex"}]
    elif case == "rotate_unknown":
        args["rotate"] = ["nope"]
    elif case == "kind_changed":
        args["secrets"] = [{"name": "a", "kind": "password"}]
    elif case == "bad_name":
        args["secrets"] = [{"name": "../escape", "kind": "hex"}]
    before = snapshot(tmp_path)
    ok, result = run_module(secret_module, args, diff=True)
    assert not ok, result
    assert message in result["msg"]
    assert snapshot(tmp_path) == before
