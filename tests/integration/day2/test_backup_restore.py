"""Backups for real on the shared full-mode deployment: seeded data in every backed-up service (an LDAP entry, a
TOTP registration in Authelia, an Open WebUI chat, ClickHouse rows, Qdrant points), playbooks/backup.yml, then
every data volume and bind directory removed, playbooks/restore.yml, and every service healthy with the data back.
The restore drill passes on that snapshot and leaves nothing behind.

The deployment is shared by the day-2 modules: this one ends with it restored and healthy."""
from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

from stacklib import StackDeployment, clickhouse, http, qdrant

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "open_webui"))
from owui_helpers import Browser, via_caddy_container, wait_until  # noqa: E402  pylint: disable=wrong-import-position

pytestmark = pytest.mark.integration

BACKED_UP = ["caddy", "authelia", "openldap", "lam", "open-webui", "qdrant", "clickhouse"]
MARK = secrets.token_hex(4)
DAVE_DN = f"uid=dave-{MARK},ou=users,dc=stack,dc=local"


def owui_sql(stack: StackDeployment, sql: str, *params) -> list:
    """A statement on Open WebUI's own database, inside its container as its user (the files stay its own)."""
    code = ("import json, sqlite3, sys; c = sqlite3.connect('/app/backend/data/webui.db', timeout=60); "
            "rows = c.execute(sys.argv[1], json.loads(sys.argv[2])).fetchall(); c.commit(); print(json.dumps(rows))")
    exit_code, output = stack.exec("open-webui", ["python3", "-c", code, sql, json.dumps(list(params))])
    assert exit_code == 0, output
    return json.loads(output.strip().splitlines()[-1])


def ldap_search(stack: StackDeployment, base: str) -> tuple[int, str]:
    """As the slapd user over ldapi (SASL EXTERNAL): the directory's own view, no password involved."""
    return stack.exec("openldap", ["ldapsearch", "-Q", "-LLL", "-Y", "EXTERNAL", "-H", "ldapi:///", "-b", base,
                                   "-s", "base", "dn"])


def healthy(stack: StackDeployment, service: str) -> bool:
    try:
        container = stack.container(service)
    except Exception:  # pylint: disable=broad-exception-caught  # not (yet) there
        return False
    container.reload()
    state = container.attrs["State"]
    return state["Running"] and state.get("Health", {}).get("Status", "healthy") == "healthy"


def database_queries(stack: StackDeployment) -> tuple[str, str]:
    return stack.read_secret("qdrant_api_key").strip(), stack.read_secret("clickhouse_admin_password").strip()


@pytest.fixture(scope="module")
def seeded(full_stack):
    """Real data in every backed-up service, each through its own interface."""
    stack = full_stack
    seeded = {}
    # LDAP: an entry the roles know nothing about (the reconcile never prunes users unless told to).
    ldif = (f"dn: {DAVE_DN}\nobjectClass: inetOrgPerson\nuid: dave-{MARK}\ncn: Dave {MARK}\nsn: Backup\n"
            "mail: dave@example.test\n")
    code, output = stack.exec("openldap", ["sh", "-c", f"printf '{ldif}' | ldapadd -Q -Y EXTERNAL -H ldapi:///"])
    assert code == 0, output
    with via_caddy_container(stack):
        # Authelia: carol registers a TOTP device the way the portal does.
        browser = Browser(stack)
        target = browser.url("open-webui")
        browser.first_factor("carol", target)
        browser.register_and_pass_totp(target)
    # Open WebUI: a saved chat in its database. Not through its API: that needs an OIDC login, whose back-channel
    # token request (Authelia verifying the client secret's digest) outlasts Open WebUI's 5 s client timeout on a
    # loaded test machine; tests/integration/open_webui covers that path.
    seeded["chat_id"] = f"backup-{MARK}"
    chat = {"title": f"backup check {MARK}", "messages": [{"role": "user", "content": MARK}]}
    owui_sql(stack, "INSERT INTO chat (id, user_id, title, created_at, updated_at, archived, chat, pinned, meta) "
             "VALUES (?, 'backup-test', ?, 0, 0, 0, ?, 0, '{}')", seeded["chat_id"], chat["title"], json.dumps(chat))
    key, admin = database_queries(stack)
    points = {"points": [{"id": 7000 + i, "vector": [0.1 * (i + 1)] * 384, "payload": {"mark": MARK}}
                         for i in range(3)]}
    rows = ", ".join(f"('backup-{MARK}', '2026-11-23 10:0{i}:00', {i}.5)" for i in range(4))
    stored, inserted = http(stack, "database", qdrant("/collections/documents/points?wait=true", key, "PUT", points),
                            clickhouse(f"INSERT INTO datamancy.series_values VALUES {rows}", "admin", admin))
    assert stored["status"] == 200 and inserted["status"] == 200, (stored, inserted)
    seeded["stack"] = stack
    return seeded


