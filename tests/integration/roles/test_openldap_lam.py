"""The openldap and lam roles converged for real on this machine's engine (tests/integration/roles/openldap_lam.yml).

One converge with two declared users (one admin), isolated by unique container/network/volume prefixes and a
temporary base and secret directory, then: a second run changes nothing; the directory holds the OUs, the groups
with their members and the users with their posix attributes; every user binds with the generated password from
the store and a wrong one is refused; Authelia's service account binds and reads users and groups; a password
changed with ldappasswd survives a re-run; a user dropped from the variables is not deleted; LAM serves /lam/,
its server profile points at the directory and its master password is the generated one.

Passwords are read from the store as root and handed to commands on stdin, never printed or put on a command line.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from conftest import wait_until

REPO_ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = Path(__file__).resolve().parent / "openldap_lam.yml"
BASE_DN = "dc=stack,dc=local"
USERS = [
    {"uid": "alice", "given_name": "Alice", "surname": "Admin", "mail": "alice@example.test",
     "groups": ["admins", "users", "openwebui-admin"]},
    {"uid": "bob", "given_name": "Bob", "surname": "User", "mail": "bob@example.test", "groups": ["users"]},
]
RECAP = re.compile(r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)

pytestmark = pytest.mark.integration


def _ansible_playbook():
    candidate = Path(sys.executable).parent / "ansible-playbook"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("ansible-playbook")
    if not found:
        pytest.skip("ansible-playbook is not installed")
    return found


class Stack:
    """One isolated deployment: its extra vars, its playbook runs and the names of what it created."""

    def __init__(self, client, workdir: Path):
        self.client = client
        self.workdir = workdir
        self.run_id = uuid.uuid4().hex[:8]
        self.prefix = f"dmtol{self.run_id}-"
        self.volume_prefix = f"dmtol{self.run_id}_"
        self.store = workdir / "secrets"
        self.image_name = "datamancy-test/openldap-role"
        self.vars = {
            "stack_container_prefix": self.prefix,
            "stack_network_prefix": self.prefix,
            "stack_volume_prefix": self.volume_prefix,
            "stack_base_dir": str(workdir / "base"),
            "stack_secrets_dir": str(self.store),
            "stack_domain": "example.test",
            "docker_host_manage_engine": False,
            "openldap_base_image": "datamancy-test/debian:bookworm",
            "openldap_image_name": self.image_name,
            "openldap_users": USERS,
            "lam_image": "datamancy-test/lam:local",
        }

    def converge(self, **overrides) -> int:
        """Run the playbook; returns the number of changed tasks from the PLAY RECAP."""
        extra = dict(self.vars, **overrides)
        vars_file = self.workdir / "vars.json"
        vars_file.write_text(json.dumps(extra))
        env = dict(os.environ,
                   ANSIBLE_COLLECTIONS_PATH=os.pathsep.join([str(REPO_ROOT / "collections"),
                                                             str(REPO_ROOT / ".cache" / "collections")]),
                   ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_STDOUT_CALLBACK="default",
                   ANSIBLE_LOCAL_TEMP=str(self.workdir / "ansible-tmp"))
        proc = subprocess.run([_ansible_playbook(), str(PLAYBOOK), "-e", f"@{vars_file}"],
                              cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
        output = proc.stdout + proc.stderr
        recap = RECAP.search(proc.stdout)
        assert proc.returncode == 0 and recap, output[-8000:]
        assert int(recap.group(4)) == 0, output[-8000:]
        self.changed_tasks = re.findall(r"^TASK \[([^\]]+)\][^\n]*\n(?:changed|.*=> \(item=.*\)\n)*changed",
                                        proc.stdout, re.M)
        return int(recap.group(2))

    def container(self, service):
        return self.client.containers.get(f"{self.prefix}{service}")

    def secret(self, name) -> str:
        return (self.store / name).read_text().strip()

    def exec_stdin(self, service, argv, stdin: str):
        """Run argv in the service's container with stdin (secrets go this way, never into argv)."""
        return subprocess.run(["docker", "exec", "-i", f"{self.prefix}{service}", *argv], input=stdin,
                              capture_output=True, text=True, timeout=60, check=False)

    def ldapsearch(self, base, filterstr, *attrs):
        result = self.container("openldap").exec_run(
            ["ldapsearch", "-Q", "-LLL", "-o", "ldif-wrap=no", "-Y", "EXTERNAL", "-H", "ldapi:///",
             "-b", base, filterstr, *attrs])
        assert result.exit_code == 0, result.output.decode()
        return _parse_ldif(result.output.decode())

    def bind(self, dn, password) -> bool:
        """A simple bind over TCP (ldapwhoami against slapd's LDAP port); True when the password is accepted."""
        proc = self.exec_stdin("openldap", ["ldapwhoami", "-x", "-H", "ldap://127.0.0.1:389", "-D", dn,
                                            "-y", "/dev/stdin"], password)
        if proc.returncode == 0:
            return True
        assert "Invalid credentials (49)" in proc.stderr, proc.stderr
        return False

    def cleanup(self, images_before):
        for container in self.client.containers.list(all=True, filters={"name": self.prefix}):
            if container.name.startswith(self.prefix):
                container.remove(force=True, v=True)
        for network in self.client.networks.list(names=[self.prefix]):
            if network.name.startswith(self.prefix):
                network.remove()
        for volume in self.client.volumes.list():
            if volume.name.startswith(self.volume_prefix):
                volume.remove(force=True)
        for image in self.client.images.list(name=self.image_name):
            if image.id not in images_before:
                self.client.images.remove(image.id, force=True)


