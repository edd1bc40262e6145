"""Create the Qdrant collections that do not exist yet; never change or delete one.

Runs in a one-shot container on the database network. Input from the environment: QDRANT_URL, QDRANT_COLLECTIONS
(JSON list of {name, size, distance}) and QDRANT_API_KEY_FILE (the key is read from that file, so it is never in
argv or the environment). Prints one JSON line {"created": [...], "present": [...]} on success; on a mismatch or
an API error, prints what went wrong (never the key) and exits 1.
"""
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

URL = os.environ["QDRANT_URL"].rstrip("/")
WANTED = json.loads(os.environ["QDRANT_COLLECTIONS"])
with open(os.environ["QDRANT_API_KEY_FILE"], encoding="utf-8") as key_file:
    KEY = key_file.read().strip()


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(URL + path, data=data, method=method,
                                     headers={"api-key": KEY, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.load(error)
        except ValueError:
            return error.code, {}


def wait_ready(deadline=60):
    """The container is healthy before this runs; poll /readyz anyway so a restart in between is survived."""
    stop = time.monotonic() + deadline
    while True:
        try:
            with urllib.request.urlopen(URL + "/readyz", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > stop:
            sys.exit(f"qdrant at {URL} not ready after {deadline} s")
        time.sleep(1)


def main():
    wait_ready()
    created, present, errors = [], [], []
    for wanted in WANTED:
        name = urllib.parse.quote(wanted["name"], safe="")
        status, body = call("GET", f"/collections/{name}")
        if status == 200:
            vectors = body["result"]["config"]["params"]["vectors"]
            if (vectors.get("size"), vectors.get("distance")) != (wanted["size"], wanted["distance"]):
                errors.append(f"collection {wanted['name']} exists with size {vectors.get('size')} and distance "
                              f"{vectors.get('distance')}, not {wanted['size']}/{wanted['distance']}; "
                              "it is left as it is (recreating it would delete its points)")
            present.append(wanted["name"])
        elif status == 404:
            status, body = call("PUT", f"/collections/{name}",
                                {"vectors": {"size": wanted["size"], "distance": wanted["distance"]}})
            if status != 200:
                errors.append(f"creating collection {wanted['name']} failed: HTTP {status} {body.get('status')}")
            else:
                created.append(wanted["name"])
        else:
            errors.append(f"reading collection {wanted['name']} failed: HTTP {status} {body.get('status')}")
    print(json.dumps({"created": created, "present": present, "errors": errors}))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
