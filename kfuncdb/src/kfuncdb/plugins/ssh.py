"""host.ssh.exec: commands on the host through the forced-command ``stackops`` account.

The account's authorized key forces a wrapper that allows only ``docker ps``, ``docker logs [--tail N] <name>``
and ``docker restart <name>`` for allowlisted names; these tools build exactly those command lines from validated
arguments, and the wrapper checks them again. The host key is pinned: known_hosts comes from a file the role
writes from the host's own key, StrictHostKeyChecking=yes, nothing is ever learned on first use.
"""
from __future__ import annotations

import os
import subprocess

from ..registry import ConfigError, Plugin, ToolError, ToolSpec, remaining
from .docker import CONTAINER_NAME

MAX_OUTPUT = 256 * 1024


class StackopsSshPlugin(Plugin):
    id = "stackops-ssh"
    description = "Docker operations on the host through the forced-command stackops SSH account"
    capabilities = frozenset({"host.ssh.exec"})

    def specs(self):
        name = {"type": "string", "pattern": CONTAINER_NAME, "description": "Container name (wrapper allowlist)"}
        return [
            ToolSpec("stackops_docker_ps", "List running containers on the host (docker ps via stackops).",
                     {"type": "object", "properties": {}, "additionalProperties": False}),
            ToolSpec("stackops_docker_logs", "Last lines of a container's log on the host (docker logs via stackops).",
                     {"type": "object", "properties": {
                         "container": name, "tail": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
                      "required": ["container"], "additionalProperties": False}),
            ToolSpec("stackops_docker_restart", "Restart an allowlisted container on the host (docker restart).",
                     {"type": "object", "properties": {"container": name},
                      "required": ["container"], "additionalProperties": False}),
        ]

    def activate(self, env):
        host = env.get("KFUNCDB_SSH_HOST", "")
        key_file = env.get("KFUNCDB_SSH_KEY_FILE", "")
        known_hosts = env.get("KFUNCDB_SSH_KNOWN_HOSTS_FILE", "")
        if not host or not key_file or not known_hosts:
            raise ConfigError("host.ssh.exec is allowed but KFUNCDB_SSH_HOST, KFUNCDB_SSH_KEY_FILE and "
                              "KFUNCDB_SSH_KNOWN_HOSTS_FILE are not all set")
        for path in (key_file, known_hosts):
            if not os.access(path, os.R_OK):
                raise ConfigError(f"host.ssh.exec: cannot read {path}")
        with open(known_hosts, encoding="utf-8") as handle:
            if not any(line.strip() and not line.startswith("#") for line in handle):
                raise ConfigError(f"host.ssh.exec: {known_hosts} pins no host key; refusing to trust on first use")
        runner = SshRunner(host=host, port=env.get("KFUNCDB_SSH_PORT", "22"), user=env.get("KFUNCDB_SSH_USER",
                           "stackops"), key_file=key_file, known_hosts=known_hosts,
                           alias=env.get("KFUNCDB_SSH_HOST_KEY_ALIAS") or host)
        return {
            "stackops_docker_ps": lambda args, deadline: runner.run("docker ps", deadline),
            "stackops_docker_logs": lambda args, deadline: runner.run(
                f"docker logs --tail {int(args['tail'])} {args['container']}", deadline),
            "stackops_docker_restart": lambda args, deadline: runner.run(
                f"docker restart {args['container']}", deadline),
        }


class SshRunner:
    def __init__(self, host, port, user, key_file, known_hosts, alias):
        if not str(port).isdigit():
            raise ConfigError(f"KFUNCDB_SSH_PORT must be a number, got {port!r}")
        self.destination = f"{user}@{host}"
        self.base = [
            "ssh", "-F", "/dev/null", "-T", "-p", str(port), "-i", key_file,
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "PasswordAuthentication=no",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", f"HostKeyAlias={alias}", "-o", "CheckHostIP=no",
            "-o", "UpdateHostKeys=no", "-o", "HostKeyAlgorithms=ssh-ed25519", "-o", "ConnectTimeout=10",
            "-o", "LogLevel=ERROR",
        ]

    def argv(self, command: str) -> list[str]:
        # The remote side never runs a shell: the forced command reads this string from SSH_ORIGINAL_COMMAND.
        return [*self.base, "--", self.destination, command]

    def run(self, command: str, deadline: float) -> dict:
        try:
            completed = subprocess.run(self.argv(command), shell=False, capture_output=True, stdin=subprocess.DEVNULL,
                                       timeout=remaining(deadline), check=False)
        except subprocess.TimeoutExpired:
            raise ToolError("ssh to the stackops account did not finish in time") from None
        stdout = completed.stdout[:MAX_OUTPUT].decode(errors="replace")
        stderr = completed.stderr[:MAX_OUTPUT].decode(errors="replace").strip()
        if completed.returncode == 255:
            raise ToolError(f"ssh failed (host key or connection): {stderr[:1000]}")
        if completed.returncode != 0:
            raise ToolError(f"'{command}' failed with exit code {completed.returncode}: {stderr[:1000]}")
        return {"command": command, "stdout": stdout}
