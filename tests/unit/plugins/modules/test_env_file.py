"""datamancy.stack.env_file: content, quoting, modes, idempotence, check mode, redacted diff, failures."""
from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.datamancy.stack.plugins.modules import env_file as env_module
from ansible_collections.datamancy.stack.plugins.modules import secret as secret_module


@pytest.fixture
def store(tmp_path, run_module):
    path = tmp_path / "secrets"
    ok, result = run_module(secret_module, {"store": str(path), "secrets": [
        {"name": "master", "kind": "api_key"},
        {"name": "pw", "kind": "password", "symbols": True},
        {"name": "issuer", "kind": "rsa", "size": 2048},
    ]})
    assert ok, result
    return path


@pytest.fixture
def target(tmp_path):
    directory = tmp_path / "app"
    directory.mkdir()
    return directory / ".env"


def entries():
    return [
        {"key": "DOMAIN", "value": "example.org"},
        {"key": "GREETING", "value": "hello world $HOME #1"},
        {"key": "LITELLM_MASTER_KEY", "secret": "master"},
        {"key": "DB_PASSWORD", "secret": "pw"},
        {"key": "ISSUER_KEY", "secret": "issuer", "single_line": True},
    ]


def test_writes_quoted_file_with_mode_0600(run_module, store, target):
    ok, result = run_module(env_module, {"path": str(target), "store": str(store), "entries": entries()})
    assert ok, result
    assert result["changed"] and result["keys"] == [e["key"] for e in entries()]
    st = os.stat(target)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0 and st.st_gid == 0
    lines = target.read_text().splitlines()
    assert lines[0].startswith("# Managed by Ansible")
    master = (store / "master").read_text()
    pw = (store / "pw").read_text()
    pem = (store / "issuer").read_text()
    assert lines[1:5] == ["DOMAIN=example.org", "GREETING='hello world $HOME #1'",
                          "LITELLM_MASTER_KEY=" + master, "DB_PASSWORD=" + pw]
    single = pem.rstrip("\n").replace("\n", "\\n")
    assert lines[5] == "ISSUER_KEY='" + single + "'"
    assert "\n" not in single and single.count("\\n") == pem.count("\n") - 1


def test_second_run_is_unchanged(run_module, store, target, snapshot):
    args = {"path": str(target), "store": str(store), "entries": entries()}
    assert run_module(env_module, args)[0]
    before = snapshot(target.parent)
    ok, result = run_module(env_module, args, diff=True)
    assert ok and result["changed"] is False and result["content_changed"] is False
    assert snapshot(target.parent) == before


def test_mode_and_owner_change_alone_is_a_change(run_module, store, target):
    args = {"path": str(target), "store": str(store), "entries": entries()}
    assert run_module(env_module, args)[0]
    inode = os.stat(target).st_ino
    ok, result = run_module(env_module, dict(args, mode="0640", owner="0", group="nogroup"), diff=True)
    assert ok and result["changed"] and not result["content_changed"]
    st = os.stat(target)
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_ino == inode
    assert "mode=0600" in result["diff"][1]["before"] and "mode=0640" in result["diff"][1]["after"]


def test_check_mode_writes_nothing(run_module, store, target, snapshot):
    before = snapshot(target.parent)
    ok, result = run_module(env_module, {"path": str(target), "store": str(store), "entries": entries()},
                            check_mode=True, diff=True)
    assert ok and result["changed"]
    assert snapshot(target.parent) == before
    assert not target.exists()


