# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The service registry and what is derived from it.

One description of the services (``stack_services``) drives Caddy's vhosts, Authelia's access rules and the audit.
These filters are the only place that derivation happens, so a UI added to the registry is protected by default:
a vhost without a ``policy`` gets ``sso``, and only an explicit ``public`` with a written reason skips SSO.
"""

from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError

from ansible_collections.datamancy.stack.plugins.plugin_utils.registry_schema import (
    BACKUP_KINDS,
    MODES,
    Invalid,
    flag,
    oidc_client_names,
    service_errors,
)

FORWARD_AUTH_POLICIES = ("sso", "sso_admins")

# What an API allowlist may admit without a written reason: private and local ranges. Not 172.16.0.0/12, where
# Docker's bridges live (172.17.0.0/16 upward by default): behind Docker's userland proxy every client arrives
# from a bridge gateway, so admitting that range admits everyone the proxy relays.
PRIVATE_RANGES = tuple(ipaddress.ip_network(cidr) for cidr in (
    "10.0.0.0/8", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "::1/128", "fc00::/7", "fe80::/10"))


def _allowlist_entries(value):
    if value is None:
        return []
    return value.split() if isinstance(value, str) else [str(entry) for entry in value]


def _flag(value, default):
    """A registry flag, read one way everywhere (plugin_utils/registry_schema.py: flag); the schema has refused
    anything else before this runs."""
    try:
        return flag(value, default)
    except Invalid as error:
        raise AnsibleFilterError(f"registry flag {value!r} {error}") from None


def _vhost_enabled(vhost):
    """A vhost can be switched by a role variable (``enabled: "{{ localai_api_vhost | default(false) }}"``), so
    the registry stays the one description of optional endpoints too."""
    return _flag(vhost.get("enabled"), True)


def _valid_cidr(entry):
    try:
        ipaddress.ip_network(entry, strict=True)
    except ValueError:
        return False
    return True


def allowlist_beyond_private(entries):
    """The (valid) allowlist entries not inside a private or local range (PRIVATE_RANGES)."""
    wide = []
    for entry in entries:
        try:
            network = ipaddress.ip_network(entry, strict=True)
        except ValueError:
            continue  # refused as an invalid CIDR by registry_errors
        if not any(network.version == private.version and network.subnet_of(private) for private in PRIVATE_RANGES):
            wide.append(entry)
    return wide


# Relaxations of the containers' hardening a service may declare, each only with a written reason (the audit
# fails on any it finds undeclared): the flag's value that relaxes, and its reason key.
RELAXATIONS = {
    "run_as_root": (True, "run_as_root_reason"),
    "docker_socket": (True, "docker_socket_reason"),
    "no_new_privileges": (False, "no_new_privileges_reason"),
}


def _relaxation_errors(where, service):
    errors = []
    if service.get("cap_add") and not service.get("cap_add_reason", "").strip():
        errors.append(f"{where}: cap_add needs a cap_add_reason saying why")
    for key, (relaxed, reason) in RELAXATIONS.items():
        if _flag(service.get(key), not relaxed) == relaxed and not service.get(reason, "").strip():
            errors.append(f"{where}: {key}: {str(relaxed).lower()} needs a {reason} saying why")
    return errors


def _secret_env_errors(where, service):
    """secret_env maps environment variables to secrets the service lists (so a rotation restarts it)."""
    listed = set(service.get("secrets", []))
    return [f"{where}: secret_env '{variable}' names '{secret}', which its secrets do not list"
            for variable, secret in service.get("secret_env", {}).items() if secret not in listed]


def _vhost_errors(vwhere, vhost, service):
    errors = []
    policy = vhost.get("policy", "sso")
    key = vhost.get("upstream_key")
    if key and policy not in FORWARD_AUTH_POLICIES:
        # On an api or public vhost the ingress would hand the key to every caller that reaches it.
        errors.append(f"{vwhere}: upstream_key needs a signed-in policy (sso or sso_admins), not '{policy}'")
    if key and key not in service.get("secrets", []):
        errors.append(f"{vwhere}: upstream_key '{key}' must be one of the service's secrets (so a rotation "
                      "restarts it)")
    if policy == "public" and not vhost.get("public_reason", "").strip():
        errors.append(f"{vwhere}: policy 'public' needs a public_reason saying why it may skip SSO")
    entries = _allowlist_entries(vhost.get("allowlist"))
    if policy == "api":
        if not entries:
            errors.append(f"{vwhere}: policy 'api' needs an allowlist of CIDRs")
        bad = [entry for entry in entries if not _valid_cidr(entry)]
        if bad:
            errors.append(f"{vwhere}: invalid CIDR(s) in allowlist: {', '.join(bad)}")
        wide = allowlist_beyond_private(entries)
        if wide and not vhost.get("allowlist_reason", "").strip():
            errors.append(f"{vwhere}: the allowlist admits addresses outside the private and local ranges "
                          f"({', '.join(wide)}; 172.16.0.0/12 holds Docker's own bridges): narrow it, or say why "
                          "in allowlist_reason (stack_api_allowlist_reason), which the audit reports")
    elif entries:
        errors.append(f"{vwhere}: allowlist applies to policy 'api' only (this vhost's policy is '{policy}')")
    elif vhost.get("allowlist_reason"):
        errors.append(f"{vwhere}: allowlist_reason applies to policy 'api' only (this vhost's policy is '{policy}')")
    return errors


def registry_errors(services, ingress="caddy"):
    """Every rule the registry must satisfy, as a list of human-readable errors (empty when valid): first its
    schema (plugin_utils/registry_schema.py), then the rules between keys and between services."""
    if not isinstance(services, dict) or not services:
        return ["stack_services must be a non-empty mapping of service name to description"]
    errors = []
    for name, service in services.items():
        errors.extend(service_errors(name, service))
    if errors:
        # The rules below read the values the schema checks; they would only repeat its errors.
        return errors
    ingress_networks = set(services.get(ingress, {}).get("networks", []))
    if not ingress_networks:
        errors.append(f"the ingress service '{ingress}' must be in the registry with its networks")
    seen_hosts = {}
    for name, service in services.items():
        where = f"service '{name}'"
        errors.extend(_relaxation_errors(where, service))
        errors.extend(_secret_env_errors(where, service))
        for dependency in service.get("depends_on", []):
            if dependency == name or dependency not in services:
                errors.append(f"{where}: depends_on names '{dependency}', which is not another service of the "
                              "registry")
        vhosts = service.get("vhosts", [])
        if vhosts and not set(service.get("networks", [])) & ingress_networks and name != ingress:
            errors.append(
                f"{where}: has vhosts but shares no network with '{ingress}' "
                f"({', '.join(sorted(ingress_networks))}), so the ingress could not reach it"
            )
        if service.get("oidc") and not (service["oidc"].get("host") or vhosts):
            errors.append(f"{where}: oidc needs a vhost (or oidc.host) for its redirect URI")
        for vhost in (v for v in vhosts if _vhost_enabled(v)):
            host = vhost["host"]
            vwhere = f"{where} vhost '{host}'"
            if host in seen_hosts:
                errors.append(f"{vwhere}: host already used by service '{seen_hosts[host]}'")
            else:
                seen_hosts[host] = name
            errors.extend(_vhost_errors(vwhere, vhost, service))
    return errors


def registry_active(services, mode):
    """The enabled services that run in ``mode``: bootstrap services run in both modes, full ones only in full."""
    if mode not in MODES:
        raise AnsibleFilterError(f"stack mode must be one of {', '.join(MODES)}, got '{mode}'")
    active = {}
    for name, service in services.items():
        if not _flag(service.get("enabled"), True):
            continue
        if mode == "full" or service.get("mode", "full") == "bootstrap":
            active[name] = service
    return active


def _upstream_key_env(secret):
    return f"DATAMANCY_UPSTREAM_KEY_{secret.upper().replace('-', '_')}" if secret else ""


def registry_upstream_keys(vhosts):
    """Environment variable -> secret for the ingress: the upstream keys of the ``vhosts`` (``registry_vhosts``)."""
    return {vhost["upstream_key_env"]: vhost["upstream_key"] for vhost in vhosts if vhost.get("upstream_key")}


def registry_vhosts(services, domain):
    """One entry per vhost with its FQDN and effective policy, sorted by FQDN for stable output."""
    vhosts = []
    for name, service in services.items():
        for vhost in service.get("vhosts", []):
            if not _vhost_enabled(vhost):
                continue
            policy = vhost.get("policy", "sso")
            vhosts.append(
                {
                    "service": name,
                    "host": vhost["host"],
                    "fqdn": f"{vhost['host']}.{domain}",
                    "upstream": vhost["upstream"],
                    "policy": policy,
                    "forward_auth": policy in FORWARD_AUTH_POLICIES,
                    "allowlist": _allowlist_entries(vhost.get("allowlist")),
                    "allowlist_reason": vhost.get("allowlist_reason", ""),
                    "allowlist_wide": allowlist_beyond_private(_allowlist_entries(vhost.get("allowlist"))),
                    "mtls": _flag(vhost.get("mtls"), False),
                    "public_reason": vhost.get("public_reason", ""),
                    "audit_path": vhost.get("audit_path", "/"),
                    # The ingress sends this secret as the upstream's bearer key (Caddy reads it from this
                    # environment variable of its own process; the value never enters the Caddyfile).
                    "upstream_key": vhost.get("upstream_key", ""),
                    "upstream_key_env": _upstream_key_env(vhost.get("upstream_key", "")),
                }
            )
    return sorted(vhosts, key=lambda item: item["fqdn"])


def registry_networks(services, service, prefix="", vhosts=None, ingress="caddy"):
    """The docker networks of ``service`` as community.docker expects them: the service's name is its DNS alias on
    each, so upstreams stay ``<service>:<port>`` whatever prefix the network names carry.

    The ingress also answers to every vhost FQDN (``vhosts`` as from ``registry_vhosts``) inside the networks, so a
    container that must call a vhost (an OIDC client fetching ``auth.<domain>``) reaches Caddy under the same name
    and certificate as a browser, without public DNS or hairpin NAT."""
    try:
        networks = services[service]["networks"]
    except KeyError:
        raise AnsibleFilterError(f"service '{service}' is not in the registry (or has no networks)") from None
    aliases = [service]
    if service == ingress:
        aliases += sorted({vhost["fqdn"] for vhost in vhosts or []})
    return [{"name": f"{prefix}{network}", "aliases": aliases} for network in networks]


def registry_neighbours(services, service, ingress="caddy"):
    """The services of ``services`` (pass the active ones) other than the ingress that share a network with
    ``service``: who can reach it without passing Caddy. A service that trusts identity headers must have none."""
    networks = set(services.get(service, {}).get("networks", []))
    return sorted(name for name, entry in services.items()
                  if name not in (service, ingress) and networks & set(entry.get("networks", [])))


def registry_oidc_clients(services, domain, two_factor_groups=()):
    """Authelia OIDC clients declared by services (an ``oidc`` mapping with ``client_id`` and ``redirect_path``).

    Each client's plaintext secret and its digest are secret-store entries named after the client, so the hash
    Authelia stores is always derived from the plaintext the application gets.

    Members of a client's ``two_factor_groups`` (the groups that grant the application's admin role) and of
    ``two_factor_groups`` given here (every client's: the platform's administrators) sign in to it with two
    factors, the others with its ``authorization_policy``: such a client gets an Authelia authorization policy of
    its own (``policy_name`` and ``policy``, for identity_providers.oidc.authorization_policies).
    """
    clients = []
    for name, service in services.items():
        oidc = service.get("oidc")
        if not oidc:
            continue
        names = oidc_client_names(name, oidc)
        client_id, safe = names["client_id"], names["safe"]
        host = oidc.get("host") or service.get("vhosts", [{}])[0].get("host")
        if not host or not oidc.get("redirect_path"):
            raise AnsibleFilterError(f"service '{name}': oidc needs redirect_path and a vhost (or oidc.host)")
        base_policy = oidc.get("authorization_policy", "one_factor")
        elevated = sorted(set(oidc.get("two_factor_groups", [])) | set(two_factor_groups))
        own_policy = base_policy == "one_factor" and bool(elevated)
        clients.append(
            {
                "service": name,
                "client_id": client_id,
                "client_name": oidc.get("client_name", name),
                "redirect_uris": [f"https://{host}.{domain}{oidc['redirect_path']}"],
                "scopes": oidc.get("scopes", ["openid", "profile", "email", "groups"]),
                "authorization_policy": f"{safe}_policy" if own_policy else base_policy,
                "policy_name": f"{safe}_policy" if own_policy else "",
                "policy": {"default_policy": "one_factor",
                           "rules": [{"policy": "two_factor", "subject": [f"group:{g}" for g in elevated]}]}
                if own_policy else {},
                "two_factor_groups": elevated if base_policy == "one_factor" else [],
                "secret_name": names["secret_name"],
                "digest_name": names["digest_name"],
            }
        )
    return sorted(clients, key=lambda client: client["client_id"])


def authelia_access_rules(vhosts, admin_group="admins", user_groups=("admins", "users"), admins_two_factor=True):
    """Authelia access_control rules for the forward-auth vhosts; anything not matched falls to default deny.

    Authelia takes the first matching rule, so the admin rule comes first: with ``admins_two_factor`` an admin
    always needs TOTP, even on a vhost that lets ordinary users in with one factor.
    """
    protected = [v["fqdn"] for v in vhosts if v["forward_auth"]]
    for_users = [v["fqdn"] for v in vhosts if v["policy"] == "sso"]
    rules = []
    if protected:
        rules.append(
            {
                "domain": protected,
                "subject": [f"group:{admin_group}"],
                "policy": "two_factor" if admins_two_factor else "one_factor",
            }
        )
    other_groups = [g for g in user_groups if g != admin_group]
    if for_users and other_groups:
        rules.append(
            {"domain": for_users, "subject": [f"group:{g}" for g in other_groups], "policy": "one_factor"}
        )
    return rules


def registry_backup_volumes(services, volume_prefix="", base_dir=""):
    """The volumes the backup copies (``backup: true``) of ``services`` (pass the active ones), with how.

    ``source`` is the docker volume (``<volume_prefix><name>``) or the bind directory
    (``<base_dir>/<service>/<name>``), ``path`` where the service mounts it; ``files`` says whether the backup
    reads the volume's files (kinds ``none`` and ``sqlite``) or goes through the service's interface (``ldif``,
    ``clickhouse``, ``qdrant``)."""
    volumes = []
    for service, spec in services.items():
        for volume in spec.get("volumes", []):
            if not _flag(volume.get("backup"), False):
                continue
            kind = volume.get("consistency", "none")
            if kind not in BACKUP_KINDS:
                raise AnsibleFilterError(
                    f"service '{service}' volume '{volume.get('name')}': consistency must be one of "
                    f"{', '.join(BACKUP_KINDS)}, got '{kind}'")
            bind = volume.get("type", "volume") == "bind"
            volumes.append({
                "service": service,
                "name": volume["name"],
                "kind": kind,
                "type": "bind" if bind else "volume",
                "source": f"{base_dir}/{service}/{volume['name']}" if bind else f"{volume_prefix}{volume['name']}",
                "path": volume.get("path", ""),
                "files": kind in ("none", "sqlite"),
            })
    return volumes


def registry_backup_mounts(volumes, root="/src", read_only=True):
    """Docker mounts of ``registry_backup_volumes`` entries at ``<root>/<service>/<name>`` (an empty ``root``: at
    the path the service itself mounts them)."""
    return [{"type": v["type"], "source": v["source"],
             "target": f"{root}/{v['service']}/{v['name']}" if root else v["path"], "read_only": read_only}
            for v in volumes]


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self):
        return {
            "registry_errors": registry_errors,
            "registry_active": registry_active,
            "registry_vhosts": registry_vhosts,
            "registry_upstream_keys": registry_upstream_keys,
            "registry_networks": registry_networks,
            "registry_neighbours": registry_neighbours,
            "registry_oidc_clients": registry_oidc_clients,
            "authelia_access_rules": authelia_access_rules,
            "registry_backup_volumes": registry_backup_volumes,
            "registry_backup_mounts": registry_backup_mounts,
        }
