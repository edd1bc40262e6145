"""The backup tool's logic (roles/backup/files/image/dm_backup.py) without a repository or services: schedule,
retention, LDIF handling, SQLite copies and counts, the manifest comparison, and the restore's file placement."""
from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import sqlite3
from pathlib import Path

import pytest

from ansible_collections.datamancy.stack.plugins.filter.registry import (
    registry_backup_mounts,
    registry_backup_volumes,
)

SOURCE = Path(__file__).resolve().parents[3] / "roles" / "backup" / "files" / "image" / "dm_backup.py"
SPEC = importlib.util.spec_from_file_location("dm_backup", SOURCE)
dm_backup = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(dm_backup)

UTC = dt.timezone.utc


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("15 3 * * *", dt.datetime(2026, 1, 1, 3, 15, tzinfo=UTC), dt.datetime(2026, 1, 2, 3, 15, tzinfo=UTC)),
        ("15 3 * * *", dt.datetime(2026, 1, 1, 3, 14, 59, tzinfo=UTC), dt.datetime(2026, 1, 1, 3, 15, tzinfo=UTC)),
        ("*/20 * * * *", dt.datetime(2026, 1, 1, 10, 41, tzinfo=UTC), dt.datetime(2026, 1, 1, 11, 0, tzinfo=UTC)),
        ("@hourly", dt.datetime(2026, 1, 1, 10, 0, tzinfo=UTC), dt.datetime(2026, 1, 1, 11, 0, tzinfo=UTC)),
        # 2026-01-04 is a Sunday; 7 is Sunday like 0.
        ("0 2 * * 7", dt.datetime(2026, 1, 1, 0, 0, tzinfo=UTC), dt.datetime(2026, 1, 4, 2, 0, tzinfo=UTC)),
        ("0 0 1-2,15 * *", dt.datetime(2026, 1, 2, 0, 0, tzinfo=UTC), dt.datetime(2026, 1, 15, 0, 0, tzinfo=UTC)),
        # Both day fields restricted: either matches (Vixie cron).
        ("0 0 13 * 5", dt.datetime(2026, 1, 1, 0, 0, tzinfo=UTC), dt.datetime(2026, 1, 2, 0, 0, tzinfo=UTC)),
    ],
)
def test_next_run(expression, after, expected):
    assert dm_backup.next_run(expression, after) == expected


@pytest.mark.parametrize("expression", ["", "* * * *", "61 * * * *", "* 24 * * *", "5-1 * * * *", "*/0 * * * *",
                                        "@yearly", "a * * * *"])
def test_invalid_schedules_are_rejected(expression):
    with pytest.raises(ValueError):
        dm_backup.parse_cron(expression)


def test_retention_arguments():
    assert dm_backup.retention_args({"daily": 7, "weekly": 4, "monthly": 0, "last": 0}) == [
        "--keep-daily", "7", "--keep-weekly", "4"]
    with pytest.raises(ValueError):
        dm_backup.retention_args({"daily": 0})


def test_repository_credentials_are_redacted():
    assert dm_backup.redact("rest:https://user:pw@host:8000/repo") == "rest:https://***@host:8000/repo"
    assert dm_backup.redact("/repository") == "/repository"


LDIF = """dn: dc=stack,dc=local
objectClass: dcObject
dc: stack
entryUUID: 1b6c
entryDN: dc=stack,dc=local
subschemaSubentry: cn=Subschema
hasSubordinates: TRUE
createTimestamp: 20260101000000Z

dn: uid=carol,ou=users,dc=stack,dc=local
uid: carol
userPassword:: e1NTSEF9eHl6
memberOf: cn=users,ou=groups,dc=stack,dc=local
entryDN: uid=carol,ou=users,dc=stack,dc=local
hasSubordinates: FALSE
"""


def test_ldif_filter_drops_only_computed_attributes():
    out = dm_backup.filter_ldif(LDIF)
    assert "entryDN" not in out and "subschemaSubentry" not in out and "hasSubordinates" not in out
    # Operational attributes slapadd takes (and slapd cannot recompute) stay, base64 values too.
    for kept in ("entryUUID: 1b6c", "createTimestamp:", "memberOf: cn=users", "userPassword:: e1NTSEF9eHl6"):
        assert kept in out
    assert dm_backup.ldif_entries(out) == 2
    # Entries stay separated by a blank line.
    assert "\n\ndn: uid=carol" in out


