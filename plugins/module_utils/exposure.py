# -*- coding: utf-8 -*-
# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Search what Docker keeps of a container (what `docker inspect` shows) for secret values, reporting names only.

Used by the secret_exposure module (the audit) on the managed host; the values never leave it.
"""

from __future__ import annotations

import json
import os

from ansible_collections.datamancy.stack.plugins.module_utils.secret_store import META_SUFFIX, PUB_SUFFIX

# Lines of a multi-line value (PEM) searched on their own: long enough never to match by chance.
LINE_MIN_LENGTH = 16
# Public material kept in the store beside the secrets.
PUBLIC_SUFFIXES = (META_SUFFIX, PUB_SUFFIX, "_jwks")


def _forms(text, min_length):
    """The value as stored, its single-line form and, for a multi-line value, each long line."""
    value = text.strip()
    forms = set()
    if len(value) >= min_length:
        forms.add(value)
    if "\n" in value:
        forms.add(value.replace("\n", "\\n"))
        forms.update(line.strip() for line in value.splitlines() if len(line.strip()) >= LINE_MIN_LENGTH)
    return forms


def store_values(store, min_length=8):
    """secret name -> set of strings to search for, for every secret in the store."""
    values = {}
    for name in sorted(os.listdir(store)):
        path = os.path.join(store, name)
        if name.startswith(".") or name.endswith(PUBLIC_SUFFIXES) or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        forms = _forms(text, min_length)
        try:
            ring = json.loads(text)
        except ValueError:
            ring = None
        if isinstance(ring, dict) and isinstance(ring.get("keys"), list):
            for key in ring["keys"]:
                if isinstance(key, dict) and isinstance(key.get("key"), str):
                    forms.update(_forms(key["key"], min_length))
        if forms:
            values[name] = forms
    return values


def env_file_values(path, min_length=8):
    """'<file name>:<KEY>' -> strings to search for, for every KEY=VALUE line of an env file (missing: none)."""
    values = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return values
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#") or "=" not in line:
            continue
        key, _sep, value = line.partition("=")
        forms = _forms(value, min_length)
        if forms:
            values["%s:%s" % (os.path.basename(path), key.strip())] = forms
    return values


def configuration_fields(container):
    """(field, text) pairs of a container's inspect data that anyone with read access to the engine sees."""
    config = container.get("Config") or {}
    host = container.get("HostConfig") or {}
    fields = []
    for entry in config.get("Env") or []:
        name, _sep, value = str(entry).partition("=")
        fields.append(("Config.Env " + name, value))
    for key in ("Cmd", "Entrypoint"):
        value = config.get(key)
        if value:
            fields.append(("Config." + key, " ".join(value) if isinstance(value, list) else str(value)))
    for name, value in sorted((config.get("Labels") or {}).items()):
        fields.append(("Config.Labels " + name, "%s=%s" % (name, value)))
    health = (config.get("Healthcheck") or {}).get("Test")
    if health:
        fields.append(("Config.Healthcheck", " ".join(health)))
    for key in ("WorkingDir", "User", "Hostname", "Domainname"):
        if config.get(key):
            fields.append(("Config." + key, str(config[key])))
    for mount in container.get("Mounts") or []:
        fields.append(("Mounts Source", str(mount.get("Source", ""))))
    for bind in host.get("Binds") or []:
        fields.append(("HostConfig.Binds", str(bind)))
    for key in ("ExtraHosts", "Dns", "SecurityOpt"):
        for item in host.get(key) or []:
            fields.append(("HostConfig." + key, str(item)))
    return fields


def find_exposures(container_name, fields, values):
    """Findings {container, field, secret} for every secret whose value appears in one of ``fields``."""
    findings = []
    for field, text in fields:
        for secret, forms in sorted(values.items()):
            if any(form in text for form in forms):
                findings.append({"container": container_name, "field": field, "secret": secret})
    return findings
