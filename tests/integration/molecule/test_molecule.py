"""The Molecule scenario for bootstrap mode (molecule/bootstrap), run the way a contributor or CI runs it:
``molecule test -s bootstrap --destroy=always`` from the repository root. The scenario deploys with the integration
suite's converge, lets Molecule check idempotence (a second converge must report changed=0), verifies SSO,
identity headers and segregation from outside (verify.yml), and destroys exactly what it created."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import docker
import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = REPO_ROOT / ".venv" / "bin"
SCENARIO = "bootstrap"
# The scenario's fixed isolation (molecule/bootstrap/vars.yml): what destroy must have removed.
PREFIX = "dmmolb-"
VOLUME_PREFIX = "dmmolb_"
WORKDIR = Path("/tmp/molecule-datamancy-bootstrap")
# Measured around 2.5 minutes on 2 cores; the bound only stops a hung run.
TIMEOUT = 900
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def leftovers(client: docker.DockerClient) -> list[str]:
    names = [c.name for c in client.containers.list(all=True) if c.name.startswith(PREFIX)]
    names += [n.name for n in client.networks.list() if n.name.startswith(PREFIX)]
    names += [v.name for v in client.volumes.list() if v.name.startswith(VOLUME_PREFIX)]
    return names


@pytest.fixture(scope="module")
def molecule_run():
    """One `molecule test` run; its first step destroys what an interrupted earlier run may have left."""
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", NO_COLOR="1", PY_COLORS="0", COLUMNS="250",
               # One stream in order: Molecule's step log (stderr) between the playbooks' output (stdout).
               PYTHONUNBUFFERED="1")
    command = [str(VENV_BIN / "molecule"), "test", "--scenario-name", SCENARIO, "--destroy=always",
               # Plain Ansible output (no borders, no wrapping) so the steps' recaps can be read back.
               "--no-command-borders"]
    client = docker.from_env(timeout=120)
    try:
        try:
            completed = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, errors="replace", timeout=TIMEOUT,
                                       check=False)
            returncode, output = completed.returncode, completed.stdout
        except subprocess.TimeoutExpired as expired:
            # A killed run cannot destroy; do it here so nothing is left on the engine.
            subprocess.run([str(VENV_BIN / "molecule"), "destroy", "--scenario-name", SCENARIO], cwd=REPO_ROOT,
                           env=env, capture_output=True, timeout=300, check=False)
            partial = expired.output.decode(errors="replace") if isinstance(expired.output, bytes) else expired.output
            returncode, output = None, f"{partial or ''}\n[timed out after {TIMEOUT} s]"
        yield returncode, ANSI.sub("", output), leftovers(client)
    finally:
        client.close()


def tail(output: str, lines: int = 150) -> str:
    return "\n".join(output.splitlines()[-lines:])


def step_output(output: str, step: str) -> str:
    """What one step printed: from Molecule's "[bootstrap > <step>] Executing" to the next step's start (the
    separator is "➜" on a terminal)."""
    starts = list(re.finditer(rf"^.*\[?{SCENARIO} (?:>|➜) (\w+)\]?:? Executing$", output, re.MULTILINE))
    for index, start in enumerate(starts):
        if start.group(1) == step:
            end = starts[index + 1].start() if index + 1 < len(starts) else len(output)
            return output[start.end():end]
    raise AssertionError(f"step {step} did not run\n{tail(output)}")


def test_the_scenario_passes(molecule_run):
    returncode, output, _unused = molecule_run
    assert returncode == 0, tail(output)


def test_every_step_ran_and_succeeded(molecule_run):
    _unused, output, _unused = molecule_run
    for step in ("syntax", "converge", "idempotence", "verify", "destroy"):
        assert re.search(rf"^{SCENARIO} (?:>|➜) {step}: Executed: Successful", output, re.MULTILINE), \
            f"{step} did not pass\n{tail(output)}"


def test_the_second_converge_changed_nothing(molecule_run):
    _unused, output, _unused = molecule_run
    assert "Idempotence test failed" not in output, tail(output)
    # The idempotence step's own recap (the last converge recap before verify) reports changed=0.
    recaps = re.findall(r"ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", step_output(output, "idempotence"))
    assert recaps == ["0"], tail(output)


def test_the_verifications_ran(molecule_run):
    _unused, output, _unused = molecule_run
    verify = step_output(output, "verify")
    for check in ("Assert every protected vhost redirects browsers", "Log bob in through Authelia",
                  "Assert the upstream saw Authelia's identity", "Assert only Caddy publishes ports",
                  "Assert the database network is internal"):
        assert check in verify, f"verify.yml did not run '{check}'\n{tail(output)}"
    assert re.search(r"ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0", verify), tail(output)


def test_the_collection_came_from_this_checkout(molecule_run):
    """datamancy.stack must resolve to the checkout under test (./collections links to it), not to a copy
    installed elsewhere: the converge includes the roles' task files from that path."""
    _unused, output, _unused = molecule_run
    assert f"{REPO_ROOT}/collections/ansible_collections/datamancy/stack/roles/" in step_output(output, "converge"), \
        tail(output)


def test_destroy_removed_what_the_scenario_created(molecule_run):
    _unused, output, remaining = molecule_run
    assert remaining == [], remaining
    assert not WORKDIR.exists(), f"{WORKDIR} left behind"
