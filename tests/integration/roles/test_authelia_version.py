"""The authelia role renders only the 4.38+ configuration format: an image tag naming an older release is refused
before anything changes, newer and non-version tags are accepted."""
from __future__ import annotations

from pathlib import Path

import pytest

from stacklib import StackDeployment

PLAYBOOK = str(Path(__file__).resolve().parent / "authelia_validate.yml")


@pytest.fixture(scope="module")
def deployment():
    stack = StackDeployment()
    yield stack
    stack.destroy()


@pytest.mark.integration
@pytest.mark.parametrize("image", ["docker.io/authelia/authelia:4.37.5", "registry.example:5000/authelia:v4.37"])
def test_an_image_older_than_4_38_is_refused(deployment, image):
    run = deployment.playbook(PLAYBOOK, authelia_image=image)
    assert run.returncode != 0, run.output[-3000:]
    assert "renders the 4.38+ configuration format" in run.output and image in run.output, run.output[-3000:]


@pytest.mark.integration
@pytest.mark.parametrize("image", ["docker.io/authelia/authelia:4.39.20", "datamancy-test/authelia:v4.39.20",
                                   "datamancy-test/authelia:local", "registry.example:5000/authelia:5.0.0"])
def test_newer_and_non_version_tags_are_accepted(deployment, image):
    run = deployment.playbook(PLAYBOOK, authelia_image=image)
    assert run.returncode == 0, run.output[-3000:]
