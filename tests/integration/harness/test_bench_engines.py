"""The benchmark's multi-host set-up (bench/engines.py, bench/bench.py's scale part) on this machine's real dockerd.

Each target host gets a dockerd of its own; these tests show that such an engine runs the stack's containers,
leaves the machine's own engine alone (a second daemon started with --bridge=none deletes docker0) and removes
everything it created, and that the scale benchmark converges two target hosts end to end. They assert what the
benchmark relies on, never a time.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import docker
import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "bench"))

import bench  # noqa: E402  pylint: disable=wrong-import-position
from engines import TargetEngine  # noqa: E402  pylint: disable=wrong-import-position

REDIS_IMAGE = bench.harness_vars("bootstrap")["redis_image"]


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True, check=False).returncode == 0


@pytest.mark.integration
def test_a_target_engine_runs_containers_and_removes_everything_it_created(docker_client):
    engine = TargetEngine(15)
    try:
        engine.start()
        engine.load([REDIS_IMAGE])
        assert link_exists("docker0"), "starting a bench engine took the machine's default bridge"
        network = engine.client.networks.create("dmbench-test", internal=True)
        container = engine.client.containers.run(REDIS_IMAGE, name="dmbench-test-redis", detach=True,
                                                 network=network.name)
        container.reload()
        assert container.status == "running"
        assert engine.client.api.inspect_network(network.id)["IPAM"]["Config"][0]["Subnet"].startswith("10.210.240.")
        # The machine's engine does not see the bench engine's containers: they are separate daemons.
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get("dmbench-test-redis")
    finally:
        engine.stop()
    assert not link_exists(engine.bridge)
    assert not engine.root.exists() and not engine.exec_root.exists() and not engine.socket.exists()
    assert link_exists("docker0")
    assert docker_client.ping()


@pytest.mark.integration
def test_the_scale_benchmark_converges_two_target_hosts_and_cleans_up(docker_client):
    results = bench.bench_scale([2])
    assert set(results) == {2} and results[2] > 0
    assert not any(link_exists(f"dmbench{index}") for index in range(2))
    # The target hosts (containers on the machine's engine) are gone with their deployments.
    assert not docker_client.containers.list(all=True, filters={"ancestor": bench.TARGET_HOST_IMAGE})
