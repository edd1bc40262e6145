from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.datamancy.stack.plugins.filter.secrets import secret_specs

CATALOGUE = {
    "plain": {"kind": "hex", "bytes": 32},
    "source": {"kind": "password", "length": 32},
    "digest": {"kind": "digest", "derive_from": "source", "scheme": "ldap_ssha"},
    "orphan": {"kind": "digest", "derive_from": "missing"},
}


def test_specs_carry_their_names():
    assert secret_specs(CATALOGUE, ["plain"]) == [{"kind": "hex", "bytes": 32, "name": "plain"}]


def test_the_source_of_a_digest_comes_first_and_once():
    names = [spec["name"] for spec in secret_specs(CATALOGUE, ["digest", "source", "plain"])]
    assert names == ["source", "digest", "plain"]


def test_unknown_names_are_an_error():
    with pytest.raises(AnsibleFilterError, match="not in stack_secret_specs: nope"):
        secret_specs(CATALOGUE, ["plain", "nope"])


def test_a_digest_of_an_unknown_source_is_an_error():
    with pytest.raises(AnsibleFilterError, match="derives from 'missing'"):
        secret_specs(CATALOGUE, ["orphan"])


def test_oidc_client_specs_derive_the_digest_from_the_plaintext():
    from ansible_collections.datamancy.stack.plugins.filter.secrets import oidc_client_secret_specs

    specs = oidc_client_secret_specs([{"secret_name": "oidc_a_client_secret", "digest_name": "oidc_a_digest"}])
    assert specs == [
        {"name": "oidc_a_client_secret", "kind": "password", "length": 64},
        {"name": "oidc_a_digest", "kind": "digest", "derive_from": "oidc_a_client_secret", "scheme": "pbkdf2_sha512"},
    ]
