"""Fixtures shared by the integration suites: a Docker client and throw-away networks on the host engine.

Everything a test creates carries the label ``datamancy.test=<run id>`` so the session finalizer removes exactly
what this run made, and nothing another run (or a deployment) owns.
"""
from __future__ import annotations

import os
import time
import uuid

import docker
import pytest
import requests

RUN_ID = uuid.uuid4().hex[:8]
TEST_LABEL = {"datamancy.test": RUN_ID}


def local_image(name: str) -> str:
    """The harness image for ``name`` (tests/images/<name>), built by tests/harness/build-images.sh."""
    return f"datamancy-test/{name}:local"


def wait_until(probe, timeout: float = 60.0, interval: float = 0.5, what: str = "condition"):
    """Poll ``probe`` until it returns a truthy value; fail with the last error after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
        except (requests.RequestException, OSError, docker.errors.APIError) as error:
            last_error = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last error: {last_error!r}")


def container_ip(container, network_name: str) -> str:
    container.reload()
    return container.attrs["NetworkSettings"]["Networks"][network_name]["IPAddress"]


@pytest.fixture(scope="session")
def docker_client():
    client = docker.from_env(timeout=120)
    try:
        client.ping()
    except docker.errors.DockerException as error:  # pragma: no cover - environment problem
        pytest.fail(f"no Docker engine answers ({error}); run the suite through scripts/test.sh")
    yield client
    for container in client.containers.list(all=True, filters={"label": f"datamancy.test={RUN_ID}"}):
        container.remove(force=True, v=True)
    for network in client.networks.list(filters={"label": f"datamancy.test={RUN_ID}"}):
        network.remove()
    client.close()


@pytest.fixture
def harness_network(docker_client, request):
    """A user-defined bridge network (containers reach each other by name) removed after the test."""
    name = f"dmtest-{RUN_ID}-{request.node.name[:30]}".replace("[", "-").replace("]", "")
    network = docker_client.networks.create(name, driver="bridge", labels=TEST_LABEL)
    yield network
    network.reload()
    for container in network.containers:
        container.remove(force=True, v=True)
    network.remove()


@pytest.fixture
def run_container(docker_client, harness_network):
    """Start a labelled container on the test's network, reachable there by its short ``name`` (a network alias);
    every container is removed when the test ends."""
    started = []

    def _run(image: str, name: str, **kwargs):
        kwargs.setdefault("detach", True)
        labels = dict(kwargs.pop("labels", {}), **TEST_LABEL)
        container = docker_client.containers.run(
            image,
            name=f"{name}-{RUN_ID}",
            hostname=name,
            labels=labels,
            network=harness_network.name,
            networking_config={
                harness_network.name: docker_client.api.create_endpoint_config(aliases=[name]),
            },
            **kwargs,
        )
        started.append(container)
        return container

    yield _run
    for container in started:
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass


@pytest.fixture
def start_container(docker_client, harness_network):
    """Create a labelled container on the test's network, copy a tar archive in through the API (files owned and
    moded exactly as the archive says, before the entrypoint first runs), then start it; removed after the test."""
    made = []

    def _start(image: str, hostname: str, archive: bytes | None = None, **kwargs):
        container = docker_client.containers.create(
            image,
            name=f"{hostname}-{RUN_ID}-{uuid.uuid4().hex[:6]}",
            hostname=hostname,
            labels=TEST_LABEL,
            network=harness_network.name,
            **kwargs,
        )
        made.append(container)
        if archive:
            container.put_archive("/", archive)
        container.start()
        return container

    yield _start
    for container in made:
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:  # already removed by the test
            pass


def pytest_collection_modifyitems(config, items):
    # Integration tests need the engine and the harness images; mark them so `-m "not integration"` skips them.
    for item in items:
        if "tests/integration/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)
