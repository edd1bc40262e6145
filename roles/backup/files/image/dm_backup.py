#!/usr/bin/python3
"""dm-backup: consistent backups of the stack's data into a restic repository, restores and restore drills.

Runs inside the backup container, which has no Docker socket: every consistent copy goes through the service's
own interface (SQLite's backup API on the mounted files, ldapsearch as the LDAP admin, ClickHouse's HTTP
interface, Qdrant's snapshot API). Configuration: a JSON file (DM_BACKUP_CONFIG, rendered by the backup role).

Snapshot layout (absolute paths inside the repository):
  /src/<service>/<volume>/...    the volume's files (SQLite databases excluded: their copies are under /dump)
  /dump/<service>/<volume>/...   consistent copies: SQLite databases, data.ldif, ClickHouse tables, Qdrant snapshots
  /dump/manifest.json            what was backed up, how, and content counts the drill compares against
  /secrets/...                   the secret store

Commands: run (one backup), schedule (the scheduler loop), init, snapshots, restore (stage a snapshot and put
the files into mounted targets), import (ClickHouse and Qdrant over their APIs), verify (counts vs. manifest).
"""
from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

SQLITE_MAGIC = b"SQLite format 3\x00"
# Attributes ldapsearch returns with '+' that slapadd must not get: computed on the fly by slapd.
LDAP_COMPUTED = {"entrydn", "subschemasubentry", "hassubordinates", "numsubordinates"}
# Volume kinds whose data comes over the network, not from mounted files.
FILE_KINDS = {"none", "sqlite", "ldif"}
CLICKHOUSE_SKIP_DATABASES = {"system", "INFORMATION_SCHEMA", "information_schema"}


class BackupError(Exception):
    pass


def log(message: str) -> None:
    print(f"dm-backup: {message}", file=sys.stderr, flush=True)