def make_db(path: Path, rows: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE chat (id INTEGER PRIMARY KEY, title TEXT)")
    conn.executemany("INSERT INTO chat (title) VALUES (?)", [(f"chat {i}",) for i in range(rows)])
    conn.commit()
    conn.close()


def test_sqlite_copy_and_counts(tmp_path):
    make_db(tmp_path / "webui.db", 3)
    assert dm_backup.is_sqlite(str(tmp_path / "webui.db"))
    dm_backup.sqlite_copy(str(tmp_path / "webui.db"), str(tmp_path / "copy.db"))
    assert dm_backup.sqlite_count(str(tmp_path / "copy.db"), "SELECT COUNT(*) FROM chat") == 3
    # A table that does not exist yet counts as nothing registered, a missing file as unknown.
    assert dm_backup.sqlite_count(str(tmp_path / "copy.db"), "SELECT COUNT(*) FROM nope") is None
    assert dm_backup.sqlite_count(str(tmp_path / "absent.db"), "SELECT 1") is None


def test_dump_volume_copies_databases_and_excludes_the_live_files(tmp_path):
    source = tmp_path / "src" / "open-webui" / "data"
    (source / "uploads").mkdir(parents=True)
    make_db(source / "webui.db", 2)
    (source / "uploads" / "a.txt").write_text("attachment")
    config = {"sqlite_counts": {"open-webui": [{"label": "chats", "file": "webui.db",
                                                "query": "SELECT COUNT(*) FROM chat"}]}}
    manifest = {"counts": {}, "sqlite_files": {}}
    volume = {"service": "open-webui", "name": "data", "kind": "sqlite", "src": str(source)}
    excludes = dm_backup.dump_volume(config, volume, str(tmp_path / "dump"), manifest)
    assert str(source / "webui.db") in excludes and str(source / "webui.db-wal") in excludes
    assert str(source / "uploads" / "a.txt") not in excludes
    assert manifest["counts"]["open-webui"] == {"chats": 2}
    assert set(manifest["sqlite_files"]["open-webui/data"]) == {"webui.db"}
    assert dm_backup.is_sqlite(str(tmp_path / "dump" / "open-webui" / "data" / "webui.db"))


def test_put_volume_restores_files_and_database_copies(tmp_path):
    staging = tmp_path / "staging"
    (staging / "src" / "authelia" / "data").mkdir(parents=True)
    (staging / "src" / "authelia" / "data" / "notification.txt").write_text("hello")
    (staging / "dump" / "authelia" / "data").mkdir(parents=True)
    make_db(staging / "dump" / "authelia" / "data" / "db.sqlite3", 1)
    target = tmp_path / "target"
    target.mkdir()
    (target / "stale").write_text("removed by the restore")
    me = {"uid": os.getuid(), "gid": os.getgid(), "mode": 0o600}
    manifest = {"sqlite_files": {"authelia/data": {"db.sqlite3": me}}}
    volume = {"service": "authelia", "name": "data", "kind": "sqlite"}
    dm_backup.put_volume(str(staging), manifest, volume, str(target))
    assert sorted(os.listdir(target)) == ["db.sqlite3", "notification.txt"]
    assert (target / "notification.txt").read_text() == "hello"
    assert os.stat(target / "db.sqlite3").st_mode & 0o777 == 0o600


def test_compare_reports_every_difference():
    expected = {"entries": 9, "rows": {"db.a": 3, "db.b": 0}}
    assert dm_backup.compare(expected, {"entries": 9, "rows": {"db.a": 3, "db.b": 0}, "extra": 1}) == []
    problems = dm_backup.compare(expected, {"entries": 8, "rows": {"db.a": 3}})
    assert problems == ["entries: expected 9, found 8", "rows.db.b: expected 0, found None"]


def test_verify_against_a_tampered_manifest(tmp_path):
    make_db(tmp_path / "webui.db", 2)
    config = {"sqlite_counts": {"open-webui": [{"label": "chats", "file": "webui.db",
                                                "query": "SELECT COUNT(*) FROM chat"}]}}
    manifest = {"volumes": [{"service": "open-webui", "name": "data", "kind": "sqlite"}],
                "counts": {"open-webui": {"chats": 2}}}
    roots = {"open-webui/data": str(tmp_path)}
    assert dm_backup.verify(config, manifest, ["open-webui"], roots)["open-webui"]["ok"]
    manifest["counts"]["open-webui"]["chats"] = 3
    report = dm_backup.verify(config, manifest, ["open-webui"], roots)["open-webui"]
    assert not report["ok"] and report["problems"] == ["chats: expected 3, found 2"]


def test_status_files(tmp_path):
    config = {"status_dir": str(tmp_path)}
    failed = {"started": "a", "finished": "b", "ok": False, "snapshot_id": None, "services": [], "error": "x",
              "schedule": "@daily"}
    dm_backup.write_status(config, failed)
    assert json.loads((tmp_path / "last-run.json").read_text()) == failed
    assert not (tmp_path / "last-success.json").exists()
    dm_backup.write_status(config, dict(failed, ok=True, snapshot_id="abc", error=None))
    assert json.loads((tmp_path / "last-success.json").read_text())["snapshot_id"] == "abc"


def test_registry_backup_volumes_and_mounts():
    services = {
        "authelia": {"volumes": [{"name": "data", "type": "bind", "path": "/data", "backup": True,
                                  "consistency": "sqlite"}]},
        "redis": {"volumes": [{"name": "redis_data", "path": "/data", "backup": False}]},
        "clickhouse": {"volumes": [{"name": "clickhouse_data", "path": "/x", "backup": True,
                                    "consistency": "clickhouse"}]},
    }
    volumes = registry_backup_volumes(services, "dm_", "/opt/d")
    assert volumes == [
        {"service": "authelia", "name": "data", "kind": "sqlite", "type": "bind", "source": "/opt/d/authelia/data",
         "path": "/data", "files": True},
        {"service": "clickhouse", "name": "clickhouse_data", "kind": "clickhouse", "type": "volume",
         "source": "dm_clickhouse_data", "path": "/x", "files": False},
    ]
    assert registry_backup_mounts(volumes[:1], "/src") == [
        {"type": "bind", "source": "/opt/d/authelia/data", "target": "/src/authelia/data", "read_only": True}]
    services["redis"]["volumes"][0].update(backup=True, consistency="stop")
    with pytest.raises(Exception, match="consistency must be one of"):
        registry_backup_volumes(services)
