"""datamancy.stack.container_ready: how a container is judged ready, against a fake Docker API client."""
from __future__ import annotations

import pytest

from ansible_collections.datamancy.stack.plugins.modules import container_ready
from ansible_collections.datamancy.stack.plugins.modules.container_ready import Waiter, health_argv, wait_all

REDIS_CHECK = {"Test": ["CMD-SHELL", "redis-cli ping | grep -q PONG"], "Timeout": 5_000_000_000}


class FakeDocker:
    """The four API calls the module makes. ``exit_codes`` are what successive probes exit with (None: the
    probe keeps running); ``states`` successive container states."""

    def __init__(self, states, exit_codes=(), healthcheck=None):
        self.states = list(states)
        self.exit_codes = list(exit_codes)
        self.healthcheck = REDIS_CHECK if healthcheck is None else healthcheck
        self.execs = []

    def get_json(self, path, ident):
        if path.startswith("/containers/"):
            state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
            if state is None:
                raise container_ready.NotFound("no such container")
            return {"State": state, "RestartCount": state.get("restarts", 0), "Config": {"Healthcheck": self.healthcheck},
                    "HostConfig": {"RestartPolicy": {"Name": state.get("policy", "unless-stopped")}}}
        code = self.exit_codes[int(ident)]
        return {"Running": code is None, "ExitCode": code}

    def post_json_to_json(self, path, name, data):
        assert path == "/containers/{0}/exec" and data["Cmd"] and not data["AttachStdout"]
        self.execs.append(data["Cmd"])
        return {"Id": str(len(self.execs) - 1)}

    def post_json_to_text(self, path, exec_id, data):
        assert data["Detach"] is True


RUNNING = {"Running": True, "Restarting": False, "Status": "running", "Health": {"Status": "starting"}}
HEALTHY = dict(RUNNING, Health={"Status": "healthy"})


@pytest.mark.parametrize("test, argv", [
    (["CMD", "redis-cli", "ping"], ["redis-cli", "ping"]),
    (["CMD-SHELL", "curl -f http://x/ || exit 1"], ["/bin/sh", "-c", "curl -f http://x/ || exit 1"]),
    (["NONE"], None),
    ([], None),
])
def test_health_argv_takes_every_form_docker_stores(test, argv):
    assert health_argv({"Healthcheck": {"Test": test}}) == argv
    assert health_argv({}) is None


def test_a_passing_probe_is_ready_before_docker_says_so():
    docker = FakeDocker([RUNNING], exit_codes=[1, 1, 0])
    waiter = Waiter(docker, "dm-redis", "probe")
    assert not waiter.poll() and "exited 1" in waiter.last and "starting" in waiter.last
    assert not waiter.poll()
    assert waiter.poll() and waiter.ready_by == "probe" and waiter.probes == 3
    # The container's own check, run as Docker runs it (a shell for CMD-SHELL).
    assert docker.execs[0] == ["/bin/sh", "-c", "redis-cli ping | grep -q PONG"]


def test_docker_healthy_needs_no_probe_and_no_healthcheck_means_running():
    assert Waiter(FakeDocker([HEALTHY]), "a", "probe").poll()
    no_check = FakeDocker([RUNNING], healthcheck={"Test": ["NONE"]})
    waiter = Waiter(no_check, "b", "probe")
    assert waiter.poll() and waiter.ready_by == "no_healthcheck" and no_check.execs == []


def test_waiting_for_docker_never_probes():
    docker = FakeDocker([RUNNING, RUNNING, HEALTHY])
    waiter = Waiter(docker, "dm-redis", "docker")
    assert not waiter.poll() and waiter.last == "Docker reports it starting"
    assert not waiter.poll()
    assert waiter.poll() and waiter.ready_by == "docker" and docker.execs == []


def test_a_stopped_or_missing_container_is_not_ready_and_says_why():
    exited = {"Running": False, "Restarting": False, "Status": "exited", "ExitCode": 1, "restarts": 4}
    waiter = Waiter(FakeDocker([exited]), "dm-redis", "probe")
    assert not waiter.poll()
    assert waiter.last == "not running (status exited, exit code 1, restarts 4)"
    missing = Waiter(FakeDocker([None]), "dm-gone", "probe")
    assert not missing.poll() and missing.last == "no such container"


def test_a_hanging_probe_times_out(monkeypatch):
    monkeypatch.setattr(container_ready, "DEFAULT_PROBE_TIMEOUT", 0.2)
    docker = FakeDocker([RUNNING], exit_codes=[None], healthcheck={"Test": ["CMD", "sleep", "60"]})
    waiter = Waiter(docker, "dm-slow", "probe")
    assert not waiter.poll() and "timed out" in waiter.last


def test_wait_all_returns_the_ready_ones_and_the_rest_at_the_deadline():
    ready = Waiter(FakeDocker([RUNNING], exit_codes=[1, 0]), "dm-redis", "probe")
    never = Waiter(FakeDocker([RUNNING]), "dm-ldap", "docker")
    done, pending = wait_all([ready, never], timeout=0.3, poll_interval=0.05)
    assert [entry["name"] for entry in done] == ["dm-redis"] and done[0]["probes"] == 2
    assert pending == [never]
    done, pending = wait_all([Waiter(FakeDocker([HEALTHY]), "dm-caddy", "docker")], timeout=5, poll_interval=1)
    assert pending == [] and done[0]["ready_by"] == "docker" and done[0]["seconds"] < 1


def test_a_crash_loop_fails_at_once_and_one_crash_is_forgiven():
    def down(restarts, status="restarting"):
        return {"Running": False, "Restarting": status == "restarting", "Status": status, "ExitCode": 1,
                "restarts": restarts}

    recovering = Waiter(FakeDocker([down(0), down(1), RUNNING], exit_codes=[0]), "dm-authelia", "probe")
    done, pending = wait_all([recovering], timeout=5, poll_interval=0.01)
    assert pending == [] and done[0]["ready_by"] == "probe"

    looping = Waiter(FakeDocker([down(3), down(4), down(5), RUNNING]), "dm-redis", "probe")
    done, pending = wait_all([looping], timeout=60, poll_interval=0.01)
    assert pending == [looping] and looping.failed and looping.last.endswith("crashing in a loop")


def test_an_exited_container_its_policy_will_not_restart_fails_at_once():
    exited = {"Running": False, "Restarting": False, "Status": "exited", "ExitCode": 0, "policy": "no"}
    waiter = Waiter(FakeDocker([exited]), "dm-oneoff", "probe")
    done, pending = wait_all([waiter], timeout=60, poll_interval=0.01)
    assert pending == [waiter] and "restart policy (no)" in waiter.last