def utcnow() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def read_secret(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read().strip()


# --- schedule ----------------------------------------------------------------------------------------------

ALIASES = {"@hourly": "0 * * * *", "@daily": "0 3 * * *", "@weekly": "0 3 * * 0", "@monthly": "0 3 1 * *"}
FIELDS = [("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("weekday", 0, 7)]


def parse_cron(expression: str) -> list[set[int]]:
    """Five cron fields (numbers, *, ranges a-b, steps /n, lists) or an @alias; weekday 7 is Sunday like 0."""
    expression = ALIASES.get(expression.strip(), expression.strip())
    parts = expression.split()
    if len(parts) != 5:
        raise ValueError(f"a schedule needs 5 fields (minute hour day month weekday) or an @alias: {expression!r}")
    result = []
    for part, (name, low, high) in zip(parts, FIELDS):
        values: set[int] = set()
        for item in part.split(","):
            match = re.fullmatch(r"(\*|\d+(?:-\d+)?)(?:/(\d+))?", item)
            if not match:
                raise ValueError(f"invalid {name} field {part!r}")
            span, step = match.group(1), int(match.group(2) or 1)
            if span == "*":
                start, end = low, high
            elif "-" in span:
                start, end = (int(v) for v in span.split("-"))
            else:
                start = end = int(span)
                if match.group(2):
                    end = high
            if not low <= start <= end <= high or step < 1:
                raise ValueError(f"{name} field {part!r} is out of range {low}-{high}")
            values.update(range(start, end + 1, step))
        if name == "weekday" and 7 in values:
            values = (values - {7}) | {0}
        result.append(values)
    return result


def cron_matches(fields: list[set[int]], moment: dt.datetime, day_restricted: bool, weekday_restricted: bool) -> bool:
    minute, hour, day, month, weekday = fields
    if moment.minute not in minute or moment.hour not in hour or moment.month not in month:
        return False
    day_ok = moment.day in day
    weekday_ok = (moment.isoweekday() % 7) in weekday
    # Vixie cron: when both day fields are restricted, either may match.
    if day_restricted and weekday_restricted:
        return day_ok or weekday_ok
    return day_ok and weekday_ok


def next_run(expression: str, after: dt.datetime) -> dt.datetime:
    """The first minute strictly after `after` that the schedule matches (UTC)."""
    fields = parse_cron(expression)
    parts = ALIASES.get(expression.strip(), expression.strip()).split()
    day_restricted, weekday_restricted = parts[2] != "*", parts[4] != "*"
    moment = after.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    for _minute in range(366 * 24 * 60):
        if cron_matches(fields, moment, day_restricted, weekday_restricted):
            return moment
        moment += dt.timedelta(minutes=1)
    raise ValueError(f"the schedule {expression!r} never matches")


# --- restic ------------------------------------------------------------------------------------------------

def read_env_file(path: str) -> dict:
    """KEY=VALUE lines (Docker's env-file format: no quoting, # comments): the remote repository's credentials,
    handed over as a file so they never enter the container's configuration."""
    env = {}
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return env
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if sep:
            env[key.strip()] = value
    return env


def restic_env(config: dict) -> dict:
    env = dict(os.environ)
    if config.get("environment_file"):
        env.update(read_env_file(config["environment_file"]))
    env["RESTIC_REPOSITORY"] = config["repository"]
    env["RESTIC_PASSWORD_FILE"] = config["password_file"]
    env.setdefault("RESTIC_CACHE_DIR", "/tmp/restic-cache")
    return env


def restic(config: dict, *args: str, capture: bool = True) -> str:
    command = ["restic", *args]
    completed = subprocess.run(command, env=restic_env(config), capture_output=capture, text=True, check=False)
    if completed.returncode != 0:
        raise BackupError(f"restic {args[0]} failed ({completed.returncode}): {(completed.stderr or '').strip()[-2000:]}")
    return completed.stdout or ""


def ensure_repository(config: dict) -> bool:
    """Initialise the repository unless it exists; True when it was created."""
    probe = subprocess.run(["restic", "cat", "config"], env=restic_env(config), capture_output=True, text=True,
                           check=False)
    if probe.returncode == 0:
        return False
    if config["repository"].startswith("/"):
        os.makedirs(config["repository"], exist_ok=True)
    restic(config, "init")
    log(f"initialised the repository {redact(config['repository'])}")
    return True


def redact(repository: str) -> str:
    """A repository URL, or a message naming one, without credentials (s3/rest URLs may carry user:password@)."""
    return re.sub(r"//[^/@]+@", "//***@", repository)


def retention_args(keep: dict) -> list[str]:
    args = []
    for unit in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
        value = int(keep.get(unit) or 0)
        if value > 0:
            args += [f"--keep-{unit}", str(value)]
    if not args:
        raise ValueError("the retention policy keeps nothing: set at least one of last/daily/weekly/monthly")
    return args


# --- SQLite ------------------------------------------------------------------------------------------------

def is_sqlite(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def sqlite_copy(source: str, dest: str) -> None:
    """A consistent copy through SQLite's online backup API; the source is opened read-only."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)
            # One self-contained file: a WAL-mode source makes the copy WAL too; the application switches back.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()


def sqlite_count(path: str, query: str) -> int | None:
    if not os.path.exists(path):
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute(query).fetchone()[0])
    except sqlite3.OperationalError:
        return None  # the table does not exist (yet): nothing registered
    finally:
        conn.close()


# --- LDAP --------------------------------------------------------------------------------------------------

def ldap_export(ldap: dict) -> str:
    command = ["ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-H", ldap["url"], "-D", ldap["bind_dn"],
               "-y", ldap["password_file"], "-b", ldap["base_dn"], "(objectClass=*)", "*", "+"]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise BackupError(f"ldapsearch failed ({completed.returncode}): {completed.stderr.strip()[-1000:]}")
    return filter_ldif(completed.stdout)


def filter_ldif(text: str) -> str:
    """Drop the attributes slapd computes (slapadd refuses them); keep the rest, operational ones included."""
    out = []
    for line in text.splitlines():
        name = re.split(r":", line, maxsplit=1)[0].lower() if line and not line.startswith((" ", "#")) else ""
        if name.split(";")[0] in LDAP_COMPUTED:
            continue
        out.append(line)
    return "\n".join(out).strip() + "\n"


def ldif_entries(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.startswith("dn:"))


def ldap_count(ldap: dict) -> int:
    command = ["ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-H", ldap["url"], "-D", ldap["bind_dn"],
               "-y", ldap["password_file"], "-b", ldap["base_dn"], "(objectClass=*)", "1.1"]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise BackupError(f"ldapsearch failed ({completed.returncode}): {completed.stderr.strip()[-1000:]}")
    return ldif_entries(completed.stdout)


# --- HTTP (ClickHouse, Qdrant) -----------------------------------------------------------------------------

def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None, timeout: int = 300,
         out=None) -> bytes:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if out is not None:
                shutil.copyfileobj(response, out)
                return b""
            return response.read()
    except urllib.error.HTTPError as error:
        raise BackupError(f"{method} {url.split('?')[0]} answered {error.code}: {error.read()[:500]!r}") from None
    except urllib.error.URLError as error:
        raise BackupError(f"{method} {url.split('?')[0]} failed: {error.reason}") from None


class ClickHouse:
    def __init__(self, spec: dict):
        self.url = spec["url"].rstrip("/") + "/"
        self.headers = {"X-ClickHouse-User": spec["user"], "X-ClickHouse-Key": read_secret(spec["password_file"])}

    def query(self, sql: str, body: bytes | None = None, out=None) -> bytes:
        if body is None:
            return http("POST", self.url, sql.encode(), self.headers, out=out)
        return http("POST", self.url + "?" + urllib.parse.urlencode({"query": sql}), body, self.headers, out=out)

    def json(self, sql: str) -> list[dict]:
        return json.loads(self.query(sql + " FORMAT JSON"))["data"]

    def tables(self) -> list[tuple[str, str]]:
        rows = self.json("SELECT database, name, engine FROM system.tables")
        return sorted((r["database"], r["name"]) for r in rows
                      if r["database"] not in CLICKHOUSE_SKIP_DATABASES and not r["name"].startswith(".inner")
                      and r["engine"] not in ("View", "MaterializedView", "Dictionary"))

    def count(self, database: str, table: str) -> int:
        return int(self.json(f"SELECT count() AS n FROM {quote_ident(database)}.{quote_ident(table)}")[0]["n"])

    def counts(self) -> dict:
        return {f"{db}.{table}": self.count(db, table) for db, table in self.tables()}


def quote_ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class Qdrant:
    def __init__(self, spec: dict):
        self.url = spec["url"].rstrip("/")
        self.headers = {"api-key": read_secret(spec["api_key_file"])} if spec.get("api_key_file") else {}

    def call(self, method: str, path: str, body: dict | None = None):
        headers = dict(self.headers, **({"Content-Type": "application/json"} if body is not None else {}))
        data = json.dumps(body).encode() if body is not None else None
        return json.loads(http(method, self.url + path, data, headers))["result"]

    def collections(self) -> list[str]:
        return sorted(c["name"] for c in self.call("GET", "/collections")["collections"])

    def count(self, name: str) -> int:
        return int(self.call("POST", f"/collections/{name}/points/count", {"exact": True})["count"])

    def counts(self) -> dict:
        return {name: self.count(name) for name in self.collections()}

    def snapshot(self, name: str, dest: str) -> None:
        snap = self.call("POST", f"/collections/{name}/snapshots?wait=true")
        with open(dest, "wb") as fh:
            http("GET", f"{self.url}/collections/{name}/snapshots/{snap['name']}", headers=self.headers, out=fh)
        # The copy is in the repository now; do not let snapshots pile up in Qdrant's volume.
        self.call("DELETE", f"/collections/{name}/snapshots/{snap['name']}?wait=true")

    def upload(self, name: str, path: str) -> None:
        boundary = uuid.uuid4().hex
        with open(path, "rb") as fh:
            payload = fh.read()
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"snapshot\"; filename=\"{name}.snapshot\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + payload + f"\r\n--{boundary}--\r\n".encode()
        headers = dict(self.headers, **{"Content-Type": f"multipart/form-data; boundary={boundary}"})
        http("POST", f"{self.url}/collections/{name}/snapshots/upload?priority=snapshot&wait=true", body, headers)


# --- backup ------------------------------------------------------------------------------------------------

def owner_of(path: str) -> dict:
    st = os.stat(path)
    return {"uid": st.st_uid, "gid": st.st_gid, "mode": st.st_mode & 0o7777}


def dump_volume(config: dict, volume: dict, dump_dir: str, manifest: dict) -> list[str]:
    """Write the consistent copy of one volume under dump_dir; returns paths restic must exclude from /src."""
    service, kind = volume["service"], volume["kind"]
    source = volume.get("src") or os.path.join("/src", service, volume["name"])
    target = os.path.join(dump_dir, service, volume["name"])
    os.makedirs(target, exist_ok=True)
    excludes: list[str] = []
    counts = manifest["counts"].setdefault(service, {})
    if kind == "sqlite":
        for root, _dirs, files in os.walk(source):
            for filename in sorted(files):
                path = os.path.join(root, filename)
                if not is_sqlite(path):
                    continue
                rel = os.path.relpath(path, source)
                os.makedirs(os.path.dirname(os.path.join(target, rel)), exist_ok=True)
                sqlite_copy(path, os.path.join(target, rel))
                manifest["sqlite_files"].setdefault(f"{service}/{volume['name']}", {})[rel] = owner_of(path)
                excludes += [path, path + "-wal", path + "-shm", path + "-journal"]
        for spec in config.get("sqlite_counts", {}).get(service, []):
            value = sqlite_count(os.path.join(target, spec["file"]), spec["query"])
            counts[spec["label"]] = value or 0
    elif kind == "ldif":
        text = ldap_export(config["ldap"])
        with open(os.path.join(target, "data.ldif"), "w", encoding="utf-8") as fh:
            fh.write(text)
        counts["entries"] = ldif_entries(text)
    elif kind == "clickhouse":
        clickhouse = ClickHouse(config["clickhouse"])
        tables = []
        for database, table in clickhouse.tables():
            create = clickhouse.json(f"SHOW CREATE TABLE {quote_ident(database)}.{quote_ident(table)}")[0]
            statement = create.get("statement") or next(iter(create.values()))
            base = f"{database}.{table}"
            counts.setdefault("rows", {})[base] = clickhouse.count(database, table)
            with open(os.path.join(target, base + ".native"), "wb") as fh:
                clickhouse.query(f"SELECT * FROM {quote_ident(database)}.{quote_ident(table)} FORMAT Native", out=fh)
            tables.append({"database": database, "table": table, "create": statement, "file": base + ".native"})
        with open(os.path.join(target, "tables.json"), "w", encoding="utf-8") as fh:
            json.dump(tables, fh, indent=1)
    elif kind == "qdrant":
        qdrant = Qdrant(config["qdrant"])
        for name in qdrant.collections():
            counts.setdefault("points", {})[name] = qdrant.count(name)
            qdrant.snapshot(name, os.path.join(target, f"{name}.snapshot"))
    return excludes


def write_status(config: dict, status: dict) -> None:
    directory = config["status_dir"]
    os.makedirs(directory, exist_ok=True)
    names = ["last-run.json"] + (["last-success.json"] if status["ok"] else [])
    for name in names:
        tmp = os.path.join(directory, f".{name}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(status, fh, indent=1)
            fh.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(directory, name))


def run_backup(config: dict) -> dict:
    status = {"started": utcnow(), "finished": None, "ok": False, "snapshot_id": None,
              "services": sorted(config["services"]), "error": None, "schedule": config["schedule"]}
    lock = open("/tmp/dm-backup.lock", "w", encoding="utf-8")  # pylint: disable=consider-using-with
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # /dump is a directory of the host (mounted): SQLite copies and exports can be larger than a tmpfs.
        dump_dir = "/dump"
        os.makedirs(dump_dir, exist_ok=True)
        empty_dir(dump_dir)
        ensure_repository(config)
        manifest = {"created": status["started"], "services": status["services"], "volumes": config["volumes"],
                    "counts": {}, "sqlite_files": {}}
        excludes: list[str] = []
        for volume in config["volumes"]:
            log(f"dumping {volume['service']}/{volume['name']} ({volume['kind']})")
            excludes += dump_volume(config, volume, dump_dir, manifest)
        with open(os.path.join(dump_dir, "manifest.json"), "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=1, sort_keys=True)
        exclude_file = "/tmp/dm-backup.exclude"
        with open(exclude_file, "w", encoding="utf-8") as fh:
            fh.write("".join(f"{path}\n" for path in excludes))
        paths = [p for p in ["/src", "/secrets", dump_dir] if os.path.exists(p)]
        output = restic(config, "backup", "--json", "--host", config["host"], "--tag", "datamancy",
                        "--exclude-file", exclude_file, *paths)
        summary = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        snapshot = next((m.get("snapshot_id") for m in summary if m.get("message_type") == "summary"), None)
        if not snapshot:
            raise BackupError("restic reported no snapshot id")
        restic(config, "forget", "--prune", "--host", config["host"], "--tag", "datamancy",
               *retention_args(config["keep"]))
        status.update(ok=True, snapshot_id=snapshot)
    except Exception as error:  # pylint: disable=broad-exception-caught  # the status must say why, always
        # Without credentials: a remote repository's URL in restic's message may carry user:password@.
        status["error"] = redact(f"{type(error).__name__}: {error}" if not isinstance(error, BackupError) else str(error))
        log(f"backup failed: {error}")
    finally:
        if os.path.isdir("/dump"):
            empty_dir("/dump")
        status["finished"] = utcnow()
        write_status(config, status)
        lock.close()
    return status


# --- restore -----------------------------------------------------------------------------------------------

def empty_dir(path: str) -> None:
    for entry in os.listdir(path):
        full = os.path.join(path, entry)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full)
        else:
            os.unlink(full)


def copy_tree(src: str, dest: str) -> None:
    """Copy src's contents into dest keeping modes, owners and times (cp -a)."""
    if not os.path.isdir(src):
        return
    subprocess.run(["cp", "-a", f"{src}/.", dest], check=True)
    st = os.stat(src)
    os.chown(dest, st.st_uid, st.st_gid)
    os.chmod(dest, st.st_mode & 0o7777)


def snapshot_manifest(staging: str) -> dict:
    with open(os.path.join(staging, "dump", "manifest.json"), encoding="utf-8") as fh:
        return json.load(fh)


def put_volume(staging: str, manifest: dict, volume: dict, target: str) -> None:
    """Replace the target's contents with the volume's files from the staged snapshot."""
    service, name, kind = volume["service"], volume["name"], volume["kind"]
    os.makedirs(target, exist_ok=True)
    empty_dir(target)
    if kind in ("none", "sqlite"):
        copy_tree(os.path.join(staging, "src", service, name), target)
    if kind == "sqlite":
        dump = os.path.join(staging, "dump", service, name)
        for rel, meta in manifest["sqlite_files"].get(f"{service}/{name}", {}).items():
            dest = os.path.join(target, rel)
            shutil.copyfile(os.path.join(dump, rel), dest)
            os.chown(dest, meta["uid"], meta["gid"])
            os.chmod(dest, meta["mode"])
    if kind == "ldif":
        # The configuration volume (restored before, kind none) tells slapadd the suffix and the database, whose
        # directory (olcDbDirectory) must be this same volume: the caller mounts it at the service's path too.
        config_dir = target_of(volume, "openldap_config")
        ldif = os.path.join(staging, "dump", service, name, "data.ldif")
        subprocess.run(["slapadd", "-q", "-n", "1", "-F", config_dir, "-l", ldif], check=True)
        st = os.stat(config_dir)
        subprocess.run(["chown", "-R", f"{st.st_uid}:{st.st_gid}", target], check=True)
        os.chown(target, st.st_uid, st.st_gid)


def target_of(volume: dict, name: str) -> str:
    return os.path.join("/target", volume["service"], name)


def restore_order(volume: dict) -> int:
    # The LDAP configuration before the data slapadd loads through it.
    return 1 if volume["kind"] == "ldif" else 0


def restore(config: dict, snapshot: str, services: list[str], staging: str, with_secrets: bool) -> dict:
    os.makedirs(staging, exist_ok=True)
    empty_dir(staging)
    includes = ["/dump/manifest.json"]
    for service in services:
        includes += [f"/src/{service}", f"/dump/{service}"]
    if with_secrets:
        includes.append("/secrets")
    args = ["restore", snapshot, "--target", staging, "--host", config["host"]] if snapshot == "latest" else \
        ["restore", snapshot, "--target", staging]
    for include in includes:
        args += ["--include", include]
    restic(config, *args)
    manifest = snapshot_manifest(staging)
    # ClickHouse and Qdrant are loaded through their APIs afterwards (import), once their servers run.
    volumes = sorted((v for v in manifest["volumes"] if v["service"] in services and v["kind"] in FILE_KINDS),
                     key=restore_order)
    for volume in volumes:
        target = os.path.join("/target", volume["service"], volume["name"])
        if not os.path.isdir(target):
            raise BackupError(f"{target} is not mounted: cannot restore {volume['service']}/{volume['name']}")
        log(f"restoring {volume['service']}/{volume['name']} ({volume['kind']})")
        put_volume(staging, manifest, volume, target)
    if with_secrets:
        copy_tree(os.path.join(staging, "secrets"), "/target/secrets")
    return manifest


def import_api(config: dict, staging: str, services: list[str]) -> None:
    """Load ClickHouse tables and Qdrant collections from the staged snapshot through their APIs."""
    manifest = snapshot_manifest(staging)
    for volume in manifest["volumes"]:
        if volume["service"] not in services:
            continue
        dump = os.path.join(staging, "dump", volume["service"], volume["name"])
        if volume["kind"] == "clickhouse":
            clickhouse = ClickHouse(config["clickhouse"])
            with open(os.path.join(dump, "tables.json"), encoding="utf-8") as fh:
                tables = json.load(fh)
            for table in tables:
                name = f"{quote_ident(table['database'])}.{quote_ident(table['table'])}"
                log(f"importing ClickHouse {table['database']}.{table['table']}")
                clickhouse.query(f"CREATE DATABASE IF NOT EXISTS {quote_ident(table['database'])}")
                clickhouse.query(f"DROP TABLE IF EXISTS {name}")
                clickhouse.query(table["create"])
                with open(os.path.join(dump, table["file"]), "rb") as fh:
                    data = fh.read()
                if data:
                    clickhouse.query(f"INSERT INTO {name} FORMAT Native", body=data)
        elif volume["kind"] == "qdrant":
            qdrant = Qdrant(config["qdrant"])
            for filename in sorted(os.listdir(dump)):
                if filename.endswith(".snapshot"):
                    log(f"importing Qdrant collection {filename[:-9]}")
                    qdrant.upload(filename[:-9], os.path.join(dump, filename))


def current_counts(config: dict, service: str, kind: str, root: str) -> dict:
    """The live (or scratch) content counts of one volume, in the manifest's shape."""
    if kind == "sqlite":
        counts = {}
        for spec in config.get("sqlite_counts", {}).get(service, []):
            path = os.path.join(root, spec["file"])
            if not os.path.exists(path):
                raise BackupError(f"{path} is missing or unreadable")
            counts[spec["label"]] = sqlite_count(path, spec["query"]) or 0
        return counts
    if kind == "ldif":
        return {"entries": ldap_count(config["ldap"])}
    if kind == "clickhouse":
        return {"rows": ClickHouse(config["clickhouse"]).counts()}
    if kind == "qdrant":
        return {"points": Qdrant(config["qdrant"]).counts()}
    return {}


def compare(expected: dict, actual: dict) -> list[str]:
    """Differences between the manifest's counts and the restored ones; every expected key must match."""
    problems = []
    for key, value in expected.items():
        if isinstance(value, dict):
            problems += [f"{key}.{p}" for p in compare(value, actual.get(key) or {})]
        elif actual.get(key) != value:
            problems.append(f"{key}: expected {value}, found {actual.get(key)}")
    return problems


def verify(config: dict, manifest: dict, services: list[str], roots: dict) -> dict:
    report = {}
    for service in services:
        found: dict = {}
        try:
            for volume in manifest["volumes"]:
                if volume["service"] == service:
                    key = f"{service}/{volume['name']}"
                    root = roots.get(key, f"/target/{key}")
                    found.update(current_counts(config, service, volume["kind"], root))
            problems = compare(manifest["counts"].get(service, {}), found)
        except (BackupError, OSError, sqlite3.Error, ValueError) as error:
            problems = [str(error)]
        report[service] = {"ok": not problems, "expected": manifest["counts"].get(service, {}), "found": found,
                           "problems": problems}
    return report


# --- scheduler ---------------------------------------------------------------------------------------------

def schedule_loop(config: dict) -> None:
    expression = config["schedule"]
    parse_cron(expression)
    while True:
        now = dt.datetime.now(dt.timezone.utc)
        due = next_run(expression, now)
        log(f"next backup at {due.isoformat()}")
        # Short sleeps: a clock jump or a container pause does not skip a run by hours.
        while dt.datetime.now(dt.timezone.utc) < due:
            with open("/tmp/dm-backup.alive", "w", encoding="utf-8") as fh:
                fh.write(utcnow())
            time.sleep(min(30.0, max(1.0, (due - dt.datetime.now(dt.timezone.utc)).total_seconds())))
        status = run_backup(config)
        log(f"backup {'succeeded: ' + str(status['snapshot_id']) if status['ok'] else 'FAILED: ' + str(status['error'])}")


# --- command line ------------------------------------------------------------------------------------------

def load_config(path: str, overrides: list[str]) -> dict:
    with open(path, encoding="utf-8") as fh:
        config = json.load(fh)
    for item in overrides:
        key, _sep, value = item.partition("=")
        section, _dot, field = key.partition(".")
        if field:
            config.setdefault(section, {})[field] = value
        else:
            config[section] = value
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dm-backup")
    parser.add_argument("--config", default=os.environ.get("DM_BACKUP_CONFIG", "/etc/datamancy/backup.json"))
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a configuration value (the drill points the clients at scratch services)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run")
    sub.add_parser("schedule")
    sub.add_parser("init")
    sub.add_parser("snapshots")
    for name in ("restore", "import", "verify"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--services", required=True, help="comma-separated")
        cmd.add_argument("--staging", default="/staging")
        if name == "restore":
            cmd.add_argument("--snapshot", default="latest")
            cmd.add_argument("--secrets", action="store_true", help="also restore the secret store into /target/secrets")
        if name == "verify":
            cmd.add_argument("--root", action="append", default=[], metavar="SERVICE/VOLUME=PATH",
                             help="where a file volume's restored files are (SQLite counts)")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.set)
    services = [s for s in getattr(args, "services", "").split(",") if s]
    try:
        if args.command == "run":
            status = run_backup(config)
            print(json.dumps(status))
            return 0 if status["ok"] else 1
        if args.command == "schedule":
            schedule_loop(config)
        elif args.command == "init":
            print(json.dumps({"created": ensure_repository(config)}))
        elif args.command == "snapshots":
            print(restic(config, "snapshots", "--json", "--host", config["host"]))
        elif args.command == "restore":
            restore(config, args.snapshot, services, args.staging, args.secrets)
            print(json.dumps({"restored": services}))
        elif args.command == "import":
            import_api(config, args.staging, services)
            print(json.dumps({"imported": services}))
        elif args.command == "verify":
            roots = dict(item.split("=", 1) for item in args.root)
            report = verify(config, snapshot_manifest(args.staging), services, roots)
            print(json.dumps(report))
            return 0 if all(r["ok"] for r in report.values()) else 3
    except (BackupError, OSError, ValueError, subprocess.CalledProcessError, sqlite3.Error) as error:
        log(f"{args.command} failed: {redact(str(error))}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
