"""qdrant-standin: a small STAND-IN for Qdrant's REST API. It is NOT Qdrant.

It exists because the test machines cannot pull the real image. It implements only the part of the REST API
that the datamancy.stack collection and its tests use, with Qdrant's response shapes, so that clients,
health checks, API-key handling and backup/restore of the storage volume can be tested for real:

  GET    /healthz /livez /readyz                       (open, like Qdrant's)
  GET    /                                              server info
  GET    /collections
  PUT    /collections/{name}                            {"vectors": {"size": N, "distance": "Cosine"}}
  GET    /collections/{name}
  GET    /collections/{name}/exists
  DELETE /collections/{name}
  PUT    /collections/{name}/points                     upsert ({"points": [...]} or {"batch": {...}})
  POST   /collections/{name}/points                     retrieve by ids
  GET    /collections/{name}/points/{id}
  POST   /collections/{name}/points/delete              by ids or filter
  POST   /collections/{name}/points/search              exact (brute force), deterministic order
  POST   /collections/{name}/points/scroll
  POST   /collections/{name}/points/count

Filters support must / should / must_not with `key` + `match` ({"value"} or {"any"}) and `has_id`;
anything else is rejected with 400 rather than silently ignored.

Configuration (environment, Qdrant's own names where Qdrant has one):
  QDRANT__SERVICE__API_KEY       required key (header `api-key` or `Authorization: Bearer`); unset = open
  QDRANT__SERVICE__HTTP_PORT     default 6333
  QDRANT__SERVICE__HOST          default 0.0.0.0
  QDRANT__STORAGE__STORAGE_PATH  default /qdrant/storage (one JSON file per collection, atomic writes)
"""

import email.parser
import hashlib
import hmac
import json
import math
import os
import re
import signal
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "0.1.0-standin"
TITLE = "qdrant-standin (NOT Qdrant)"
MAX_BODY = 64 * 1024 * 1024
OPEN_PATHS = {"/healthz", "/livez", "/readyz"}
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")
DISTANCES = {"Cosine", "Dot", "Euclid", "Manhattan"}


class RawReply:
    """A reply that is not Qdrant's JSON envelope (a snapshot download)."""

    def __init__(self, data, content_type="application/octet-stream"):
        self.data = data
        self.content_type = content_type


class ApiError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def normalise_id(raw):
    """Qdrant point ids are unsigned integers or UUIDs; UUIDs are compared in canonical form."""
    if isinstance(raw, bool):
        raise ApiError(400, f"Format error in JSON body: invalid point id {raw!r}")
    if isinstance(raw, int):
        if raw < 0:
            raise ApiError(400, f"Format error in JSON body: invalid point id {raw!r}")
        return raw
    if isinstance(raw, str):
        try:
            return str(uuid.UUID(raw))
        except ValueError:
            pass
    raise ApiError(400, f"Format error in JSON body: invalid point id {raw!r}, expected an unsigned integer or a UUID")


def id_key(point_id):
    """JSON object keys are strings: prefix them so 1 and "1..." UUIDs cannot collide."""
    return f"n:{point_id}" if isinstance(point_id, int) else f"u:{point_id}"


def id_order(point_id):
    # Qdrant orders integer ids before UUIDs.
    return (0, point_id, "") if isinstance(point_id, int) else (1, 0, point_id)


class Store:
    """All collections in memory, each persisted to its own JSON file after every change."""

    def __init__(self, path):
        self.dir = os.path.join(path, "collections")
        os.makedirs(self.dir, exist_ok=True)
        self.lock = threading.Lock()
        self.collections = {}
        self.snapshots = {}
        self.operation_id = 0
        for entry in sorted(os.listdir(self.dir)):
            if entry.endswith(".json"):
                with open(os.path.join(self.dir, entry), encoding="utf-8") as fh:
                    data = json.load(fh)
                self.collections[data["name"]] = data
                self.operation_id = max(self.operation_id, data.get("operation_id", 0))

    def _file(self, name):
        return os.path.join(self.dir, f"{name}.json")

    def persist(self, name):
        """Write to a temporary file in the same directory, fsync, then rename over the old file."""
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.collections[name], fh, separators=(",", ":"))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self._file(name))
            dir_fd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def get(self, name):
        collection = self.collections.get(name)
        if collection is None:
            raise ApiError(404, f"Not found: Collection `{name}` doesn't exist!")
        return collection

    def create(self, name, size, distance):
        if name in self.collections:
            raise ApiError(409, f"Wrong input: Collection `{name}` already exists!")
        self.collections[name] = {"name": name, "size": size, "distance": distance, "points": {}, "operation_id": 0}
        self.persist(name)

    def delete(self, name):
        if name not in self.collections:
            return False
        del self.collections[name]
        os.unlink(self._file(name))
        return True

    def next_operation(self, name):
        self.operation_id += 1
        self.collections[name]["operation_id"] = self.operation_id
        return self.operation_id