def test_diff_redacts_secrets_but_shows_a_change(run_module, store, target):
    args = {"path": str(target), "store": str(store), "entries": entries()}
    target.write_text("OLD_SECRET=s3cr3t-old-value\n# LEGACY=commented-out-value\n")
    os.chmod(target, 0o600)
    ok, first = run_module(env_module, args, diff=True)
    assert ok
    old_values = [(store / n).read_text() for n in ("master", "pw", "issuer")]
    rotate_pw = {"store": str(store), "secrets": [{"name": "pw", "kind": "password", "symbols": True}], "rotate": ["pw"]}
    assert run_module(secret_module, rotate_pw)[0]
    ok, second = run_module(env_module, args, diff=True)
    assert ok and second["changed"]
    dumped = json.dumps([first, second])
    pem = (store / "issuer").read_text()
    leaks = old_values + [(store / "pw").read_text(), pem.rstrip("\n").replace("\n", "\\n"),
                          "s3cr3t-old-value", "commented-out-value"]
    leaks += [line for line in pem.splitlines() if len(line) > 20]
    for value in leaks:
        assert value not in dumped
    diff = second["diff"][0]
    assert "DOMAIN=example.org" in diff["after"]
    before_line = [ln for ln in diff["before"].splitlines() if ln.startswith("DB_PASSWORD=")][0]
    after_line = [ln for ln in diff["after"].splitlines() if ln.startswith("DB_PASSWORD=")][0]
    assert before_line.startswith("DB_PASSWORD=<redacted:sha256:") and before_line != after_line
    master_lines = [ln for ln in diff["before"].splitlines() + diff["after"].splitlines()
                    if ln.startswith("LITELLM_MASTER_KEY=")]
    assert len(set(master_lines)) == 1  # unchanged secret, same marker on both sides


def test_raw_format(run_module, store, target):
    ok, result = run_module(env_module, {"path": str(target), "store": str(store), "format": "raw", "header": False,
                                         "entries": [{"key": "A", "value": "x y $z"}]})
    assert ok and target.read_text() == "A=x y $z\n"


@pytest.mark.parametrize("case, message", [
    ("missing_secret", "secret ghost is not in the store"),
    ("pem_without_single_line", "spans several lines"),
    ("relative_path", "must be an absolute path"),
    ("missing_directory", "does not exist"),
    ("symlink_target", "is a symbolic link"),
    ("bad_key", "is not a valid variable name"),
    ("both_value_and_secret", "exactly one of value or secret"),
    ("duplicate_key", "listed twice"),
    ("unportable_value", "single quote together with"),
    ("bad_mode", "must be an octal string"),
    ("unknown_owner", "unknown owner"),
    ("no_store", "does not exist; create the secrets"),
])
def test_failures_change_nothing(run_module, store, target, tmp_path, snapshot, case, message):
    args = {"path": str(target), "store": str(store), "entries": [{"key": "A", "value": "1"}]}
    if case == "missing_secret":
        args["entries"] = [{"key": "A", "secret": "ghost"}]
    elif case == "pem_without_single_line":
        args["entries"] = [{"key": "A", "secret": "issuer"}]
    elif case == "relative_path":
        args["path"] = "app/.env"
    elif case == "missing_directory":
        args["path"] = str(tmp_path / "nowhere" / ".env")
    elif case == "symlink_target":
        (tmp_path / "elsewhere").write_text("")
        os.symlink(tmp_path / "elsewhere", target)
    elif case == "bad_key":
        args["entries"] = [{"key": "1BAD", "value": "x"}]
    elif case == "both_value_and_secret":
        args["entries"] = [{"key": "A", "value": "x", "secret": "pw"}]
    elif case == "duplicate_key":
        args["entries"] = [{"key": "A", "value": "x"}, {"key": "A", "value": "y"}]
    elif case == "unportable_value":
        args["entries"] = [{"key": "A", "value": "it's $x"}]
    elif case == "bad_mode":
        args["mode"] = "u=rw"
    elif case == "unknown_owner":
        args["owner"] = "no-such-user-here"
    elif case == "no_store":
        args["store"] = str(tmp_path / "absent")
        args["entries"] = [{"key": "A", "secret": "pw"}]
    before = snapshot(tmp_path)
    ok, result = run_module(env_module, args)
    assert not ok and message in result["msg"], result
    assert snapshot(tmp_path) == before
