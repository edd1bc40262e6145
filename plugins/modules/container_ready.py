#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: container_ready
short_description: Wait until containers pass their own health check, without waiting for Docker's schedule
version_added: 0.1.0
description:
  - Docker runs a container's first health check only one health I(interval) after the start (10 to 15 seconds
    for the stack's services; engines before 25.0 have no C(start_interval)). Waiting for Docker's status
    C(healthy) after every start makes a converge the sum of those intervals.
  - With O(wait_for=probe) this module runs the container's configured health check command itself (the same
    command, as the same user, through the Docker API's exec), every O(poll_interval) seconds, and returns as soon
    as it exits 0. A container without a health check is ready once it runs. Docker's own checks are not touched;
    its status catches up at its next scheduled check.
  - With O(wait_for=docker) it waits for Docker's own status C(healthy), for all O(names) at once, so the end of a
    play pays for the longest interval once instead of every interval in turn.
  - A container that is not running is polled until O(timeout), unless it is crashing in a loop. Once Docker
    restarted it twice while this module waited, or it exited and its restart policy will not start it again, the
    module fails at once. The failure names its state, exit code and restart count.
author:
  - Datamancy maintainers (@datamancy)
extends_documentation_fragment:
  - community.docker.docker.api_documentation
attributes:
  check_mode:
    support: full
    description: Nothing is probed in check mode (the containers may not exist yet); it reports what it would wait for.
  diff_mode:
    support: none
    description: It changes nothing.
  platform:
    support: full
    platforms: posix
    description: Talks to the Docker API on the managed host.
options:
  names:
    description: Container names.
    type: list
    elements: str
    required: true
  wait_for:
    description:
      - V(probe) runs each container's health check command until it passes; V(docker) waits for Docker's own
        health status C(healthy).
    type: str
    choices: [probe, docker]
    default: probe
  timeout:
    description: Seconds to wait in all before failing.
    type: int
    default: 180
  poll_interval:
    description: Seconds between two probes of a container that is not ready yet.
    type: float
    default: 0.5
requirements:
  - Docker API >= 1.25
'''

EXAMPLES = r'''
- name: Wait until Redis answers its health check
  datamancy.stack.container_ready:
    names: [datamancy-redis]
    timeout: 120

- name: Wait until Docker reports every service healthy
  datamancy.stack.container_ready:
    names: [datamancy-redis, datamancy-authelia, datamancy-caddy]
    wait_for: docker
'''

RETURN = r'''
containers:
  description: Per container, how it became ready.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The container.
      type: str
    ready_by:
      description: C(probe) (its health check passed when run here), C(docker) (Docker reported it healthy),
        C(no_healthcheck) (it has none; it runs), or C(check_mode).
      type: str
    seconds:
      description: Seconds until it was ready.
      type: float
    probes:
      description: Health check commands run for it.
      type: int
