"""datamancy.stack.secure_paths: enforce, assert, check mode, required paths, symlinks, conflicts."""
from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.datamancy.stack.plugins.modules import secure_paths as paths_module


@pytest.fixture
def tree(tmp_path):
    app = tmp_path / "app"
    (app / "secrets").mkdir(parents=True)
    for name, mode in ((".env", 0o644), (".env.bootstrap", 0o600), ("config.yml", 0o644)):
        (app / name).write_text("x")
        os.chmod(app / name, mode)
    (app / "secrets" / "tls.key").write_text("k")
    os.chmod(app / "secrets" / "tls.key", 0o640)
    os.chmod(app / "secrets", 0o755)
    os.symlink("/etc/passwd", app / ".env.link")
    return app


def rules(tree):
    return [
        {"path": str(tree / ".env*"), "owner": "root", "group": "root", "mode": "0600", "file_type": "file"},
        {"path": str(tree / "secrets"), "mode": "0700", "file_type": "directory", "required": True},
        {"path": str(tree / "**" / "*.key"), "mode": "0600", "file_type": "file"},
    ]


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_assert_reports_and_fails_without_changing(run_module, tree, snapshot):
    before = snapshot(tree)
    ok, result = run_module(paths_module, {"rules": rules(tree), "state": "assert"})
    assert not ok and result["changed"] is False
    found = {(v["path"], v["attribute"], v["actual"], v["expected"]) for v in result["violations"]}
    assert found == {(str(tree / ".env"), "mode", "0644", "0600"),
                     (str(tree / "secrets"), "mode", "0755", "0700"),
                     (str(tree / "secrets" / "tls.key"), "mode", "0640", "0600")}
    assert "3 permission violation(s)" in result["msg"] and str(tree / ".env") in result["msg"]
    assert snapshot(tree) == before
    assert result["skipped_symlinks"] == [str(tree / ".env.link")]
    assert mode("/etc/passwd") == 0o644  # the link target was never touched


def test_check_mode_reports_what_enforce_would_fix(run_module, tree, snapshot):
    before = snapshot(tree)
    ok, result = run_module(paths_module, {"rules": rules(tree)}, check_mode=True, diff=True)
    assert ok and result["changed"] and len(result["violations"]) == 3
    assert sorted(result["fixed"]) == sorted([str(tree / ".env"), str(tree / "secrets"),
                                              str(tree / "secrets" / "tls.key")])
    assert snapshot(tree) == before


def test_enforce_fixes_then_is_idempotent_and_assert_passes(run_module, tree):
    ok, result = run_module(paths_module, {"rules": rules(tree)}, diff=True)
    assert ok and result["changed"] and result["checked"] == 4
    assert mode(tree / ".env") == 0o600 and mode(tree / "secrets") == 0o700
    assert mode(tree / "secrets" / "tls.key") == 0o600 and mode(tree / "config.yml") == 0o644
    assert str(tree / ".env") + " 0644 root:root" in result["diff"]["before"]
    ok, result = run_module(paths_module, {"rules": rules(tree)})
    assert ok and not result["changed"] and result["violations"] == []
    ok, result = run_module(paths_module, {"rules": rules(tree), "state": "assert"})
    assert ok and not result["changed"]


def test_enforce_changes_ownership(run_module, tree):
    os.chown(tree / ".env.bootstrap", 65534, 65534)
    ok, result = run_module(paths_module, {"rules": rules(tree)})
    assert ok
    st = os.stat(tree / ".env.bootstrap")
    assert (st.st_uid, st.st_gid) == (0, 0)
    assert {"path": str(tree / ".env.bootstrap"), "attribute": "owner", "actual": "nobody",
            "expected": "root"} in result["violations"]


def test_required_missing_fails_even_when_enforcing(run_module, tree):
    ok, result = run_module(paths_module, {"rules": [{"path": str(tree / "absent"), "mode": "0700",
                                                      "required": True}]})
    assert not ok and "required paths are missing" in result["msg"]


def test_conflicting_rules_and_relative_patterns_fail(run_module, tree, snapshot):
    before = snapshot(tree)
    ok, result = run_module(paths_module, {"rules": [{"path": str(tree / ".env"), "mode": "0600"},
                                                     {"path": str(tree / ".env*"), "mode": "0640"}]})
    assert not ok and "different mode expectations" in result["msg"]
    ok, result = run_module(paths_module, {"rules": [{"path": "app/.env", "mode": "0600"}]})
    assert not ok and "must be absolute" in result["msg"]
    assert snapshot(tree) == before
