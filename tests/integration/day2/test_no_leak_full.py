"""No secret of a full deployment in any output an operator or AWX keeps, nor in `docker inspect`.

On the day-2 package's full deployment (its backup repository given S3-style credentials), every value of the
secret store (every 16+ character line of multi-line values too) and the repository credentials are searched in
the output of: the cold converge (-vvvv, conftest.py), a no-op re-run (-v and -vvvv), a check-mode run with --diff
after an environment change, a run that recreates every container, update.yml, rotate_secrets.yml, backup.yml,
restore_drill.yml and audit.yml (-vvvv; backup.yml and audit.yml at -v too), and in the events and artifacts of
an ansible-runner job of the full play. Then in `docker inspect` of every container. Values rotated during the test
are searched for too, old and new.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import ansible_runner
import pytest

from stacklib import REPO_ROOT, StackDeployment, leaked, secret_strings

ENV_ROUTE_SERVICES = ("litellm", "localai", "open-webui", "qdrant")
# A change to the environment of every service that gets secrets through the start wrapper (and a restart policy
# change for every container), previewed with --check --diff.
ENVIRONMENT_CHANGE = {"litellm_env": {"DATAMANCY_LEAK_TEST": "1"}, "localai_env": {"DATAMANCY_LEAK_TEST": "1"},
                      "open_webui_environment_extra": {"DATAMANCY_LEAK_TEST": "1"}}
# Rotated for real: one key each of the four services the start wrapper feeds (LiteLLM, LocalAI, Qdrant) and the
# consumers of the LiteLLM key (Open WebUI, KFuncDB), plus the backup's Qdrant client.
# API keys, and the OIDC provider's keys and a client's secret (their own module and the client secret's digest).
ROTATED = ["litellm_master_key", "localai_api_key", "qdrant_api_key", "authelia_oidc_hmac_secret",
           "authelia_oidc_issuer_key", "oidc_open_webui_client_secret"]


@pytest.fixture(name="stack", scope="module")
def stack_fixture(full_stack):
    """The day-2 package's shared full-mode deployment (conftest.py)."""
    return full_stack


@pytest.fixture(scope="module")
def searched(stack):
    """Every secret string the deployment has had during this module: grows as the tests rotate keys."""
    values = secret_strings(stack.secrets_dir, min_length=8)
    values.update(stack.vars["backup_repository_env"].values())
    assert len(values) > 30, "too few secrets found to search for"
    return values


def refresh(searched: set[str], stack: StackDeployment) -> set[str]:
    searched.update(secret_strings(stack.secrets_dir, min_length=8))
    return searched


def run_clean(stack: StackDeployment, searched: set[str], playbook: str, *args: str, **overrides):
    run = stack.playbook(playbook, *args, **overrides)
    assert run.returncode == 0, run.output[-5000:]
    refresh(searched, stack)
    assert leaked(run.output, searched) == [], f"{playbook} {' '.join(args)} printed secrets"
    # The results searched are real: the containers' tasks ran and printed their (censored) results.
    return run


def test_the_cold_converge_printed_no_secret(stack, searched):
    output = stack.cold_converge.output
    assert f"{stack.prefix}litellm" in output and "the output has been hidden" in output
    assert leaked(output, searched) == []


@pytest.mark.parametrize("verbosity", ["-v", "-vvvv"])
def test_a_no_op_rerun_prints_no_secret(stack, searched, verbosity):
    run = run_clean(stack, searched, "site.yml", verbosity)
    assert run.changed == 0, run.changed_tasks()


def test_a_check_mode_diff_of_an_environment_change_prints_no_secret(stack, searched):
    run = run_clean(stack, searched, "site.yml", "--check", "--diff", "-vvvv", **ENVIRONMENT_CHANGE)
    # The change was seen (so a diff of the containers was computed) and hidden.
    assert run.changed > 0
    assert "Run the container of litellm" in run.output


def test_recreating_every_container_prints_no_secret(stack, searched):
    before = {c.name: c.id for c in stack.containers()}
    for container in stack.containers():
        container.remove(force=True)
    run_clean(stack, searched, "site.yml", "-vvvv")
    after = {c.name: c.id for c in stack.containers()}
    assert set(after) == set(before) and not set(after.values()) & set(before.values())


