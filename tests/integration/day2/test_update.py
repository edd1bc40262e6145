"""playbooks/update.yml against the shared full-mode deployment: a good update reports the change, a broken image
is rolled back automatically and the platform keeps working. Every test puts Redis back on its original image."""
from __future__ import annotations

import io
import json
import uuid

import docker
import pytest

from stacklib import StackDeployment

from .platform_checks import authelia_healthy, login

pytestmark = pytest.mark.integration

ORIGINAL = "datamancy-test/redis:local"
TEST_REPO = "datamancy-test-update/redis"
# The role starts `redis-server` by name; this one shadows the real binary on PATH and exits at once, the way a
# release with a broken start-up fails.
BROKEN_DOCKERFILE = f"""FROM {ORIGINAL}
USER root
RUN printf '#!/bin/sh\\necho "redis-server broken on purpose by the update test" >&2\\nexit 1\\n' \\
      > /usr/local/bin/redis-server && chmod 0755 /usr/local/bin/redis-server
USER redis
"""
# A different image id with the same behaviour: what a new patch release looks like to the playbook.
GOOD_DOCKERFILE = f"""FROM {ORIGINAL}
LABEL datamancy.test.update="{{tag}}"
"""


@pytest.fixture(scope="module")
def test_images(full_stack: StackDeployment):
    """Two throw-away images under a test-only repository; removed (with nothing else) at the end."""
    client = full_stack.docker
    tag = uuid.uuid4().hex[:8]
    built = {}
    for name, dockerfile in (("broken", BROKEN_DOCKERFILE), ("good", GOOD_DOCKERFILE.replace("{tag}", tag))):
        reference = f"{TEST_REPO}:{name}-{tag}"
        client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=reference, rm=True, pull=False)
        built[name] = reference
    yield built
    # Whatever happened, Redis goes back to the original image before the images are removed.
    back = update(full_stack, ORIGINAL)
    assert back.returncode == 0, back.output[-4000:]
    for reference in built.values():
        try:
            client.images.remove(reference, force=True)
        except docker.errors.ImageNotFound:
            pass


def update(stack: StackDeployment, redis_image: str, **extra):
    return stack.playbook("playbooks/update.yml", redis_image=redis_image, update_services=["redis"],
                          update_pull=False, **extra)


def latest_report(stack: StackDeployment) -> dict:
    reports = sorted((stack.base_dir / "updates").glob("update-*.json"))
    assert reports, "update.yml wrote no report"
    return json.loads(reports[-1].read_text())


def redis_state(stack: StackDeployment) -> tuple[str, str]:
    """The image id Redis' container runs and its health status."""
    container = stack.container("redis")
    return container.attrs["Image"], container.attrs["State"]["Health"]["Status"]


def test_unknown_services_are_refused_before_any_change(full_stack):
    before = {c.name: c.attrs["State"]["StartedAt"] for c in full_stack.containers()}
    run = full_stack.playbook("playbooks/update.yml", update_services=["redis", "no-such-service"], update_pull=False)
    assert run.returncode != 0
    assert "Nothing was changed" in run.output and "no-such-service" in run.output
    assert {c.name: c.attrs["State"]["StartedAt"] for c in full_stack.containers()} == before


def test_an_update_reports_the_change(full_stack, test_images):
    old_id = redis_state(full_stack)[0]
    new_id = full_stack.docker.images.get(test_images["good"]).id
    run = update(full_stack, test_images["good"])
    assert run.returncode == 0, run.output[-4000:]
    [entry] = latest_report(full_stack)["services"]
    assert entry["service"] == "redis" and entry["result"] == "updated"
    assert (entry["old_image"], entry["old_image_id"]) == (ORIGINAL, old_id)
    assert (entry["new_image"], entry["new_image_id"]) == (test_images["good"], new_id)
    image, health = redis_state(full_stack)
    assert (image, health) == (new_id, "healthy")
    assert "redis: updated" in run.output
    # Nothing left to do: the same pin again changes nothing.
    again = update(full_stack, test_images["good"])
    assert again.returncode == 0, again.output[-4000:]
    assert latest_report(full_stack)["services"][0]["result"] == "unchanged"


def test_a_broken_image_is_rolled_back(full_stack, test_images):
    # Start from the original image (the previous test may have left the good test image running).
    assert update(full_stack, ORIGINAL).returncode == 0
    old_id = redis_state(full_stack)[0]
    broken_id = full_stack.docker.images.get(test_images["broken"]).id

    run = update(full_stack, test_images["broken"])

    assert run.returncode != 0, run.output[-4000:]
    assert "The update failed for redis (rolled_back)" in run.output
    report = latest_report(full_stack)
    [entry] = report["services"]
    assert report["ok"] is False
    assert entry["result"] == "rolled_back", entry
    assert (entry["old_image"], entry["old_image_id"]) == (ORIGINAL, old_id)
    # Back on the previous reference itself, so the next run with the old pin finds nothing to change.
    assert (entry["new_image"], entry["new_image_id"]) == (ORIGINAL, old_id)
    assert (entry["attempted_image"], entry["attempted_image_id"]) == (test_images["broken"], broken_id)
    assert entry["error"]
    image, health = redis_state(full_stack)
    assert image == old_id != broken_id
    assert health == "healthy"
    # The platform still works on top of it: Authelia (Redis' client) is healthy and answers through Caddy.
    assert authelia_healthy(full_stack)
    assert login(full_stack) is not None
