# -*- coding: utf-8 -*-
# Copyright: (c) 2026, Datamancy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn the container definitions the roles handed to roles/stack/tasks/container.yml into a Compose file
(playbooks/export_compose.yml): the same images, users, mounts, networks and hardening, secrets by file path."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.datamancy.stack.plugins.filter.registry import registry_networks

DEFAULT_TMPFS = ["/tmp:rw,noexec,nosuid,size=64m"]


def _bool(value, default):
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _strings(value):
    """Compose wants argv lists of strings; YAML may have given numbers."""
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value]
    return str(value)


def _literal(value):
    """Compose interpolates $VAR in every string; the roles' values are literal (a health check's shell $(...))."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [_literal(item) for item in value]
    if isinstance(value, dict):
        return {key: _literal(item) for key, item in value.items()}
    return value


def _volume(mount, named):
    entry = {"type": mount.get("type", "volume"), "source": mount["source"], "target": mount["target"]}
    if _bool(mount.get("read_only"), False):
        entry["read_only"] = True
    if entry["type"] == "volume":
        named.add(mount["source"])
    return entry


def _service(name, spec, services, network_keys, args):
    registry = services.get(name, {})
    attached = registry_networks(services, name, args["network_prefix"], args["vhosts"])
    entry = {
        "container_name": f"{args['container_prefix']}{name}",
        "image": spec["image"],
        "restart": args["restart_policy"],
        "read_only": _bool(spec.get("read_only"), True),
        "cap_drop": ["ALL"],
        "tmpfs": list(spec.get("tmpfs") or DEFAULT_TMPFS),
        "networks": {network_keys[net["name"]]: {"aliases": list(net.get("aliases", []))} for net in attached},
        "labels": {"datamancy.stack.service": name, "datamancy.stack.mode": registry.get("mode", "full")},
    }
    capabilities = spec.get("capabilities") or registry.get("cap_add") or []
    if capabilities:
        entry["cap_add"] = list(capabilities)
    if _bool(spec.get("no_new_privileges", registry.get("no_new_privileges")), True):
        entry["security_opt"] = ["no-new-privileges:true"]
    for key, compose_key in (("user", "user"), ("command", "command"), ("entrypoint", "entrypoint")):
        if spec.get(key) not in (None, "", []):
            entry[compose_key] = _strings(spec[key])
    if spec.get("env"):
        entry["environment"] = {str(k): str(v) for k, v in spec["env"].items()}
    if spec.get("env_file"):
        entry["env_file"] = [spec["env_file"]]
    if spec.get("published_ports"):
        entry["ports"] = [str(port) for port in spec["published_ports"]]
    if spec.get("sysctls"):
        entry["sysctls"] = {str(k): str(v) for k, v in spec["sysctls"].items()}
    if spec.get("healthcheck"):
        entry["healthcheck"] = dict(spec["healthcheck"])
    return entry, attached


def compose_export(specs, services, networks, container_prefix="", network_prefix="", vhosts=None,
                   restart_policy="unless-stopped"):
    """The Compose document (services, networks, volumes) for ``specs``: service name -> the ``stack_container``
    dict its role handed to roles/stack/tasks/container.yml (recorded with ``stack_compose_export=true``).
    ``networks`` is ``docker_host_networks``; the prefixes, ``vhosts`` and restart policy are the stack's."""
    if not isinstance(specs, dict) or not specs:
        raise AnsibleFilterError("compose_export needs the recorded container definitions (converge with "
                                 "stack_compose_export=true first)")
    args = {"container_prefix": container_prefix, "network_prefix": network_prefix, "vhosts": vhosts or [],
            "restart_policy": restart_policy}
    network_keys = {f"{network_prefix}{net['name']}": net["name"] for net in networks}
    named_volumes = set()
    document = {"services": {}, "networks": {}, "volumes": {}}
    used_networks = set()
    for name in sorted(specs):
        spec = specs[name]
        unknown = [net["name"] for net in registry_networks(services, name, network_prefix, vhosts or [])
                   if net["name"] not in network_keys]
        if unknown:
            raise AnsibleFilterError(f"service {name} is on networks docker_host does not create: {unknown}")
        entry, attached = _service(name, spec, services, network_keys, args)
        entry["volumes"] = [_volume(mount, named_volumes) for mount in spec.get("mounts") or []]
        if not entry["volumes"]:
            del entry["volumes"]
        depends = [dep for dep in services.get(name, {}).get("depends_on", []) if dep in specs]
        if depends:
            entry["depends_on"] = sorted(depends)
        used_networks.update(network_keys[net["name"]] for net in attached)
        document["services"][name] = _literal(entry)
    for net in networks:
        if net["name"] in used_networks:
            document["networks"][net["name"]] = {"name": f"{network_prefix}{net['name']}",
                                                 "internal": _bool(net.get("internal"), False)}
    # Named volumes keep their real names, so Compose and the roles use the same data.
    document["volumes"] = {volume: {"name": volume} for volume in sorted(named_volumes)}
    if not document["volumes"]:
        del document["volumes"]
    return document


class FilterModule:
    def filters(self):
        return {"compose_export": compose_export}
