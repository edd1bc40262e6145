# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Select secret specifications from the stack's catalogue (stack_secrets) for datamancy.stack.secret."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def secret_specs(catalogue, names):
    """The specs for ``names`` as a list for the secret module, sources of derived secrets included first."""
    unknown = sorted(set(names) - set(catalogue))
    if unknown:
        raise AnsibleFilterError(f"secret(s) not in stack_secret_specs: {', '.join(unknown)}")
    ordered = []

    def add(name):
        spec = catalogue[name]
        source = spec.get("derive_from")
        if source:
            if source not in catalogue:
                raise AnsibleFilterError(f"secret '{name}' derives from '{source}', which is not in the catalogue")
            add(source)
        if name not in ordered:
            ordered.append(name)

    for name in names:
        add(name)
    return [dict(catalogue[name], name=name) for name in ordered]


def oidc_client_secret_specs(clients, length=64):
    """For each OIDC client: the plaintext the application gets and the pbkdf2-sha512 digest Authelia stores,
    derived from it so the two can never disagree."""
    specs = []
    for client in clients:
        specs.append({"name": client["secret_name"], "kind": "password", "length": length})
        specs.append(
            {"name": client["digest_name"], "kind": "digest", "derive_from": client["secret_name"],
             "scheme": "pbkdf2_sha512"}
        )
    return specs


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self):
        return {"secret_specs": secret_specs, "oidc_client_secret_specs": oidc_client_secret_specs}