def test_update_prints_no_secret(stack, searched):
    run_clean(stack, searched, "playbooks/update.yml", "-vvvv", update_services=list(ENV_ROUTE_SERVICES) + ["backup"],
              update_pull=False, update_stability_seconds=2)


def test_rotating_keys_prints_no_secret_old_or_new(stack, searched):
    old = {name: stack.read_secret(name) for name in ROTATED}
    run_clean(stack, searched, "playbooks/rotate_secrets.yml", "-vvvv", rotate_secrets=ROTATED)
    assert all(stack.read_secret(name) != value for name, value in old.items())
    assert {value.strip() for value in old.values()} <= searched


@pytest.mark.parametrize("verbosity", ["-v", "-vvvv"])
def test_a_backup_prints_no_secret(stack, searched, verbosity):
    run_clean(stack, searched, "playbooks/backup.yml", verbosity)


def test_the_restore_drill_prints_no_secret(stack, searched):
    run_clean(stack, searched, "playbooks/restore_drill.yml", "-vvvv")


@pytest.mark.parametrize("verbosity", ["-v", "-vvvv"])
def test_the_audit_prints_no_secret_and_passes_its_exposure_check(stack, searched, verbosity):
    run_clean(stack, searched, "playbooks/audit.yml", verbosity)
    report = json.loads((stack.base_dir / "audit" / "latest.json").read_text())
    check = next(c for c in report["checks"] if c["id"] == "secret_exposure")
    assert check["status"] == "pass", check
    assert check["evidence"][0].startswith(f"{len(stack.containers())} container(s) searched")


def test_an_ansible_runner_job_of_the_full_play_keeps_no_secret(stack, searched, tmp_path_factory):
    """The way AWX runs the full template: a fresh private data directory, every event kept."""
    private_data_dir = Path(tempfile.mkdtemp(prefix="runner-full-", dir=tmp_path_factory.getbasetemp()))
    runner = ansible_runner.run(
        private_data_dir=str(private_data_dir), project_dir=str(REPO_ROOT), playbook="playbooks/full.yml",
        inventory=str(REPO_ROOT / "inventories" / "local" / "hosts.yml"), extravars=stack.vars,
        envvars={"PATH": f"{REPO_ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                 "ANSIBLE_NOCOLOR": "1"},
        verbosity=1, quiet=True, timeout=1800)
    assert runner.status == "successful" and runner.rc == 0, runner.status
    events = list(runner.events)
    assert sum(1 for event in events if event["event"] == "runner_on_ok") > 50
    found = leaked(json.dumps(events), searched)
    for path in private_data_dir.rglob("*"):
        # env/extravars is the job's input (in AWX: the inventory and survey), not something the job wrote.
        if path.is_file() and path.name != "extravars":
            found += [f"{path.relative_to(private_data_dir)}: {item}"
                      for item in leaked(path.read_text(errors="replace"), searched)]
    assert found == []


def test_no_container_configuration_holds_a_secret(stack, searched):
    refresh(searched, stack)
    containers = stack.containers()
    assert len(containers) >= 13
    exposed = {c.name: leaked(json.dumps(c.attrs), searched) for c in containers}
    assert {name: found for name, found in exposed.items() if found} == {}
    # The services whose upstream reads keys from its environment get them through the start wrapper.
    for service in ENV_ROUTE_SERVICES:
        assert stack.container(service).attrs["Config"]["Entrypoint"][:2] == ["/bin/sh", "-c"], service


def test_the_audit_names_a_secret_put_into_a_container_by_hand(stack):
    """A container given a key in its environment by hand: the audit fails and names container and secret."""
    key = stack.read_secret("litellm_master_key")
    intruder = stack.docker.containers.run(
        "datamancy-test/debian:bookworm", ["sleep", "300"], name=f"{stack.prefix}debug-shell", detach=True,
        environment={"OPENAI_API_KEY": key})
    try:
        run = stack.playbook("playbooks/audit.yml")
        assert run.returncode != 0
        report = json.loads((stack.base_dir / "audit" / "latest.json").read_text())
        check = next(c for c in report["checks"] if c["id"] == "secret_exposure")
        assert check["status"] == "fail"
        assert f"{intruder.name} holds the secret litellm_master_key in Config.Env OPENAI_API_KEY" in check["failures"]
        assert key not in run.output and key not in json.dumps(report)
    finally:
        intruder.remove(force=True)