def test_a_backup_covers_every_marked_service_and_reports_its_status(seeded):
    stack = seeded["stack"]
    run = stack.playbook("playbooks/backup.yml")
    assert run.returncode == 0, run.output[-6000:]
    status_dir = stack.base_dir / "backup" / "status"
    last = json.loads((status_dir / "last-run.json").read_text())
    success = json.loads((status_dir / "last-success.json").read_text())
    assert last == success
    assert last["ok"] is True and last["error"] is None and last["snapshot_id"]
    assert last["snapshot_id"] in run.output
    assert sorted(last["services"]) == sorted(BACKED_UP)
    assert last["schedule"] == "15 3 * * *" and last["started"] <= last["finished"]
    # The backup container: no socket, no capability beyond reading other users' files, read-only.
    container = stack.container("backup")
    host_config = container.attrs["HostConfig"]
    assert host_config["CapAdd"] == ["DAC_READ_SEARCH"] and host_config["CapDrop"] == ["ALL"]
    assert host_config["ReadonlyRootfs"] is True
    assert not [m for m in container.attrs["Mounts"] if "docker.sock" in m["Source"]]
    assert all(not m["RW"] for m in container.attrs["Mounts"] if m["Destination"].startswith(("/src/", "/secrets")))
    # The repository is encrypted: the password file is what opens it, nothing in it is readable as is.
    repository = stack.base_dir / "backup" / "repository"
    assert (repository / "config").exists() and repository.stat().st_mode & 0o777 == 0o700
    everything = b"".join(p.read_bytes() for p in repository.rglob("*") if p.is_file())
    assert MARK.encode() not in everything
    seeded["snapshot"] = last["snapshot_id"]


def test_restore_refuses_unknown_services_before_changing_anything(seeded):
    stack = seeded["stack"]
    before = stack.container("openldap").attrs["State"]["StartedAt"]
    run = stack.playbook("playbooks/restore.yml", restore_services="openldap,nosuchservice")
    assert run.returncode != 0
    assert "unknown service(s) nosuchservice" in run.output
    stack.container("openldap").reload()
    assert stack.container("openldap").attrs["State"]["StartedAt"] == before


def test_removing_every_data_volume_then_restoring_brings_all_back(seeded):
    stack = seeded["stack"]
    assert seeded.get("snapshot"), "needs the backup of the test before"
    volume_prefix = stack.vars["stack_volume_prefix"]
    # Everything gone: the services' containers (and the backup's, which mounts their files), their named volumes,
    # their bind directories.
    for service in BACKED_UP + ["backup"]:
        stack.container(service).remove(force=True)
    removed = []
    for volume in stack.docker.volumes.list():
        if volume.name.startswith(volume_prefix) and volume.name[len(volume_prefix):] in (
                "openldap_data", "openldap_config", "lam_config", "qdrant_storage", "qdrant_snapshots",
                "clickhouse_data"):
            volume.remove(force=True)
            removed.append(volume.name)
    assert len(removed) == 6, removed
    for service in ("authelia", "open-webui", "caddy"):
        data = stack.base_dir / service / "data"
        for child in data.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()

    # Generous start-up waits: Open WebUI's first start after a restore takes minutes on a loaded test machine.
    run = stack.playbook("playbooks/restore.yml", restore_snapshot=seeded["snapshot"], open_webui_wait_timeout=900)
    assert run.returncode == 0, run.output[-8000:]
    for service in BACKED_UP + ["backup"]:
        assert wait_until(lambda s=service: healthy(stack, s), 180, f"{service} healthy")

    # LDAP: the seeded entry and the role's user, with the same entryUUID-bearing data slapadd loaded.
    for dn in (DAVE_DN, "uid=carol,ou=users,dc=stack,dc=local"):
        code, output = ldap_search(stack, dn)
        assert code == 0 and f"dn: {dn}" in output, output
    key, admin = database_queries(stack)
    count, rows = http(stack, "database",
                       qdrant("/collections/documents/points/count", key, "POST",
                              {"filter": {"must": [{"key": "mark", "match": {"value": MARK}}]}, "exact": True}),
                       clickhouse(f"SELECT count() FROM datamancy.series_values WHERE series_id = 'backup-{MARK}'",
                                  "admin", admin))
    assert json.loads(count["body"])["result"]["count"] == 3, count
    assert rows["body"].strip() == "4", rows
    # Authelia: carol's TOTP registration is back in its storage (the storage is the evidence, not the API's view).
    authelia_db = stack.base_dir / "authelia" / "data" / "db.sqlite3"
    with contextlib.closing(sqlite3.connect(f"file:{authelia_db}?mode=ro", uri=True)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM totp_configurations WHERE username = 'carol'").fetchone() == (1,)
    with via_caddy_container(stack):
        # And it still serves logins from the restored directory and storage.
        browser = Browser(stack)
        browser.first_factor("carol", browser.url("open-webui"))
    # Open WebUI: the chat, in the database the restored (healthy) service runs on.
    assert owui_sql(stack, "SELECT title, chat FROM chat WHERE id = ?", seeded["chat_id"]) == [
        [f"backup check {MARK}", json.dumps({"title": f"backup check {MARK}",
                                             "messages": [{"role": "user", "content": MARK}]})]]
    # Nothing of the restore lingers: no staging copy, no one-off container.
    assert not (stack.base_dir / "backup" / "restore").exists()
    assert not [c.name for c in stack.containers() if "backup-" in c.name]


def test_the_restore_drill_passes_and_leaves_nothing_behind(seeded):
    stack = seeded["stack"]
    run = stack.playbook("playbooks/restore_drill.yml")
    assert run.returncode == 0, run.output[-8000:]
    for service in BACKED_UP:
        assert f"{service}: pass" in run.output, run.output[-4000:]
    drill = f"{stack.prefix}drill-"
    assert not [c.name for c in stack.docker.containers.list(all=True) if c.name.startswith(drill)]
    assert not [n.name for n in stack.docker.networks.list() if n.name.startswith(drill)]
    assert not [v.name for v in stack.docker.volumes.list() if v.name.startswith(drill)]
    assert not (stack.base_dir / "backup" / "drill").exists()
    for service in BACKED_UP:
        assert healthy(stack, service), service
