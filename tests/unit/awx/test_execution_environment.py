"""execution-environment.yml: `ansible-builder create` writes a build context that installs exactly the pins the
rest of the project tests with, and ansible-builder's own introspection (the step the image build runs) finds the
collection's Python and system dependencies in the built collection."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = REPO_ROOT / ".venv" / "bin"


def python_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "requirements" / "python.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def collection_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "requirements" / "collections.txt").read_text().splitlines():
        fields = line.split()
        if len(fields) == 2 and not line.startswith(("#", "bundle")):
            pins[fields[0]] = fields[1]
    return pins


def galaxy_version() -> str:
    return yaml.safe_load((REPO_ROOT / "galaxy.yml").read_text())["version"]


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> Path:
    """What scripts/ee.sh create does (it also runs the set-up, which a test must not): build the collection
    tarball where execution-environment.yml expects it, then `ansible-builder create`."""
    path = tmp_path_factory.mktemp("ee") / "context"
    subprocess.run([VENV_BIN / "ansible-galaxy", "collection", "build", "--force", "--output-path", ".cache/ee"],
                   cwd=REPO_ROOT, check=True, capture_output=True, timeout=300)
    completed = subprocess.run([VENV_BIN / "ansible-builder", "create", "-f", "execution-environment.yml",
                                "--context", path], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                               check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    # ansible-builder only warns when an additional_build_files source is missing: treat that as a failure.
    assert "No matches" not in completed.stdout + completed.stderr
    return path


def build_file(context: Path) -> str:
    for name in ("Containerfile", "Dockerfile"):
        if (context / name).exists():
            return (context / name).read_text()
    raise AssertionError(f"no Containerfile or Dockerfile in {sorted(p.name for p in context.iterdir())}")


def test_definition_is_version_3_with_its_dependencies():
    definition = yaml.safe_load((REPO_ROOT / "execution-environment.yml").read_text())
    assert definition["version"] == 3
    deps = definition["dependencies"]
    pins = python_pins()
    assert deps["ansible_core"]["package_pip"] == f"ansible-core=={pins['ansible-core']}"
    assert deps["ansible_runner"]["package_pip"] == f"ansible-runner=={pins['ansible-runner']}"
    assert (REPO_ROOT / deps["python"]).is_file() and (REPO_ROOT / deps["galaxy"]).is_file()


def test_build_installs_pinned_ansible_core_and_runner(context):
    text = build_file(context)
    pins = python_pins()
    refs = re.search(r'^ARG ANSIBLE_INSTALL_REFS="([^"]*)"', text, re.MULTILINE).group(1).split()
    assert sorted(refs) == sorted([f"ansible-core=={pins['ansible-core']}", f"ansible-runner=={pins['ansible-runner']}"])
    # Every stage the image build needs, in ansible-builder 3's layout.
    for stage in ("AS base", "AS galaxy", "AS builder", "AS final"):
        assert stage in text
    assert "ansible-galaxy collection install" in text and "introspect" in text


def test_python_requirements_match_the_controller_pins(context):
    pins = python_pins()
    lines = [line for line in (context / "_build" / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines, "the EE installs no Python requirements"
    for line in lines:
        name, version = line.split("==")
        assert pins.get(name.lower()) == version, f"{line}: requirements/python.txt pins {pins.get(name.lower())}"
    # What the collection declares for EEs (its plugins' imports) is pinned here.
    names = {line.split("==")[0].lower() for line in lines}
    declared = [line for line in (REPO_ROOT / "meta" / "ee-requirements.txt").read_text().splitlines()
                if line and not line.startswith("#")]
    assert {"cryptography", "passlib", "argon2-cffi"} <= set(declared) <= names


def test_collections_match_the_pins_and_carry_this_collection(context):
    requirements = yaml.safe_load((context / "_build" / "requirements.yml").read_text())["collections"]
    pins = collection_pins()
    by_name = {entry["name"]: entry for entry in requirements}
    # Every pinned collection but awx.awx (only for playbooks/awx_configure.yml, run outside the EE).
    assert {name for name in by_name if "/" not in name} == set(pins) - {"awx.awx"}
    for fqcn in set(pins) - {"awx.awx"}:
        assert by_name[fqcn]["version"] == pins[fqcn]
    (local,) = [entry for entry in requirements if entry.get("type") == "file"]
    # The galaxy stage copies _build/ to /build before it installs, so /build/<x> is _build/<x> in the context.
    tarball = context / "_build" / Path(local["name"]).relative_to("/build")
    assert tarball.name == f"datamancy-stack-{galaxy_version()}.tar.gz"
    with tarfile.open(tarball) as archive:
        manifest = json.load(archive.extractfile("MANIFEST.json"))
        names = set(archive.getnames())
    assert manifest["collection_info"]["namespace"] == "datamancy"
    assert manifest["collection_info"]["version"] == galaxy_version()
    assert {"meta/execution-environment.yml", "meta/ee-requirements.txt", "playbooks/bootstrap.yml"} <= names


def test_introspection_finds_the_collection_dependencies(context, tmp_path):
    """Run the introspect step of the image build on the collections the galaxy stage would install."""
    collections = tmp_path / "collections"
    (local,) = (context / "_build" / "collections").glob("datamancy-stack-*.tar.gz")
    # --force: from the repository root, ansible.cfg's collections path already holds datamancy.stack (a symlink).
    subprocess.run([VENV_BIN / "ansible-galaxy", "collection", "install", "--force", "--no-deps", "-p", collections, local],
                   check=True, capture_output=True, timeout=120, cwd=tmp_path)
    # What the galaxy stage installs: requirements.yml's entries.
    wanted = [entry["name"] for entry in yaml.safe_load((context / "_build" / "requirements.yml").read_text())["collections"]
              if entry.get("type") != "file"]
    for fqcn in wanted:
        namespace, name = fqcn.split(".")
        shutil.copytree(REPO_ROOT / ".cache" / "collections" / "ansible_collections" / namespace / name,
                        collections / "ansible_collections" / namespace / name)
    build = context / "_build"
    pip_out, bindep_out = tmp_path / "pip.txt", tmp_path / "bindep.txt"
    completed = subprocess.run(
        [VENV_BIN / "python", build / "scripts" / "introspect.py", "introspect", "--user-pip", build / "requirements.txt",
         "--user-bindep", build / "bindep.txt", "--write-pip", pip_out, "--write-bindep", bindep_out, collections],
        capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    pip_lines = pip_out.read_text().splitlines()
    own = (REPO_ROOT / "meta" / "ee-requirements.txt").read_text().split("\n")
    for requirement in (line for line in own if line and not line.startswith("#")):
        assert f"{requirement}  # from collection datamancy.stack" in pip_lines
    assert "openssh-clients [platform:rpm]  # from collection datamancy.stack" in bindep_out.read_text().splitlines()
