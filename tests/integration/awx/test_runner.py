"""Bootstrap run unattended through ansible-runner, the way AWX runs a job: a fresh private data directory per
job, the project checkout as the working directory, survey answers as extra vars, every event recorded.

Checks that no job event and no artifact holds a secret value, that the secret store lives on the managed host
(here: the deployment's stack_secrets_dir) and nowhere under the job's directory, and that a second job from
another fresh private data directory finds the same values and changes nothing.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import ansible_runner
import pytest

from stacklib import REPO_ROOT, StackDeployment, secret_strings

VENV_BIN = REPO_ROOT / ".venv" / "bin"
# What the bootstrap template's survey sends (awx/objects.yml): the domain, the allowlist as the textarea gives
# it (one CIDR per line), the mode.
SURVEY_ANSWERS = {
    "stack_domain": "awx-runner.test",
    "stack_api_default_allowlist": "10.0.0.0/8\n192.168.0.0/16\n127.0.0.0/8",
    "stack_mode": "bootstrap",
}


def run_job(stack: StackDeployment, private_data_dir: Path):
    """One AWX-style job: bootstrap playbook, repository inventory, survey answers plus the isolation variables
    (in AWX those would be inventory variables)."""
    extravars = dict(stack.vars, **SURVEY_ANSWERS)
    return ansible_runner.run(
        private_data_dir=str(private_data_dir),
        project_dir=str(REPO_ROOT),
        playbook="playbooks/bootstrap.yml",
        inventory=str(REPO_ROOT / "inventories" / "local" / "hosts.yml"),
        extravars=extravars,
        envvars={"PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "ANSIBLE_NOCOLOR": "1"},
        quiet=True,
        timeout=1800,
    )


def leaks(events: list[dict], private_data_dir: Path, secrets: set[str]) -> list[str]:
    """Secret values found in the job's events or anywhere under its private data directory (artifacts:
    stdout, job_events/*.json, the env/ files runner wrote)."""
    found = []
    for event in events:
        dumped = json.dumps(event)
        found += [f"event {event.get('counter')} ({event.get('event')})" for s in secrets
                  if s in dumped or json.dumps(s)[1:-1] in dumped]
    for path in private_data_dir.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            found += [str(path.relative_to(private_data_dir)) for s in secrets if s in text or json.dumps(s)[1:-1] in text]
    return sorted(set(found))


def failures(runner) -> list[str]:
    """Task and message of each failed result (no_log results arrive censored)."""
    return [f"{event['event_data'].get('task')}: {str(event['event_data'].get('res', {}).get('msg'))[:500]}"
            for event in runner.events if event["event"] == "runner_on_failed"
            and not event["event_data"].get("ignore_errors")]


class Job:
    """One finished job: the runner result, its private data directory, the store right after it."""

    def __init__(self, runner, private_data_dir: Path, store: dict[str, str]):
        self.runner = runner
        self.private_data_dir = private_data_dir
        self.store = store
        self.events = list(runner.events)


@pytest.fixture(scope="module")
def stack():
    deployment = StackDeployment(domain=SURVEY_ANSWERS["stack_domain"])
    try:
        yield deployment
    finally:
        deployment.destroy()


@pytest.fixture(scope="module")
def jobs(stack, tmp_path_factory):
    """Two jobs, each from its own fresh private data directory (every AWX job gets one, in a new EE container)."""
    done = []
    for name in ("job1", "job2"):
        private_data_dir = Path(tempfile.mkdtemp(prefix=f"runner-{name}-", dir=tmp_path_factory.getbasetemp()))
        runner = run_job(stack, private_data_dir)
        assert runner.status == "successful" and runner.rc == 0, f"{name} {runner.status}: {failures(runner)}"
        done.append(Job(runner, private_data_dir, stack.store_snapshot()))
    return done


@pytest.fixture(scope="module")
def secrets(stack, jobs):
    """The store's values once both jobs ran (the second must not have added any: see the store snapshots)."""
    assert len(jobs) == 2
    values = secret_strings(stack.secrets_dir)
    assert len(values) >= 10, sorted(p.name for p in stack.secrets_dir.iterdir())
    return values


def test_secret_store_is_on_the_managed_host(stack, jobs):
    """stack_secrets_dir (root-only, 0700) holds the store; no job directory and not the project does."""
    assert stack.secrets_dir.is_dir() and oct(stack.secrets_dir.stat().st_mode & 0o777) == "0o700"
    store = stack.secrets_dir.resolve()
    for job in jobs:
        assert not store.is_relative_to(job.private_data_dir.resolve())
    assert not store.is_relative_to(REPO_ROOT)


def test_no_secret_in_job_events_or_artifacts(stack, jobs, secrets):
    for job in jobs:
        # The events searched are the real results: task results for the host, naming this deployment's containers.
        assert sum(1 for event in job.events if event["event"] == "runner_on_ok") > 20
        assert any(f"{stack.prefix}caddy" in json.dumps(event) for event in job.events)
        assert leaks(job.events, job.private_data_dir, secrets) == []


def test_next_job_finds_the_same_secrets(jobs):
    first, second = jobs
    assert second.store == first.store, "the second job regenerated or rewrote secrets"


def test_next_job_changes_nothing(jobs):
    second = jobs[1]
    changed = {host: count for host, count in (second.runner.stats or {}).get("changed", {}).items() if count}
    changed_tasks = [event["event_data"].get("task") for event in second.events
                     if event["event"] == "runner_on_ok" and event["event_data"].get("res", {}).get("changed")]
    assert changed == {}, f"second job changed: {changed_tasks}"
