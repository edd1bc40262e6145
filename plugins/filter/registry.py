# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The service registry and what is derived from it.

One description of the services (``stack_services``) drives Caddy's vhosts, Authelia's access rules and the audit.
These filters are the only place that derivation happens, so a UI added to the registry is protected by default:
a vhost without a ``policy`` gets ``sso``, and only an explicit ``public`` with a written reason skips SSO.
"""

from __future__ import annotations

import ipaddress
import re

from ansible.errors import AnsibleFilterError

MODES = ("bootstrap", "full")
POLICIES = ("sso", "sso_admins", "api", "public")
FORWARD_AUTH_POLICIES = ("sso", "sso_admins")
KNOWN_NETWORKS = ("frontend", "backend", "database")
_UPSTREAM = re.compile(r"^[a-z0-9][a-z0-9_.-]*:[0-9]{1,5}$")
_HOST_LABELS = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _allowlist_entries(value):
    if value is None:
        return []
    return value.split() if isinstance(value, str) else [str(entry) for entry in value]


def _flag(value, default):
    """A registry flag that may arrive as a templated string ("False", "no", "0") as well as a bool."""
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "no", "off", "0")
    return bool(value)


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


# Relaxations of the containers' hardening a service may declare, each only with a written reason (the audit
# fails on any it finds undeclared): the flag's value that relaxes, and its reason key.
RELAXATIONS = {
    "run_as_root": (True, "run_as_root_reason"),
    "docker_socket": (True, "docker_socket_reason"),
    "no_new_privileges": (False, "no_new_privileges_reason"),
}


def _relaxation_errors(where, service):
    errors = []
    cap_add = service.get("cap_add") or []
    if not isinstance(cap_add, list) or not all(re.match(r"^[A-Z_]+$", str(cap)) for cap in cap_add):
        errors.append(f"{where}: cap_add must be a list of capability names like NET_BIND_SERVICE")
    elif cap_add and not str(service.get("cap_add_reason", "")).strip():
        errors.append(f"{where}: cap_add needs a cap_add_reason saying why")
    for key, (relaxed, reason) in RELAXATIONS.items():
        if key in service and _flag(service[key], not relaxed) == relaxed and not str(service.get(reason, "")).strip():
            errors.append(f"{where}: {key}: {str(relaxed).lower()} needs a {reason} saying why")
    return errors


def _secret_env_errors(where, service):
    """secret_env maps environment variables to secrets the service lists (so a rotation restarts it)."""
    secret_env = service.get("secret_env", {})
    if not isinstance(secret_env, dict):
        return [f"{where}: secret_env must map environment variable names to secret names"]
    errors = []
    listed = set(service.get("secrets", []))
    for variable, secret in secret_env.items():
        if not _ENV_NAME.fullmatch(str(variable)):
            errors.append(f"{where}: secret_env variable '{variable}' is not an environment variable name")
        if secret not in listed:
            errors.append(f"{where}: secret_env '{variable}' names '{secret}', which its secrets do not list")
    return errors


def registry_errors(services, ingress="caddy"):
    """Every rule the registry must satisfy, as a list of human-readable errors (empty when valid)."""
    errors = []
    if not isinstance(services, dict) or not services:
        return ["stack_services must be a non-empty mapping of service name to description"]
    ingress_networks = set(services.get(ingress, {}).get("networks", []))
    if not ingress_networks:
        errors.append(f"the ingress service '{ingress}' must be in the registry with its networks")
    seen_hosts = {}
    for name, service in services.items():
        where = f"service '{name}'"
        if not isinstance(service, dict):
            errors.append(f"{where}: description must be a mapping")
            continue
        if service.get("mode", "full") not in MODES:
            errors.append(f"{where}: mode must be one of {', '.join(MODES)}, got '{service.get('mode')}'")
        networks = service.get("networks", [])
        unknown = sorted(set(networks) - set(KNOWN_NETWORKS))
        if unknown:
            errors.append(f"{where}: unknown network(s) {', '.join(unknown)}")
        errors.extend(_relaxation_errors(where, service))
        errors.extend(_secret_env_errors(where, service))
        vhosts = service.get("vhosts", [])
        if vhosts and not set(networks) & ingress_networks and name != ingress:
            errors.append(
                f"{where}: has vhosts but shares no network with '{ingress}' "
                f"({', '.join(sorted(ingress_networks))}), so the ingress could not reach it"
            )
        for vhost in (v for v in vhosts if _vhost_enabled(v)):
            host = str(vhost.get("host", ""))
            vwhere = f"{where} vhost '{host}'"
            if not _HOST_LABELS.match(host):
                errors.append(f"{vwhere}: host must be DNS label(s) relative to the domain, e.g. 'open-webui'")
            elif host in seen_hosts:
                errors.append(f"{vwhere}: host already used by service '{seen_hosts[host]}'")
            else:
                seen_hosts[host] = name
            if not _UPSTREAM.match(str(vhost.get("upstream", ""))):
                errors.append(f"{vwhere}: upstream must be '<container>:<port>', got '{vhost.get('upstream')}'")
            policy = vhost.get("policy", "sso")
            if policy not in POLICIES:
                errors.append(f"{vwhere}: policy must be one of {', '.join(POLICIES)}, got '{policy}'")
            if policy == "public" and not str(vhost.get("public_reason", "")).strip():
                errors.append(f"{vwhere}: policy 'public' needs a public_reason saying why it may skip SSO")
            if policy == "api":
                entries = _allowlist_entries(vhost.get("allowlist"))
                if not entries:
                    errors.append(f"{vwhere}: policy 'api' needs an allowlist of CIDRs")
                bad = [entry for entry in entries if not _valid_cidr(entry)]
                if bad:
                    errors.append(f"{vwhere}: invalid CIDR(s) in allowlist: {', '.join(bad)}")
    return errors


def registry_active(services, mode):
    """The enabled services that run in ``mode``: bootstrap services run in both modes, full ones only in full."""
    if mode not in MODES:
        raise AnsibleFilterError(f"stack mode must be one of {', '.join(MODES)}, got '{mode}'")
    active = {}
    for name, service in services.items():
        if not service.get("enabled", True):
            continue
        if mode == "full" or service.get("mode", "full") == "bootstrap":
            active[name] = service
    return active


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
                    "mtls": _flag(vhost.get("mtls"), False),
                    "public_reason": vhost.get("public_reason", ""),
                    "audit_path": vhost.get("audit_path", "/"),
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


def registry_oidc_clients(services, domain):
    """Authelia OIDC clients declared by services (an ``oidc`` mapping with ``client_id`` and ``redirect_path``).

    Each client's plaintext secret and its digest are secret-store entries named after the client, so the hash
    Authelia stores is always derived from the plaintext the application gets.
    """
    clients = []
    for name, service in services.items():
        oidc = service.get("oidc")
        if not oidc:
            continue
        client_id = oidc.get("client_id", name)
        host = oidc.get("host") or service.get("vhosts", [{}])[0].get("host")
        if not host or not oidc.get("redirect_path"):
            raise AnsibleFilterError(f"service '{name}': oidc needs redirect_path and a vhost (or oidc.host)")
        safe = re.sub(r"[^A-Za-z0-9_]", "_", client_id)
        clients.append(
            {
                "service": name,
                "client_id": client_id,
                "client_name": oidc.get("client_name", name),
                "redirect_uris": [f"https://{host}.{domain}{oidc['redirect_path']}"],
                "scopes": oidc.get("scopes", ["openid", "profile", "email", "groups"]),
                "authorization_policy": oidc.get("authorization_policy", "one_factor"),
                "secret_name": f"oidc_{safe}_client_secret",
                "digest_name": f"oidc_{safe}_client_secret_digest",
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


BACKUP_KINDS = ("none", "sqlite", "ldif", "clickhouse", "qdrant")


def registry_backup_volumes(services, volume_prefix="", base_dir=""):
    """The volumes the backup copies (``backup: true``) of ``services`` (pass the active ones), with how.

    ``source`` is the docker volume (``<volume_prefix><name>``) or the bind directory
    (``<base_dir>/<service>/<name>``), ``path`` where the service mounts it; ``files`` says whether the backup reads the volume's files (kinds ``none``
    and ``sqlite``) or goes through the service's interface (``ldif``, ``clickhouse``, ``qdrant``)."""
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
            "registry_networks": registry_networks,
            "registry_oidc_clients": registry_oidc_clients,
            "authelia_access_rules": authelia_access_rules,
            "registry_backup_volumes": registry_backup_volumes,
            "registry_backup_mounts": registry_backup_mounts,
        }
