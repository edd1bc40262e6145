"""datamancy.stack.directories: creates, corrects, honours check mode, refuses non-directories."""
from __future__ import annotations

import os
import stat

from ansible_collections.datamancy.stack.plugins.modules import directories as directories_module


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def spec(tmp_path):
    return [{"path": str(tmp_path / "app")},
            {"path": str(tmp_path / "app" / "data"), "owner": "1234", "group": "4321", "mode": "0700"},
            {"path": str(tmp_path / "deep" / "er"), "mode": "0750"}]


def test_creates_then_changes_nothing(run_module, tmp_path):
    ok, result = run_module(directories_module, {"directories": spec(tmp_path)}, diff=True)
    assert ok and result["changed"], result
    assert result["created"] == [entry["path"] for entry in spec(tmp_path)]
    data = os.lstat(tmp_path / "app" / "data")
    assert (data.st_uid, data.st_gid, mode(tmp_path / "app" / "data")) == (1234, 4321, 0o700)
    assert mode(tmp_path / "app") == 0o755 and mode(tmp_path / "deep" / "er") == 0o750
    assert "absent" in result["diff"]["before"]
    ok, again = run_module(directories_module, {"directories": spec(tmp_path)})
    assert ok and not again["changed"] and again["created"] == [] and again["corrected"] == []


def test_corrects_mode_and_owner(run_module, tmp_path):
    run_module(directories_module, {"directories": spec(tmp_path)})
    os.chmod(tmp_path / "app" / "data", 0o777)
    os.chown(tmp_path / "app", 1, 1)
    ok, result = run_module(directories_module, {"directories": spec(tmp_path)})
    assert ok and result["corrected"] == [str(tmp_path / "app"), str(tmp_path / "app" / "data")]
    assert mode(tmp_path / "app" / "data") == 0o700 and os.lstat(tmp_path / "app").st_uid == 0


def test_check_mode_changes_nothing(run_module, tmp_path):
    ok, result = run_module(directories_module, {"directories": spec(tmp_path)}, check_mode=True)
    assert ok and result["changed"] and len(result["created"]) == 3
    assert not (tmp_path / "app").exists()


def test_a_file_in_the_way_fails(run_module, tmp_path):
    (tmp_path / "app").write_text("x")
    ok, result = run_module(directories_module, {"directories": spec(tmp_path)})
    assert not ok and "not a directory" in result["msg"]
