# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Day-2 derivations from the service registry: the order services are updated or restarted in, the role that
converges each service, and the services a set of secrets reaches (playbooks/update.yml, rotate_secrets.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.datamancy.stack.plugins.plugin_utils.registry_schema import oidc_client_names


def registry_role(services, service):
    """The role converging ``service``: its entry's ``role``, else the name with '-' as '_' (open-webui)."""
    try:
        entry = services[service]
    except KeyError:
        raise AnsibleFilterError(f"service '{service}' is not in the registry") from None
    return entry.get("role") or service.replace("-", "_")


def registry_order(services, only=None):
    """Service names with every ``depends_on`` entry before its dependants; registry order among equals.

    ``services`` is normally stack_active_services: a dependency that is not in it (a full-mode service while in
    bootstrap mode) places nothing. ``only`` keeps just those names, still in dependency order."""
    order, state = [], {}

    def visit(name, path):
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise AnsibleFilterError(f"registry depends_on has a cycle: {' -> '.join(path + [name])}")
        state[name] = "visiting"
        for dependency in services[name].get("depends_on", []):
            if dependency in services:
                visit(dependency, path + [name])
        state[name] = "done"
        order.append(name)

    for name in services:
        visit(name, [])
    if only is not None:
        unknown = sorted(set(only) - set(services))
        if unknown:
            raise AnsibleFilterError(f"not active services of this stack: {', '.join(unknown)}")
        order = [name for name in order if name in only]
    return order


def registry_secret_consumers(services, names, catalogue=None, ingress="caddy", oidc_provider="authelia"):
    """Services (dependency order) whose registry ``secrets`` name one of ``names``, the ingress when one is a
    vhost's ``upstream_key`` and the OIDC provider when one is a client's secret (or its digest). A digest in
    ``names`` reaches the consumers of the secret it derives from (``catalogue``: stack_secrets), since entries
    list plaintexts."""
    touched = set(names)
    for name in names:
        source = (catalogue or {}).get(name, {}).get("derive_from")
        if source:
            touched.add(source)
    consumers = {name for name, service in services.items() if touched & set(service.get("secrets", []))}
    # The ingress sends upstream keys (a vhost's upstream_key) itself, so it reads them too.
    if ingress in services and any(touched & {vhost.get("upstream_key")} for service in services.values()
                                   for vhost in service.get("vhosts", [])):
        consumers.add(ingress)
    # The provider checks each client's secret against the digest it keeps of it.
    clients = [oidc_client_names(name, service["oidc"]) for name, service in services.items() if service.get("oidc")]
    if oidc_provider in services and any(touched & {c["secret_name"], c["digest_name"]} for c in clients):
        consumers.add(oidc_provider)
    return [name for name in registry_order(services) if name in consumers]


def _image(ref, image_id):
    if not ref and not image_id:
        return "(no container)"
    short = (image_id or "").replace("sha256:", "")[:12]
    return f"{ref} ({short})" if short else str(ref)


def update_summary_line(result):
    """One line of playbooks/update.yml's text report for a service's result."""
    line = (f"{result['service']}: {result['result']}; {_image(result.get('old_image'), result.get('old_image_id'))}"
            f" -> {_image(result.get('new_image'), result.get('new_image_id'))}")
    if result.get("attempted_image"):
        line += f"; tried {_image(result['attempted_image'], result.get('attempted_image_id'))}"
    if result.get("error"):
        line += f"; {result['error']}"
    return line


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self):
        return {
            "registry_role": registry_role,
            "registry_order": registry_order,
            "registry_secret_consumers": registry_secret_consumers,
            "update_summary_line": update_summary_line,
        }