'''

import time

from ansible_collections.community.docker.plugins.module_utils.common_api import AnsibleDockerClient
from ansible_collections.community.docker.plugins.module_utils._api.errors import APIError, NotFound

# One exec of a health check may take this long when the container's own Timeout is not set (Docker's default).
DEFAULT_PROBE_TIMEOUT = 30.0
# Restarts seen while waiting that make a container "crashing in a loop": one crash at start may recover.
CRASH_LOOP_RESTARTS = 2


def health_argv(config):
    """The exec argv of a container's health check, or None without one (Docker's Test forms: CMD, CMD-SHELL,
    NONE)."""
    test = (config.get("Healthcheck") or {}).get("Test") or []
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        return list(test[1:])
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", test[1]]
    return list(test)


def probe_timeout(config):
    nanoseconds = (config.get("Healthcheck") or {}).get("Timeout") or 0
    return nanoseconds / 1e9 if nanoseconds else DEFAULT_PROBE_TIMEOUT


class Waiter:
    """The state of one container on its way to ready."""

    def __init__(self, client, name, wait_for):
        self.client = client
        self.name = name
        self.wait_for = wait_for
        self.probes = 0
        self.ready_by = None
        self.last = "not looked at yet"
        self.failed = False
        self.first_restart_count = None

    def inspect(self):
        try:
            return self.client.get_json("/containers/{0}/json", self.name)
        except NotFound:
            return None

    def poll(self):
        """One look (and at most one probe); True once ready."""
        attrs = self.inspect()
        if attrs is None:
            self.last = "no such container"
            return False
        state = attrs["State"]
        restarts = attrs.get("RestartCount", 0)
        if self.first_restart_count is None:
            self.first_restart_count = restarts
        if not state.get("Running") or state.get("Restarting"):
            self.last = (f"not running (status {state.get('Status')}, exit code {state.get('ExitCode')}, "
                         f"restarts {restarts})")
            policy = ((attrs.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or "no"
            if restarts - self.first_restart_count >= CRASH_LOOP_RESTARTS:
                self.failed = True
                self.last += ": crashing in a loop"
            elif state.get("Status") == "exited" and (
                    policy == "no" or (policy == "on-failure" and state.get("ExitCode") == 0)):
                self.failed = True
                self.last += f": its restart policy ({policy}) will not start it again"
            return False
        health = (state.get("Health") or {}).get("Status")
        argv = health_argv(attrs.get("Config") or {})
        if argv is None:
            self.ready_by = "no_healthcheck"
            return True
        if health == "healthy":
            self.ready_by = "docker"
            return True
        if self.wait_for == "docker":
            self.last = f"Docker reports it {health}"
            return False
        exit_code = self.probe(argv, probe_timeout(attrs.get("Config") or {}))
        if exit_code == 0:
            self.ready_by = "probe"
            return True
        self.last = f"its health check {'timed out' if exit_code is None else f'exited {exit_code}'} (Docker: {health})"
        return False

    def probe(self, argv, timeout):
        """Runs the health check as Docker would (the container's user, no TTY); its exit code, None on timeout.
        Output is not read: only the exit code decides, and nothing the check prints reaches a log."""
        self.probes += 1
        try:
            exec_id = self.client.post_json_to_json("/containers/{0}/exec", self.name, data={
                "AttachStdout": False, "AttachStderr": False, "AttachStdin": False, "Tty": False, "Cmd": argv})["Id"]
            self.client.post_json_to_text("/exec/{0}/start", exec_id, data={"Detach": True, "Tty": False})
        except APIError as error:
            self.last = f"exec refused: {error}"
            return -1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.client.get_json("/exec/{0}/json", exec_id)
            if not result.get("Running"):
                return result.get("ExitCode")
            time.sleep(0.05)
        return None


def wait_all(waiters, timeout, poll_interval):
    """Polls every waiter until all are ready or ``timeout`` seconds passed: (ready entries, waiters left)."""
    start = time.monotonic()
    deadline = start + timeout
    pending = list(waiters)
    done = []
    while True:
        for waiter in list(pending):
            if waiter.poll():
                pending.remove(waiter)
                done.append({"name": waiter.name, "ready_by": waiter.ready_by,
                             "seconds": round(time.monotonic() - start, 2), "probes": waiter.probes})
        if not pending or time.monotonic() >= deadline or any(waiter.failed for waiter in pending):
            return done, pending
        time.sleep(poll_interval)


def main():
    client = AnsibleDockerClient(
        argument_spec=dict(
            names=dict(type="list", elements="str", required=True),
            wait_for=dict(type="str", choices=["probe", "docker"], default="probe"),
            timeout=dict(type="int", default=180),
            poll_interval=dict(type="float", default=0.5),
        ),
        supports_check_mode=True,
    )
    module = client.module
    names = module.params["names"]
    if module.check_mode:
        module.exit_json(changed=False, containers=[
            {"name": name, "ready_by": "check_mode", "seconds": 0.0, "probes": 0} for name in names])

    done, pending = wait_all([Waiter(client, name, module.params["wait_for"]) for name in names],
                             module.params["timeout"], module.params["poll_interval"])
    if pending:
        crashed = [waiter for waiter in pending if waiter.failed]
        module.fail_json(
            msg="{0}: {1}".format(
                "Will not become ready" if crashed else "Not ready after {0} s".format(module.params["timeout"]),
                "; ".join(f"{w.name}: {w.last}" for w in crashed or pending)),
            containers=done)
    module.exit_json(changed=False, containers=done)


if __name__ == "__main__":
    main()
