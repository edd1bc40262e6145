"""Uninstalling the shared full-mode deployment through site.yml (stack_state=absent): every container and
network of the stack goes, every volume, data directory, secret and backup stays, and a run with present brings the
platform back on the same data. Purging (stack_purge=true) deletes the data and still keeps the secret store and
the backup repository. Runs last in the day-2 package: it leaves the deployment purged."""
from __future__ import annotations

import pytest

from stacklib import StackDeployment

from .platform_checks import login

pytestmark = pytest.mark.integration


def started(stack: StackDeployment) -> dict[str, str]:
    return {c.name: c.attrs["State"]["StartedAt"] for c in stack.containers()}


def volumes(stack: StackDeployment) -> set[str]:
    prefix = stack.vars["stack_volume_prefix"]
    return {v.name for v in stack.docker.volumes.list() if v.name.startswith(prefix)}


def networks(stack: StackDeployment) -> set[str]:
    return {n.name for n in stack.docker.networks.list() if n.name.startswith(stack.prefix)}


def test_purging_without_uninstalling_is_refused_before_any_change(full_stack):
    before = started(full_stack)
    run = full_stack.playbook("site.yml", stack_purge=True)
    assert run.returncode != 0
    assert "stack_purge=true only" in run.output and "with stack_state=absent" in run.output
    assert started(full_stack) == before


def test_an_uninstall_removes_containers_and_networks_and_keeps_the_data(full_stack):
    kept_volumes, store = volumes(full_stack), full_stack.store_snapshot()
    assert len(kept_volumes) >= 6 and len(networks(full_stack)) == 5
    run = full_stack.playbook("site.yml", stack_state="absent")
    assert run.returncode == 0, run.output[-6000:]
    assert full_stack.containers() == []
    assert networks(full_stack) == set()
    assert volumes(full_stack) == kept_volumes
    assert full_stack.store_snapshot() == store
    assert (full_stack.base_dir / "authelia" / "data" / "db.sqlite3").is_file()
    assert (full_stack.base_dir / "open-webui" / "data" / "webui.db").is_file()
    assert (full_stack.base_dir / "backup" / "repository" / "config").is_file()
    again = full_stack.playbook("site.yml", stack_state="absent")
    assert again.returncode == 0 and again.changed == 0, again.changed_tasks()


def test_a_reinstall_finds_everything_again(full_stack):
    store = full_stack.store_snapshot()
    run = full_stack.playbook("site.yml")
    assert run.returncode == 0, run.output[-6000:]
    assert full_stack.store_snapshot() == store
    for container in full_stack.containers():
        assert container.attrs["State"].get("Health", {}).get("Status", "healthy") == "healthy", container.name
    # The directory (carol and her generated password) and Authelia's sessions in Redis work as before.
    assert login(full_stack) is not None


def test_a_purge_deletes_the_data_but_keeps_the_secret_store_and_the_backups(full_stack):
    store = full_stack.store_snapshot()
    run = full_stack.playbook("site.yml", stack_state="absent", stack_purge=True)
    assert run.returncode == 0, run.output[-6000:]
    assert full_stack.containers() == [] and networks(full_stack) == set()
    assert volumes(full_stack) == set()
    assert not (full_stack.base_dir / "authelia").exists()
    assert not (full_stack.base_dir / "open-webui").exists()
    assert full_stack.store_snapshot() == store
    assert (full_stack.base_dir / "backup" / "repository" / "config").is_file()
