"""host.shell.read: a fixed allowlist of read-only commands, run as argv lists WITHOUT a shell. The caller picks a
command by name from an enum; no caller text ever reaches an argv."""
from __future__ import annotations

import subprocess

from ..registry import Plugin, ToolError, ToolSpec, remaining

COMMANDS = {
    "uptime": ["uptime"],
    "disk_usage": ["df", "-h"],
    "memory": ["free", "-m"],
    "kernel": ["uname", "-a"],
    "load": ["cat", "/proc/loadavg"],
}
MAX_OUTPUT = 64 * 1024


class ShellReadPlugin(Plugin):
    id = "host-shell"
    description = "Allowlisted read-only system commands"
    capabilities = frozenset({"host.shell.read"})

    def specs(self):
        return [ToolSpec(
            name="host_info",
            description="Run one allowlisted read-only command (" + ", ".join(
                f"{k}: {' '.join(v)}" for k, v in COMMANDS.items()) + ") and return its output.",
            parameters={
                "type": "object",
                "properties": {"command": {"type": "string", "enum": sorted(COMMANDS),
                                           "description": "Which command to run"}},
                "required": ["command"],
                "additionalProperties": False,
            },
        )]

    def activate(self, env):
        return {"host_info": run_command}


def run_command(args: dict, deadline: float) -> dict:
    argv = COMMANDS[args["command"]]
    try:
        completed = subprocess.run(argv, shell=False, capture_output=True, timeout=remaining(deadline),
                                   env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"}, stdin=subprocess.DEVNULL,
                                   check=False)
    except subprocess.TimeoutExpired:
        raise ToolError(f"{argv[0]} did not finish in time") from None
    except OSError as error:
        raise ToolError(f"{argv[0]} could not run: {error.strerror}") from None
    return {"command": " ".join(argv), "exitCode": completed.returncode,
            "stdout": completed.stdout[:MAX_OUTPUT].decode(errors="replace"),
            "stderr": completed.stderr[:MAX_OUTPUT].decode(errors="replace")}