# ---------------------------------------------------------------------------------------------------------
# Vector maths and filters


def prepare_vector(vector, size, distance):
    if not isinstance(vector, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vector):
        raise ApiError(400, "Format error in JSON body: vector must be a list of numbers (named vectors are not supported by the stand-in)")
    if len(vector) != size:
        raise ApiError(400, f"Wrong input: Vector dimension error: expected dim: {size}, got {len(vector)}")
    vector = [float(v) for v in vector]
    if distance == "Cosine":
        # Like Qdrant: cosine vectors are normalised when stored, so the score is a plain dot product.
        norm = math.sqrt(sum(v * v for v in vector))
        if norm > 0:
            vector = [v / norm for v in vector]
    return vector


def score(distance, a, b):
    if distance in ("Cosine", "Dot"):
        return sum(x * y for x, y in zip(a, b, strict=True))
    if distance == "Euclid":
        return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)))
    return sum(abs(x - y) for x, y in zip(a, b, strict=True))


def payload_values(payload, key):
    """Values at a dotted key path; lists are flattened like Qdrant does for matching."""
    values = [payload]
    for part in key.split("."):
        nxt = []
        for value in values:
            if isinstance(value, dict) and part in value:
                item = value[part]
                nxt.extend(item if isinstance(item, list) else [item])
        values = nxt
    return values


def condition_matches(condition, point_id, point):
    if not isinstance(condition, dict):
        raise ApiError(400, "Format error in JSON body: filter condition must be an object")
    if "has_id" in condition:
        return point_id in {normalise_id(i) for i in condition["has_id"]}
    if any(k in condition for k in ("must", "should", "must_not")):
        return filter_matches(condition, point_id, point)
    if "key" in condition and "match" in condition:
        values = payload_values(point.get("payload") or {}, condition["key"])
        match = condition["match"]
        if "value" in match:
            return match["value"] in values
        if "any" in match:
            return any(v in values for v in match["any"])
        if "except" in match:
            return not any(v in values for v in match["except"])
    raise ApiError(400, f"Wrong input: filter condition not supported by qdrant-standin: {json.dumps(condition)[:200]}")


def filter_matches(flt, point_id, point):
    if not flt:
        return True
    if not isinstance(flt, dict):
        raise ApiError(400, "Format error in JSON body: filter must be an object")
    unknown = set(flt) - {"must", "should", "must_not", "min_should"}
    if unknown or "min_should" in flt:
        raise ApiError(400, f"Wrong input: filter clause not supported by qdrant-standin: {sorted(unknown or {'min_should'})}")
    must = flt.get("must") or []
    should = flt.get("should") or []
    must_not = flt.get("must_not") or []
    for clause in (must, should, must_not):
        if not isinstance(clause, list):
            raise ApiError(400, "Format error in JSON body: filter clauses must be lists")
    if not all(condition_matches(c, point_id, point) for c in must):
        return False
    if should and not any(condition_matches(c, point_id, point) for c in should):
        return False
    return not any(condition_matches(c, point_id, point) for c in must_not)


def shape_payload(payload, with_payload):
    if with_payload is True or with_payload is None:
        return payload or {}
    if with_payload is False:
        return None
    if isinstance(with_payload, list):
        return {k: v for k, v in (payload or {}).items() if k in with_payload}
    if isinstance(with_payload, dict) and "include" in with_payload:
        return {k: v for k, v in (payload or {}).items() if k in with_payload["include"]}
    if isinstance(with_payload, dict) and "exclude" in with_payload:
        return {k: v for k, v in (payload or {}).items() if k not in with_payload["exclude"]}
    raise ApiError(400, "Format error in JSON body: unsupported with_payload")


def record(point, with_payload=True, with_vector=False, extra=None):
    out = {"id": point["id"], "version": point["version"]}
    if extra:
        out.update(extra)
    out["payload"] = shape_payload(point.get("payload"), with_payload)
    out["vector"] = point["vector"] if with_vector else None
    return out


def limit_value(body, key, default):
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ApiError(400, f"Format error in JSON body: {key} must be a non-negative integer")
    return value


# ---------------------------------------------------------------------------------------------------------
# HTTP layer


