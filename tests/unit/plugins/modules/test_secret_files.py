"""datamancy.stack.secret_files: files owned by the container user, idempotence, prune, check mode, no values."""
from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.datamancy.stack.plugins.modules import secret as secret_module
from ansible_collections.datamancy.stack.plugins.modules import secret_files as files_module


@pytest.fixture
def store(tmp_path, run_module):
    path = tmp_path / "secrets"
    ok, result = run_module(secret_module, {"store": str(path), "secrets": [
        {"name": "session", "kind": "hex"},
        {"name": "redis_password", "kind": "password"},
        {"name": "ops", "kind": "ssh_ed25519"},
    ]})
    assert ok, result
    return path


def args(store, dest, **extra):
    return dict({"store": str(store), "dest": str(dest), "owner": "8000", "group": "8001",
                 "names": ["session"],
                 "files": [{"secret": "redis_password", "filename": "requirepass.conf",
                            "format": "requirepass {value}\n"},
                           {"secret": "ops", "public": True}]}, **extra)


def test_files_hold_the_values_with_owner_and_modes(store, tmp_path, run_module):
    dest = tmp_path / "svc" / "secrets"
    ok, result = run_module(files_module, args(store, dest))
    assert ok and result["changed"]
    assert sorted(result["written"]) == ["ops.pub", "requirepass.conf", "session"]
    assert (dest / "session").read_text() == (store / "session").read_text()
    assert (dest / "requirepass.conf").read_text() == f"requirepass {(store / 'redis_password').read_text()}\n"
    assert (dest / "ops.pub").read_text().startswith("ssh-ed25519 ")
    for path in dest.iterdir():
        st = path.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (8000, 8001, 0o400)
    st = dest.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (8000, 8001, 0o500)


def test_a_second_run_changes_nothing(store, tmp_path, run_module, snapshot):
    dest = tmp_path / "svc"
    run_module(files_module, args(store, dest))
    before = snapshot(dest)
    ok, result = run_module(files_module, args(store, dest))
    assert ok and not result["changed"] and result["written"] == [] and result["removed"] == []
    assert snapshot(dest) == before


def test_a_changed_mode_or_value_is_corrected(store, tmp_path, run_module):
    dest = tmp_path / "svc"
    run_module(files_module, args(store, dest))
    os.chmod(dest / "session", 0o644)
    ok, result = run_module(files_module, args(store, dest))
    assert ok and result["written"] == ["session"]
    assert stat.S_IMODE((dest / "session").stat().st_mode) == 0o400


def test_files_no_longer_listed_are_pruned(store, tmp_path, run_module):
    dest = tmp_path / "svc"
    run_module(files_module, args(store, dest))
    ok, result = run_module(files_module, args(store, dest, files=[]))
    assert ok and sorted(result["removed"]) == ["ops.pub", "requirepass.conf"]
    assert sorted(os.listdir(dest)) == ["session"]


def test_check_mode_writes_nothing(store, tmp_path, run_module, snapshot):
    dest = tmp_path / "svc"
    before = snapshot(tmp_path)
    ok, result = run_module(files_module, args(store, dest), check_mode=True)
    assert ok and result["changed"]
    assert snapshot(tmp_path) == before


def test_results_and_diff_never_contain_a_value(store, tmp_path, run_module):
    dest = tmp_path / "svc"
    ok, result = run_module(files_module, args(store, dest), diff=True)
    assert ok
    text = json.dumps(result)
    for name in ("session", "redis_password", "ops"):
        for line in (store / name).read_text().splitlines():
            if len(line) > 8:
                assert line not in text


@pytest.mark.parametrize(("change", "message"), [
    ({"names": ["missing"]}, "'missing' is not in the store"),
    ({"dest": "relative/dir"}, "must be an absolute path"),
    ({"names": [], "files": []}, "list at least one secret"),
    ({"names": [], "files": [{"secret": "session", "format": "no placeholder"}]}, "must contain {value}"),
    ({"files": [{"secret": "session", "filename": "../escape"}]}, "plain file name"),
    ({"names": ["session"], "files": [{"secret": "redis_password", "filename": "session"}]}, "listed twice"),
    ({"mode": "u+r"}, "octal string"),
])
def test_bad_input_fails_clearly_and_writes_nothing(store, tmp_path, run_module, snapshot, change, message):
    dest = tmp_path / "svc"
    before = snapshot(tmp_path)
    ok, result = run_module(files_module, dict(args(store, dest), **change))
    assert not ok and message in result["msg"], result
    assert snapshot(tmp_path) == before


def test_a_missing_store_fails(tmp_path, run_module):
    ok, result = run_module(files_module, args(tmp_path / "nothing", tmp_path / "svc"))
    assert not ok and "does not exist" in result["msg"]