def _parse_ldif(text):
    entries = {}
    for block in text.strip().split("\n\n"):
        if not block.strip():
            continue
        entry = {}
        for line in block.splitlines():
            key, _unused, value = line.partition(":")
            entry.setdefault(key.lower(), []).append(value.lstrip(": ").strip())
        entries[entry.pop("dn")[0].lower()] = entry
    return entries


@pytest.fixture(scope="module")
def stack(docker_client, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("openldap-lam")
    deployment = Stack(docker_client, workdir)
    images_before = {image.id for image in docker_client.images.list(name=deployment.image_name)}
    yield deployment
    deployment.cleanup(images_before)
    shutil.rmtree(workdir, ignore_errors=True)


def _user_dn(uid):
    return f"uid={uid},ou=users,{BASE_DN}"


def test_converge_is_idempotent(stack):
    stack.converge()
    assert stack.converge() == 0, f"a second run must report changed=0, changed: {stack.changed_tasks}"


def test_directory_holds_ous_groups_and_posix_users(stack):
    ous = stack.ldapsearch(BASE_DN, "(objectClass=organizationalUnit)", "ou")
    assert {f"ou={ou},{BASE_DN}" for ou in ("users", "groups", "services")} <= set(ous)

    groups = stack.ldapsearch(f"ou=groups,{BASE_DN}", "(objectClass=groupOfNames)", "member")
    members = {dn.split(",")[0][3:]: {m.lower() for m in entry.get("member", [])} for dn, entry in groups.items()}
    assert members["admins"] == {_user_dn("alice")}
    assert members["users"] == {_user_dn("alice"), _user_dn("bob")}
    assert members["openwebui-admin"] == {_user_dn("alice")}

    users = stack.ldapsearch(f"ou=users,{BASE_DN}", "(objectClass=posixAccount)",
                             "objectClass", "uidNumber", "gidNumber", "homeDirectory", "mail", "memberOf")
    assert set(users) == {_user_dn("alice"), _user_dn("bob")}
    numbers = set()
    for uid in ("alice", "bob"):
        entry = users[_user_dn(uid)]
        assert {"inetorgperson", "posixaccount", "shadowaccount"} <= {oc.lower() for oc in entry["objectclass"]}
        assert int(entry["uidnumber"][0]) >= 10000 and entry["gidnumber"] == entry["uidnumber"]
        assert entry["homedirectory"] == [f"/home/{uid}"]
        assert entry["mail"] == [f"{uid}@example.test"]
        numbers.add(entry["uidnumber"][0])
    assert len(numbers) == 2, "every user gets its own uidNumber"
    assert f"cn=admins,ou=groups,{BASE_DN}" in {g.lower() for g in users[_user_dn("alice")]["memberof"]}


def test_users_bind_with_their_generated_passwords(stack):
    alice, bob = stack.secret("ldap_user_alice_password"), stack.secret("ldap_user_bob_password")
    assert alice != bob and len(alice) >= 24, "passwords are generated per user, never shared"
    assert stack.bind(_user_dn("alice"), alice)
    assert stack.bind(_user_dn("bob"), bob)
    assert not stack.bind(_user_dn("alice"), bob)
    assert not stack.bind(_user_dn("bob"), "not-" + bob)
    assert stack.bind(f"cn=admin,{BASE_DN}", stack.secret("ldap_admin_password"))


def test_authelia_service_account_reads_users_and_groups(stack):
    dn = f"cn=authelia,ou=services,{BASE_DN}"
    password = stack.secret("authelia_ldap_password")
    assert stack.bind(dn, password)
    assert not stack.bind(dn, password + "x")
    # Authelia's own lookups: the user by uid, then the groups naming the user's DN as member.
    users = stack.exec_stdin("openldap", [
        "ldapsearch", "-x", "-LLL", "-H", "ldap://127.0.0.1:389", "-D", dn, "-y", "/dev/stdin",
        "-b", f"ou=users,{BASE_DN}", "(&(uid=alice)(objectClass=inetOrgPerson))", "mail", "displayName",
        "userPassword"], password)
    assert users.returncode == 0, users.stderr
    assert "mail: alice@example.test" in users.stdout and "displayName: Alice Admin" in users.stdout
    assert "userPassword" not in users.stdout, "no one but the user reads password hashes"
    groups = stack.exec_stdin("openldap", [
        "ldapsearch", "-x", "-LLL", "-H", "ldap://127.0.0.1:389", "-D", dn, "-y", "/dev/stdin",
        "-b", f"ou=groups,{BASE_DN}", f"(&(member={_user_dn('alice')})(objectClass=groupOfNames))", "cn"], password)
    assert groups.returncode == 0, groups.stderr
    assert {"cn: admins", "cn: users", "cn: openwebui-admin"} <= set(groups.stdout.splitlines())
    # An ordinary user cannot list the directory.
    other = stack.exec_stdin("openldap", [
        "ldapsearch", "-x", "-LLL", "-H", "ldap://127.0.0.1:389", "-D", _user_dn("bob"), "-y", "/dev/stdin",
        "-b", f"ou=users,{BASE_DN}", "(uid=alice)", "mail"], stack.secret("ldap_user_bob_password"))
    assert "alice@example.test" not in other.stdout


def test_rerun_keeps_changed_password_and_undeclared_user(stack):
    new_password = secrets.token_urlsafe(24)
    changed = stack.exec_stdin("openldap", [
        "ldappasswd", "-x", "-H", "ldap://127.0.0.1:389", "-D", f"cn=admin,{BASE_DN}", "-y", "/dev/stdin",
        "-s", new_password, _user_dn("alice")], stack.secret("ldap_admin_password"))
    assert changed.returncode == 0, changed.stderr
    # bob leaves the variables; alice is still declared with her initial password in the store.
    stack.converge(openldap_users=[USERS[0]])
    assert stack.bind(_user_dn("alice"), new_password), "a re-run must not reset a changed password"
    assert not stack.bind(_user_dn("alice"), stack.secret("ldap_user_alice_password"))
    assert _user_dn("bob") in stack.ldapsearch(f"ou=users,{BASE_DN}", "(uid=bob)", "uid")
    assert stack.bind(_user_dn("bob"), stack.secret("ldap_user_bob_password"))
    assert stack.converge(openldap_users=[USERS[0]]) == 0, stack.changed_tasks


def test_lam_serves_profile_for_the_directory(stack):
    lam = stack.container("lam")
    lam.reload()
    address = next(net["IPAddress"] for name, net in lam.attrs["NetworkSettings"]["Networks"].items()
                   if name == f"{stack.prefix}backend")
    response = wait_until(lambda: requests.get(f"http://{address}/lam/", timeout=5), timeout=60, what="LAM /lam/")
    assert response.status_code == 200 and "LDAP Account Manager" in response.text

    profile = lam.exec_run(["cat", "/var/lib/ldap-account-manager/config/lam.conf"]).output.decode()
    lines = set(profile.splitlines())
    assert "ServerURL: ldap://openldap:389" in lines
    assert f"Admins: cn=admin,{BASE_DN}" in lines
    assert f"types: suffix_user: ou=users,{BASE_DN}" in lines
    # People only (inetOrgPerson, what Authelia reads); groupOfNames members are edited in the tree view.
    assert "types: modules_user: inetOrgPerson" in lines and "activeTypes: user" in lines
    assert f"treesuffix: {BASE_DN}" in lines

    # LAM's own password check (LAMCfgMain) accepts the generated master password and not the well-known default.
    check = stack.exec_stdin("lam", ["php", "-r", (
        'chdir("/usr/share/ldap-account-manager/templates");'
        'include_once "/usr/share/ldap-account-manager/lib/config.inc";'
        '$pw = stream_get_contents(STDIN); $c = new LAMCfgMain();'
        'echo json_encode([$c->checkPassword($pw), $c->checkPassword("lam")]);')],
        stack.secret("lam_master_password"))
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout.strip().splitlines()[-1]) == [True, False]
    passwd = [line for line in lines if line.startswith("Passwd: ")]
    assert passwd and passwd[0].startswith("Passwd: {CRYPT-SHA512}$6$")

    # LAM reaches the directory at the profile's URL and the admin logs in there.
    bind = stack.exec_stdin("lam", ["php", "-r", (
        '$l = ldap_connect("ldap://openldap:389"); ldap_set_option($l, LDAP_OPT_PROTOCOL_VERSION, 3);'
        f'echo ldap_bind($l, "cn=admin,{BASE_DN}", stream_get_contents(STDIN)) ? "bound" : "refused";')],
        stack.secret("ldap_admin_password"))
    assert bind.stdout.strip().endswith("bound"), bind.stderr


def test_lam_and_openldap_are_hardened(stack):
    ldap = stack.container("openldap")
    config = ldap.attrs["HostConfig"]
    assert ldap.attrs["Config"]["User"] == "1389:1389"
    assert config["ReadonlyRootfs"] and config["CapDrop"] == ["ALL"] and not config["PortBindings"]
    assert set(ldap.attrs["NetworkSettings"]["Networks"]) == {f"{stack.prefix}backend"}
    assert stack.container("lam").attrs["HostConfig"]["CapDrop"] == ["ALL"]