class Handler(BaseHTTPRequestHandler):
    server_version = "qdrant-standin/" + VERSION
    sys_version = ""
    protocol_version = "HTTP/1.1"

    store: Store = None
    api_key: str = ""

    def log_message(self, fmt, *args):  # one line per request, never headers (they carry the key)
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    # -- plumbing ---------------------------------------------------------------------------------------
    def _send(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _json(self, status, payload):
        self._send(status, json.dumps(payload, separators=(",", ":")))

    def _consume_body(self):
        """Read the whole request body up front, so every reply (errors included) leaves the
        keep-alive connection at a request boundary."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            raise ApiError(413 if length > 0 else 400, "Payload too large" if length > 0 else "Bad Content-Length")
        self._raw_body = self.rfile.read(length) if length else b""

    def _read_body(self):
        raw = self._raw_body
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, f"Format error in JSON body: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "Format error in JSON body: expected an object")
        return body

    def _authorised(self):
        if not self.api_key:
            return True
        offered = self.headers.get("api-key")
        if offered is None:
            auth = self.headers.get("Authorization", "")
            if auth[:7].lower() == "bearer ":
                offered = auth[7:].strip()
        return offered is not None and hmac.compare_digest(offered.encode(), self.api_key.encode())

    def _dispatch(self):
        started = time.monotonic()
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            self._consume_body()
            if path in OPEN_PATHS and self.command in ("GET", "HEAD"):
                text = {"/healthz": "healthz check passed", "/livez": "livez check passed", "/readyz": "all shards are ready"}[path]
                self._send(200, text, "text/plain; charset=utf-8")
                return
            if not self._authorised():
                self._send(401, "Must provide an API key or an Authorization bearer token", "text/plain; charset=utf-8")
                return
            result = self._route(path)
            if isinstance(result, RawReply):
                self._send(200, result.data, result.content_type)
                return
            self._json(200, {"result": result, "status": "ok", "time": round(time.monotonic() - started, 6)})
        except ApiError as exc:
            self._json(exc.status, {"status": {"error": exc.message}, "time": round(time.monotonic() - started, 6)})
        except Exception as exc:  # report, do not kill the server thread silently
            self.log_message("internal error: %r", exc)
            self._json(500, {"status": {"error": f"Service internal error: {exc}"}, "time": round(time.monotonic() - started, 6)})

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _dispatch

    # -- routes -----------------------------------------------------------------------------------------
    def _route(self, path):
        parts = [p for p in path.split("/") if p]
        method = self.command
        if parts == [] and method == "GET":
            return {"title": TITLE, "version": VERSION}
        if parts[:1] != ["collections"]:
            raise ApiError(404, f"Not found: {path}")
        if len(parts) == 1 and method == "GET":
            with self.store.lock:
                return {"collections": [{"name": n} for n in sorted(self.store.collections)]}
        if len(parts) < 2:
            raise ApiError(405, f"Method {method} not allowed on {path}")
        name = parts[1]
        if not NAME_RE.match(name):
            raise ApiError(400, f"Wrong input: invalid collection name `{name}`")
        rest = parts[2:]
        store = self.store
        if rest[:1] == ["snapshots"]:
            with store.lock:
                return self._snapshots(name, rest[1:], method)
        body = self._read_body() if method in ("PUT", "POST", "PATCH", "DELETE") else {}
        with store.lock:
            if not rest:
                if method == "PUT":
                    return self._create(name, body)
                if method == "GET":
                    return self._info(store.get(name))
                if method == "DELETE":
                    return store.delete(name)
            elif rest == ["exists"] and method == "GET":
                return {"exists": name in store.collections}
            elif rest[0] == "points":
                collection = store.get(name)
                action = rest[1:]
                if action == [] and method == "PUT":
                    return self._upsert(collection, body)
                if action == [] and method == "POST":
                    return self._retrieve(collection, body)
                if action == ["delete"] and method == "POST":
                    return self._delete_points(collection, body)
                if action == ["search"] and method == "POST":
                    return self._search(collection, body)
                if action == ["scroll"] and method == "POST":
                    return self._scroll(collection, body)
                if action == ["count"] and method == "POST":
                    return self._count(collection, body)
                if len(action) == 1 and method == "GET":
                    raw = int(action[0]) if action[0].isdigit() else action[0]
                    point = collection["points"].get(id_key(normalise_id(raw)))
                    if point is None:
                        raise ApiError(404, f"Not found: No point with id {action[0]} found")
                    return record(point, True, True)
        raise ApiError(404, f"Not found: {method} {path} is not implemented by qdrant-standin")

    # Snapshots (Qdrant's paths and reply shapes). Kept in memory, not on disk: the stand-in's snapshot is its
    # own JSON format, not Qdrant's tar archive, and only ever read back by this stand-in.
    def _snapshots(self, name, action, method):
        snapshots = self.store.snapshots.setdefault(name, {})
        if action == [] and method == "POST":
            collection = self.store.get(name)
            data = json.dumps({"format": "qdrant-standin-snapshot/1", "collection": collection},
                              separators=(",", ":")).encode()
            created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            snap = f"{name}-{len(snapshots) + 1}-{created.replace(':', '-')}.snapshot"
            snapshots[snap] = {"data": data, "creation_time": created}
            return self._snapshot_info(snap, snapshots[snap])
        if action == [] and method == "GET":
            self.store.get(name)
            return [self._snapshot_info(n, s) for n, s in sorted(snapshots.items())]
        if action == ["upload"] and method == "POST":
            return self._recover(name, self._multipart_file("snapshot"))
        if len(action) == 1 and method in ("GET", "DELETE"):
            if action[0] not in snapshots:
                raise ApiError(404, f"Not found: Snapshot {action[0]} not found")
            if method == "GET":
                return RawReply(snapshots[action[0]]["data"])
            del snapshots[action[0]]
            return True
        raise ApiError(404, f"Not found: {method} snapshots/{'/'.join(action)} is not implemented by qdrant-standin")

    @staticmethod
    def _snapshot_info(name, snap):
        return {"name": name, "creation_time": snap["creation_time"], "size": len(snap["data"]),
                "checksum": hashlib.sha256(snap["data"]).hexdigest()}

    def _multipart_file(self, field):
        content_type = self.headers.get("Content-Type", "")
        if not content_type.startswith("multipart/form-data"):
            raise ApiError(400, "Wrong input: expected multipart/form-data with a `snapshot` file")
        message = email.parser.BytesParser().parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + self._raw_body)
        for part in message.get_payload() if message.is_multipart() else []:
            if part.get_param("name", header="content-disposition") == field:
                return part.get_payload(decode=True)
        raise ApiError(400, f"Wrong input: no `{field}` file in the form")

    def _recover(self, name, data):
        """Replace (or create) the collection with the snapshot's content, like Qdrant's recovery."""
        try:
            snapshot = json.loads(data)
            collection = snapshot["collection"]
        except (ValueError, KeyError, TypeError):
            raise ApiError(400, "Wrong input: not a qdrant-standin snapshot") from None
        if snapshot.get("format") != "qdrant-standin-snapshot/1":
            raise ApiError(400, "Wrong input: not a qdrant-standin snapshot")
        collection = dict(collection, name=name)
        self.store.collections[name] = collection
        self.store.persist(name)
        return True

    def _create(self, name, body):
        vectors = body.get("vectors")
        if not isinstance(vectors, dict) or "size" not in vectors:
            raise ApiError(400, "Format error in JSON body: `vectors` with `size` and `distance` is required (named vectors are not supported by the stand-in)")
        size, distance = vectors.get("size"), vectors.get("distance")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ApiError(400, "Wrong input: vector size must be a positive integer")
        if distance not in DISTANCES:
            raise ApiError(400, f"Format error in JSON body: unknown distance {distance!r}, expected one of {sorted(DISTANCES)}")
        self.store.create(name, size, distance)
        return True

    @staticmethod
    def _info(collection):
        count = len(collection["points"])
        return {
            "status": "green",
            "optimizer_status": "ok",
            "indexed_vectors_count": 0,
            "points_count": count,
            "segments_count": 1,
            "config": {
                "params": {
                    "vectors": {"size": collection["size"], "distance": collection["distance"]},
                    "shard_number": 1,
                    "replication_factor": 1,
                    "write_consistency_factor": 1,
                    "on_disk_payload": True,
                },
            },
            "payload_schema": {},
        }

    def _upsert(self, collection, body):
        if "points" in body:
            points = body["points"]
            if not isinstance(points, list):
                raise ApiError(400, "Format error in JSON body: points must be a list")
        elif "batch" in body:
            batch = body["batch"]
            ids, vectors = batch.get("ids") or [], batch.get("vectors") or []
            payloads = batch.get("payloads") or [None] * len(ids)
            if not (len(ids) == len(vectors) == len(payloads)):
                raise ApiError(400, "Wrong input: batch ids, vectors and payloads differ in length")
            points = [{"id": i, "vector": v, "payload": p} for i, v, p in zip(ids, vectors, payloads, strict=True)]
        else:
            raise ApiError(400, "Format error in JSON body: expected `points` or `batch`")
        # Validate everything before changing anything: an upsert applies completely or not at all.
        prepared = []
        for point in points:
            if not isinstance(point, dict) or "id" not in point or "vector" not in point:
                raise ApiError(400, "Format error in JSON body: every point needs `id` and `vector`")
            payload = point.get("payload")
            if payload is not None and not isinstance(payload, dict):
                raise ApiError(400, "Format error in JSON body: payload must be an object")
            prepared.append((normalise_id(point["id"]), prepare_vector(point["vector"], collection["size"], collection["distance"]), payload or {}))
        operation = self.store.next_operation(collection["name"])
        for point_id, vector, payload in prepared:
            collection["points"][id_key(point_id)] = {"id": point_id, "vector": vector, "payload": payload, "version": operation}
        self.store.persist(collection["name"])
        return {"operation_id": operation, "status": "completed"}

    def _retrieve(self, collection, body):
        ids = body.get("ids")
        if not isinstance(ids, list):
            raise ApiError(400, "Format error in JSON body: `ids` must be a list")
        out = []
        for raw in ids:
            point = collection["points"].get(id_key(normalise_id(raw)))
            if point is not None:
                out.append(record(point, body.get("with_payload", True), bool(body.get("with_vector", False))))
        return out

    def _delete_points(self, collection, body):
        points = collection["points"]
        if "points" in body:
            keys = [id_key(normalise_id(raw)) for raw in body["points"]]
        elif "filter" in body:
            keys = [k for k, p in points.items() if filter_matches(body["filter"], p["id"], p)]
        else:
            raise ApiError(400, "Format error in JSON body: expected `points` or `filter`")
        operation = self.store.next_operation(collection["name"])
        for key in keys:
            points.pop(key, None)
        self.store.persist(collection["name"])
        return {"operation_id": operation, "status": "completed"}

    def _matching(self, collection, flt):
        return [p for p in collection["points"].values() if filter_matches(flt, p["id"], p)]

    def _search(self, collection, body):
        query = prepare_vector(body.get("vector"), collection["size"], collection["distance"])
        limit = limit_value(body, "limit", 10)
        offset = limit_value(body, "offset", 0)
        threshold = body.get("score_threshold")
        distance = collection["distance"]
        higher_is_better = distance in ("Cosine", "Dot")
        scored = []
        for point in self._matching(collection, body.get("filter")):
            value = score(distance, query, point["vector"])
            if threshold is not None and (value < threshold if higher_is_better else value > threshold):
                continue
            scored.append((value, point))
        # Deterministic: best score first, ties broken by point id.
        scored.sort(key=lambda sp: ((-sp[0] if higher_is_better else sp[0]), id_order(sp[1]["id"])))
        with_payload = body.get("with_payload", False)
        with_vector = bool(body.get("with_vector", False))
        return [record(p, with_payload, with_vector, {"score": s}) for s, p in scored[offset:offset + limit]]

    def _scroll(self, collection, body):
        limit = limit_value(body, "limit", 10)
        points = sorted(self._matching(collection, body.get("filter")), key=lambda p: id_order(p["id"]))
        if body.get("offset") is not None:
            start = id_order(normalise_id(body["offset"]))
            points = [p for p in points if id_order(p["id"]) >= start]
        page, rest = points[:limit], points[limit:]
        with_payload = body.get("with_payload", True)
        with_vector = bool(body.get("with_vector", False))
        return {
            "points": [record(p, with_payload, with_vector) for p in page],
            "next_page_offset": rest[0]["id"] if rest else None,
        }

    def _count(self, collection, body):
        return {"count": len(self._matching(collection, body.get("filter")))}


def main():
    storage = os.environ.get("QDRANT__STORAGE__STORAGE_PATH", "/qdrant/storage")
    host = os.environ.get("QDRANT__SERVICE__HOST", "0.0.0.0")
    port = int(os.environ.get("QDRANT__SERVICE__HTTP_PORT", "6333"))
    Handler.store = Store(storage)
    Handler.api_key = os.environ.get("QDRANT__SERVICE__API_KEY", "")
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True

    def stop(signum, _frame):
        # shutdown() blocks until serve_forever returns, so it must run in another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stderr.write(
        f"{TITLE} {VERSION} listening on {host}:{port}, storage {storage}, "
        f"{len(Handler.store.collections)} collection(s) loaded, api key {'required' if Handler.api_key else 'NOT set'}\n"
    )
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
