"""The backup role with an SFTP repository, for real: an OpenSSH server (tests/integration/day2/sftp-image) on the
backend network, the restic account's key from the inventory, the server's host key pinned. A wrong pinned host
key stops the converge before anything reaches the server; the right one gets an encrypted snapshot there.
The shared deployment goes back to its local repository at the end."""
from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stacklib import StackDeployment

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
IMAGE = "datamancy-test-sftp/openssh:local"
REPOSITORY = "sftp:restic@sftp:/srv/restic/datamancy"


def keypair() -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return private, public


def authorized_keys_archive(public_key: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        data = (public_key + "\n").encode()
        info = tarfile.TarInfo("home/restic/.ssh/authorized_keys")
        info.size, info.mode, info.uid, info.gid = len(data), 0o600, 1000, 1000
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def sftp(full_stack: StackDeployment):
    """The server, reachable as `sftp` on the stack's backend network, and the restic account's key."""
    client = full_stack.docker
    client.images.build(path=str(HERE / "sftp-image"), tag=IMAGE, rm=True, forcerm=True, pull=False)
    private, public = keypair()
    backend = full_stack.network("backend")
    container = client.containers.create(
        IMAGE, name=f"{full_stack.prefix}sftp", hostname="sftp", network=backend,
        networking_config={backend: client.api.create_endpoint_config(aliases=["sftp"])})
    container.put_archive("/", authorized_keys_archive(public))
    container.start()
    deadline = time.monotonic() + 60
    while container.attrs["State"].get("Health", {}).get("Status") != "healthy" and time.monotonic() < deadline:
        time.sleep(1)
        container.reload()
    code, host_key = container.exec_run(["cat", "/etc/ssh/ssh_host_ed25519_key.pub"])
    assert code == 0, host_key
    yield {"container": container, "private_key": private,
           "known_hosts": "sftp " + " ".join(host_key.decode().split()[:2])}
    # Back to the local repository, whatever happened, before the server goes.
    back = full_stack.playbook("site.yml")
    assert back.returncode == 0, back.output[-4000:]
    container.remove(force=True)
    client.images.remove(IMAGE, force=True)


def sftp_vars(sftp: dict, known_hosts: str | None = None) -> dict:
    return {"backup_repository": REPOSITORY, "backup_sftp_private_key": sftp["private_key"],
            "backup_sftp_known_hosts": known_hosts or sftp["known_hosts"]}


def repository_files(sftp: dict) -> list[str]:
    code, output = sftp["container"].exec_run(["find", "/srv/restic", "-type", "f"])
    assert code == 0, output
    return output.decode().split()


def test_a_host_key_other_than_the_pinned_one_is_refused(full_stack, sftp):
    other = "sftp " + " ".join(keypair()[1].split()[:2])
    run = full_stack.playbook("site.yml", **sftp_vars(sftp, known_hosts=other))
    assert run.returncode != 0
    assert "Host key verification failed" in run.output or "host key" in run.output.lower(), run.output[-4000:]
    assert repository_files(sftp) == []


def test_a_backup_lands_encrypted_on_the_sftp_server(full_stack, sftp):
    run = full_stack.playbook("site.yml", **sftp_vars(sftp))
    assert run.returncode == 0, run.output[-6000:]
    backup = full_stack.playbook("playbooks/backup.yml", **sftp_vars(sftp))
    assert backup.returncode == 0, backup.output[-6000:]
    last = json.loads((full_stack.base_dir / "backup" / "status" / "last-run.json").read_text())
    assert last["ok"] is True and last["snapshot_id"] in backup.output
    files = repository_files(sftp)
    assert "/srv/restic/datamancy/config" in files
    assert [f for f in files if f.startswith("/srv/restic/datamancy/snapshots/")]
    # Encrypted at rest on the server: no LDAP entry name, no secret name in clear.
    code, output = sftp["container"].exec_run(["grep", "-rlF", "dc=stack,dc=local", "/srv/restic"])
    assert code == 1, output
