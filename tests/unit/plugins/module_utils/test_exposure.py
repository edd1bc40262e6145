"""module_utils/exposure: which store values count, where in a container's description they are found, and that a
finding carries names only."""
from __future__ import annotations

import json

from ansible_collections.datamancy.stack.plugins.module_utils import exposure

PEM = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
       "ZmFrZWtleWxpbmV0d29mYWtla2V5bGluZXR3b2Zha2VrZXk=\n-----END PRIVATE KEY-----\n")


def write_store(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / "litellm_master_key").write_text("sk-0123456789abcdef")
    (store / "litellm_master_key.meta").write_text('{"kind": "api_key"}')
    (store / "stackops_ssh_key").write_text(PEM)
    (store / "stackops_ssh_key.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPublicHalfIsNotSecret x")
    (store / "authelia_oidc_keyring").write_text(json.dumps({"keys": [{"kid": "k1", "key": PEM}]}))
    (store / "authelia_oidc_jwks").write_text(json.dumps({"keys": [{"n": "public-modulus-value"}]}))
    (store / "short").write_text("abc")
    (store / ".lock").write_text("lock-file-content")
    return store


def test_store_values_skip_public_material_and_short_values(tmp_path):
    values = exposure.store_values(str(write_store(tmp_path)))
    assert sorted(values) == ["authelia_oidc_keyring", "litellm_master_key", "stackops_ssh_key"]
    assert values["litellm_master_key"] == {"sk-0123456789abcdef"}
    # A PEM: the whole value, its \\n-joined single-line form and every long line; also inside a key ring.
    assert "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7" in values["stackops_ssh_key"]
    assert PEM.strip().replace("\n", "\\n") in values["stackops_ssh_key"]
    assert "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7" in values["authelia_oidc_keyring"]


def test_env_file_values(tmp_path):
    env = tmp_path / "repository.env"
    env.write_text("# restic's environment\nAWS_ACCESS_KEY_ID=AKIAEXAMPLEKEY01\nAWS_SECRET_ACCESS_KEY=s3cr3t/value+x\n"
                   "EMPTY=\n")
    assert exposure.env_file_values(str(env)) == {
        "repository.env:AWS_ACCESS_KEY_ID": {"AKIAEXAMPLEKEY01"},
        "repository.env:AWS_SECRET_ACCESS_KEY": {"s3cr3t/value+x"}}
    assert exposure.env_file_values(str(tmp_path / "missing.env")) == {}


def inspect(env=(), cmd=None, entrypoint=None, labels=None, mounts=()):
    return {"Config": {"Env": list(env), "Cmd": cmd, "Entrypoint": entrypoint, "Labels": labels or {},
                       "Healthcheck": {"Test": ["CMD", "true"]}, "WorkingDir": "/app", "User": "0:0"},
            "HostConfig": {"Binds": None, "SecurityOpt": ["no-new-privileges:true"]},
            "Mounts": [{"Source": source} for source in mounts]}


def test_every_configuration_field_is_searched_and_findings_name_no_value(tmp_path):
    values = exposure.store_values(str(write_store(tmp_path)))
    clean = inspect(env=["PATH=/usr/bin", "LITELLM_MODE=PRODUCTION"], cmd=["--port", "4000"],
                    entrypoint=["/bin/sh", "-c", "exec \"$@\""], labels={"datamancy.stack.service": "litellm"},
                    mounts=["/opt/datamancy/litellm/secret-env"])
    assert exposure.find_exposures("litellm", exposure.configuration_fields(clean), values) == []

    leaky = inspect(env=["LITELLM_MASTER_KEY=sk-0123456789abcdef"],
                    cmd=["--key", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"],
                    labels={"note": "sk-0123456789abcdef"}, mounts=["/tmp/sk-0123456789abcdef"])
    findings = exposure.find_exposures("litellm", exposure.configuration_fields(leaky), values)
    assert {(f["field"], f["secret"]) for f in findings} == {
        ("Config.Env LITELLM_MASTER_KEY", "litellm_master_key"),
        ("Config.Cmd", "authelia_oidc_keyring"), ("Config.Cmd", "stackops_ssh_key"),
        ("Config.Labels note", "litellm_master_key"), ("Mounts Source", "litellm_master_key")}
    assert all(f["container"] == "litellm" for f in findings)
    assert "sk-0123456789abcdef" not in json.dumps(findings)
