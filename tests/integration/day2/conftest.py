"""One full-mode deployment shared by every day-2 suite (audit, backup/restore, rotation, update).

Deploying the whole platform costs minutes, so the suites in this package share it: each test leaves the
deployment healthy and as it found it (or restores it in a ``finally``). Modules run in name order; the ones that
change the most (restore, rotation, update) come last.
"""
from __future__ import annotations

from pathlib import Path

import secrets

import pytest
import yaml

from stacklib import StackDeployment, resolve_to_loopback

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def day2_vars() -> dict:
    """inventories/local's image overrides (what scripts/deploy.sh deploys) plus this package's vars.yml, and
    S3-style credentials for the backup repository (restic ignores them for the local repository; they are
    secrets the leak test searches for like the store's)."""
    extra = yaml.safe_load((REPO / "inventories/local/group_vars/all/images.yml").read_text())
    extra.update(yaml.safe_load((HERE / "vars.yml").read_text()))
    extra["backup_repository_env"] = {"AWS_ACCESS_KEY_ID": "AKIA" + secrets.token_hex(8).upper(),
                                      "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30)}
    return extra


@pytest.fixture(scope="package")
def full_stack():
    deployment = StackDeployment(extra_vars=day2_vars())
    try:
        # At -vvvv: the leak test (test_no_leak_full) searches the cold converge's output too.
        first = deployment.playbook("site.yml", "-vvvv")
        deployment.cold_converge = first
        assert first.returncode == 0, first.output[-6000:]
        with resolve_to_loopback(deployment.domain):
            yield deployment
    finally:
        deployment.destroy()


# The order the suites share the deployment in: the idempotence check first, on a deployment nothing else has
# touched yet; then the leak test (it recreates every container and rotates keys); then the mode checks and
# switches (test_modes leaves it full, recorded and converged); then the registry refusals (they change nothing);
# then the audit (read-mostly); then the suites that restore, rotate and update; the uninstall last (it leaves the
# deployment purged).
MODULE_ORDER = ("test_full_mode", "test_no_leak_full", "test_modes", "test_registry_refusals", "test_audit",
                "test_backup_restore", "test_rotate", "test_update", "test_export_compose", "test_backup_sftp",
                "test_uninstall")


def pytest_collection_modifyitems(items):
    slots = [index for index, item in enumerate(items) if Path(str(item.fspath)).parent == HERE]
    ours = [items[index] for index in slots]

    def rank(item):
        stem = Path(str(item.fspath)).stem
        return MODULE_ORDER.index(stem) if stem in MODULE_ORDER else len(MODULE_ORDER)

    for index, item in zip(slots, sorted(ours, key=rank)):
        items[index] = item
