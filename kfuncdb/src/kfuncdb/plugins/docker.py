"""host.docker.inspect: list containers and read their logs through the read-only Docker API proxy
(KFUNCDB_DOCKER_URL, with the proxy's key from KFUNCDB_DOCKER_KEY_FILE). KFuncDB never sees the Docker socket; the
proxy refuses every write."""
from __future__ import annotations

import json
import struct
import urllib.parse

from ..registry import ConfigError, Plugin, ToolError, ToolSpec
from ._http import bearer, read_key, request

CONTAINER_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"


class DockerInspectPlugin(Plugin):
    id = "docker-inspect"
    description = "Read-only Docker inspection through the socket proxy"
    capabilities = frozenset({"host.docker.inspect"})

    def specs(self):
        return [
            ToolSpec("docker_list_containers", "List containers with name, image, state and status.", {
                "type": "object",
                "properties": {"all": {"type": "boolean", "default": False,
                                       "description": "Include stopped containers"}},
                "additionalProperties": False,
            }),
            ToolSpec("docker_container_logs", "Read the last lines of a container's log.", {
                "type": "object",
                "properties": {
                    "container": {"type": "string", "pattern": CONTAINER_NAME, "description": "Container name"},
                    "tail": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                },
                "required": ["container"],
                "additionalProperties": False,
            }),
        ]

    def activate(self, env):
        base = env.get("KFUNCDB_DOCKER_URL", "").rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise ConfigError("host.docker.inspect is allowed but KFUNCDB_DOCKER_URL (the socket proxy, e.g. "
                              "http://docker-proxy:2375) is not set")
        headers = bearer(read_key(env, "KFUNCDB_DOCKER_KEY_FILE"))

        def list_containers(args, deadline):
            query = urllib.parse.urlencode({"all": "1" if args["all"] else "0"})
            data = request("GET", f"{base}/containers/json?{query}", deadline, headers=headers)
            return [{"id": c.get("Id", "")[:12], "name": (c.get("Names") or ["?"])[0].lstrip("/"),
                     "image": c.get("Image"), "state": c.get("State"), "status": c.get("Status")} for c in data]

        def container_logs(args, deadline):
            name = urllib.parse.quote(args["container"], safe="")
            query = urllib.parse.urlencode({"stdout": 1, "stderr": 1, "tail": args["tail"]})
            inspect = request("GET", f"{base}/containers/{name}/json", deadline, headers=headers)
            payload = request("GET", f"{base}/containers/{name}/logs?{query}", deadline, headers=headers,
                              raw=True)
            tty = bool(inspect.get("Config", {}).get("Tty"))
            return {"container": args["container"], "log": payload.decode(errors="replace") if tty
                    else demux(payload)}

        return {"docker_list_containers": list_containers, "docker_container_logs": container_logs}


def demux(payload: bytes) -> str:
    """Docker's multiplexed log stream (8-byte frame headers: stream, 0, 0, 0, big-endian length) as text."""
    out, offset = [], 0
    while offset + 8 <= len(payload):
        _stream, length = struct.unpack(">B3xI", payload[offset:offset + 8])
        out.append(payload[offset + 8:offset + 8 + length])
        offset += 8 + length
    if offset != len(payload):
        raise ToolError("malformed log stream from the Docker API: " + json.dumps(payload[offset:offset + 40].hex()))
    return b"".join(out).decode(errors="replace")
