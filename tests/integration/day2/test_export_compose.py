"""playbooks/export_compose.yml on the shared full-mode deployment: the Compose file it writes names exactly the
running containers with the runner's hardening, holds no value from the secret store, and Debian's
docker-compose (installed by scripts/lib/setup.sh with the engine) accepts it."""
from __future__ import annotations

import subprocess

import pytest
import yaml

from stacklib import StackDeployment


@pytest.fixture(name="export", scope="module")
def export_fixture(full_stack: StackDeployment):
    target = full_stack.workdir / "docker-compose.yml"
    run = full_stack.playbook("playbooks/export_compose.yml", stack_compose_file=str(target))
    assert run.returncode == 0, run.output[-4000:]
    # The converge before the render changes nothing on a converged deployment; the file is what is written.
    assert "Write the Compose file" in run.changed_tasks(), run.changed_tasks()
    return full_stack, target


def test_it_describes_the_running_containers_with_their_hardening(export):
    stack, target = export
    document = yaml.safe_load(target.read_text())
    running = {c.name for c in stack.containers() if c.status == "running"}
    assert {svc["container_name"] for svc in document["services"].values()} == running
    for name, service in document["services"].items():
        assert service["cap_drop"] == ["ALL"] and service["read_only"] is True, name
        assert service["tmpfs"], name
        # Only the ingress publishes ports.
        assert ("ports" in service) == (name == "caddy"), name
        container = stack.container(name)
        assert service["image"] in container.image.tags, (name, container.image.tags)
    assert document["networks"]["database"] == {"name": stack.network("database"), "internal": True}
    # Qdrant's key is a file its start wrapper loads: the wrapper and the file's directory are in the export.
    qdrant = document["services"]["qdrant"]
    assert "env_file" not in qdrant and qdrant["entrypoint"][:2] == ["/bin/sh", "-c"]
    assert {"type": "bind", "source": str(stack.base_dir / "qdrant" / "secret-env"), "target": "/run/datamancy/env",
            "read_only": True} in qdrant["volumes"]


def test_it_holds_no_secret_value(export):
    stack, target = export
    text = target.read_text()
    for path in sorted(stack.secrets_dir.iterdir()):
        value = path.read_text(errors="replace").strip() if path.is_file() else ""
        assert len(value) < 8 or value not in text, f"the value of {path.name} is in the export"


def test_debian_docker_compose_accepts_it(export):
    stack, target = export
    checked = subprocess.run(["docker-compose", "-p", stack.run_id, "-f", str(target), "config", "-q"],
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
