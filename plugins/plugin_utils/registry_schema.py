# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The service registry's schema: every key a description may carry and what its value must be.

A key the schema does not know is refused with the nearest known one (``backups: true`` on a volume would otherwise
mean "not backed up" in silence). Every string is matched whole (never ``^...$``, which lets a trailing newline
through) and free text may hold no control character, so nothing in the registry can add lines to the
configuration generated from it.
"""

from __future__ import annotations

import difflib
import re

MODES = ("bootstrap", "full")
POLICIES = ("sso", "sso_admins", "api", "public")
KNOWN_NETWORKS = ("frontend", "backend", "database", "tools", "egress")
BACKUP_KINDS = ("none", "sqlite", "ldif", "clickhouse", "qdrant")
VOLUME_TYPES = ("volume", "bind")
OIDC_POLICIES = ("one_factor", "two_factor")

# Flags may arrive as templated strings ("{{ localai_api_vhost | default(false) }}" renders "False").
TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0", "")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SERVICE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
HOST_LABELS = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9-]{1,63}(?<!-))*")
UPSTREAM = re.compile(r"[a-z0-9][a-z0-9_.-]*:[0-9]{1,5}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The secret store's own rule for names (plugins/module_utils/generators.py NAME_RE).
GROUP_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
SECRET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
VARIABLE_NAME = re.compile(r"[a-z_][a-z0-9_]*")
ROLE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_][A-Za-z0-9_-]*){0,2}")
CAPABILITY = re.compile(r"[A-Z][A-Z_]*")
VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
SCOPE = re.compile(r"[A-Za-z0-9_.:-]+")
_ALLOWLIST_TEXT = re.compile(r"[0-9A-Fa-f.:/ \t\n]*")
# An absolute path or URL path: printable ASCII without spaces.
PATH = re.compile(r"/[!-~]*")


class Invalid(ValueError):
    """A value the schema refuses; the message says what it must be (``names_value``: and shows the culprit)."""

    def __init__(self, message, names_value=False):
        super().__init__(message)
        self.names_value = names_value


def flag(value, default):
    """The one reading of a registry flag: a bool, 0/1, or one of TRUE_WORDS / FALSE_WORDS in any case."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise Invalid("must be true or false")


def _flag(value):
    flag(value, False)


def _text(value):
    if not isinstance(value, str):
        raise Invalid("must be text")
    if _CONTROL.search(value):
        raise Invalid("must be one line of text without control characters")


def _matching(pattern, what):
    def check(value):
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise Invalid(f"must be {what}")
    return check


def _one_of(options):
    def check(value):
        if value not in options:
            raise Invalid(f"must be one of {', '.join(options)}")
    return check


def _list_of(item, what):
    def check(value):
        if not isinstance(value, list):
            raise Invalid(f"must be a list of {what}")
        for entry in value:
            try:
                item(entry)
            except Invalid as error:
                raise Invalid(f"entry {_shown(entry)} {error}", names_value=True) from None
    return check


def _allowlist(value):
    """Space-separated CIDRs (what a templated variable renders) or a list of them; the registry's rules check
    each entry as a network."""
    entries = value if isinstance(value, list) else [value]
    if not all(isinstance(entry, str) and _ALLOWLIST_TEXT.fullmatch(entry) for entry in entries):
        raise Invalid("must be CIDRs, space-separated or a list")


def _secret_env(value):
    if not isinstance(value, dict):
        raise Invalid("must map environment variable names to secret names")
    for variable, secret in value.items():
        if not isinstance(variable, str) or not ENV_NAME.fullmatch(variable):
            raise Invalid(f"{_shown(variable)} is not an environment variable name", names_value=True)
        if not isinstance(secret, str) or not SECRET_NAME.fullmatch(secret):
            raise Invalid(f"{variable}: {_shown(secret)} is not a secret name", names_value=True)


_SECRET = _matching(SECRET_NAME, "a secret name (letters, digits, '_' and '-')")
_REASON = _text

VHOST_KEYS = {
    "host": _matching(HOST_LABELS, "DNS label(s) relative to the domain, e.g. 'open-webui'"),
    "upstream": _matching(UPSTREAM, "'<container>:<port>'"),
    "policy": _one_of(POLICIES),
    "public_reason": _REASON,
    "allowlist": _allowlist,
    "allowlist_reason": _REASON,
    "mtls": _flag,
    "enabled": _flag,
    "audit_path": _matching(PATH, "a path starting with '/', printable characters and no spaces"),
    "upstream_key": _SECRET,
}
VOLUME_KEYS = {
    "name": _matching(VOLUME_NAME, "a volume name (letters, digits, '_', '.', '-')"),
    "path": _matching(PATH, "an absolute path in the container"),
    "type": _one_of(VOLUME_TYPES),
    "backup": _flag,
    "consistency": _one_of(BACKUP_KINDS),
}
OIDC_KEYS = {
    "client_id": _matching(CLIENT_ID, "a client id (letters, digits, '.', '_', '-')"),
    "client_name": _text,
    "redirect_path": _matching(PATH, "a path starting with '/'"),
    "host": _matching(HOST_LABELS, "DNS label(s) relative to the domain"),
    "scopes": _list_of(_matching(SCOPE, "a scope name"), "scope names"),
    "authorization_policy": _one_of(OIDC_POLICIES),
    "two_factor_groups": _list_of(_matching(GROUP_NAME, "an LDAP group name"), "LDAP group names"),
}


class _Entries:
    """A nested mapping (``oidc``) or list of them (``vhosts``, ``volumes``), each entry checked against its own
    keys and named in errors by its ``label`` key."""

    def __init__(self, keys, what, required, label=None):
        self.keys, self.what, self.required, self.label = keys, what, required, label

    def errors(self, value, where):
        if self.label is None:
            return mapping_errors(value, self.keys, f"{where} {self.what}", self.required)
        if not isinstance(value, list):
            return [f"{where}: {self.what}s must be a list"]
        errors = []
        for index, entry in enumerate(value, start=1):
            name = entry.get(self.label) if isinstance(entry, dict) else None
            shown = _shown(name) if name is not None else f"#{index}"
            errors.extend(mapping_errors(entry, self.keys, f"{where} {self.what} {shown}", self.required))
        return errors


SERVICE_KEYS = {
    "mode": _one_of(MODES),
    "enabled": _flag,
    "networks": _list_of(_one_of(KNOWN_NETWORKS), "networks"),
    "vhosts": _Entries(VHOST_KEYS, "vhost", ("host", "upstream"), label="host"),
    "volumes": _Entries(VOLUME_KEYS, "volume", ("name",), label="name"),
    "oidc": _Entries(OIDC_KEYS, "oidc", ("redirect_path",)),
    "secrets": _list_of(_SECRET, "secret names"),
    "secret_env": _secret_env,
    "depends_on": _list_of(_matching(SERVICE_NAME, "a service name"), "service names"),
    "image_var": _matching(VARIABLE_NAME, "a variable name"),
    "role": _matching(ROLE_NAME, "a role name (optionally namespace.collection.role)"),
    "cap_add": _list_of(_matching(CAPABILITY, "a capability name like NET_BIND_SERVICE"), "capability names"),
    "cap_add_reason": _REASON,
    "run_as_root": _flag,
    "run_as_root_reason": _REASON,
    "docker_socket": _flag,
    "docker_socket_reason": _REASON,
    "no_new_privileges": _flag,
    "no_new_privileges_reason": _REASON,
}


def _shown(value):
    """A value as an error shows it: repr, so a newline reads as \\n, and cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown_key(key, keys, where):
    message = f"{where}: unknown key {_shown(key)}"
    close = difflib.get_close_matches(str(key), list(keys), n=1, cutoff=0.6)
    if close:
        return f"{message} (did you mean '{close[0]}'?)"
    return f"{message} (known: {', '.join(sorted(keys))})"


def _switched_off(value):
    try:
        return not flag(value.get("enabled"), True)
    except Invalid:
        return False


def mapping_errors(value, keys, where, required=()):
    """Errors of one mapping against ``keys`` (name -> check); nested entries report their own.

    Of an entry switched off (``enabled: false``, e.g. an optional vhost whose settings a role variable leaves
    unset) only the keys are checked: its values reach nothing."""
    if not isinstance(value, dict):
        return [f"{where}: must be a mapping"]
    off = "enabled" in keys and keys is not SERVICE_KEYS and _switched_off(value)
    errors = [] if off else [f"{where}: needs {key}" for key in required if key not in value]
    for key, entry in value.items():
        check = keys.get(key)
        if check is None:
            errors.append(_unknown_key(key, keys, where))
        elif off:
            continue
        elif isinstance(check, _Entries):
            errors.extend(check.errors(entry, where))
        else:
            try:
                check(entry)
            except Invalid as error:
                got = "" if error.names_value else f" (got {_shown(entry)})"
                errors.append(f"{where}: {key} {error}{got}")
    return errors


def service_errors(name, service):
    """Every schema error of one registry entry, each naming the service, the key and the value."""
    if not isinstance(name, str) or not SERVICE_NAME.fullmatch(name):
        return [f"service {_shown(name)}: a service name is lower-case letters, digits and inner '-' (it is the "
                f"container's DNS alias)"]
    return mapping_errors(service, SERVICE_KEYS, f"service '{name}'")


def oidc_client_names(service_name, oidc):
    """A service's OIDC client id and the store entries of its secret and of the digest Authelia keeps, named after
    the client: the one place these names are made (Authelia's role, Open WebUI's and rotation all use them)."""
    client_id = oidc.get("client_id", service_name)
    safe = "".join(char if char.isalnum() or char == "_" else "_" for char in client_id)
    return {"client_id": client_id, "safe": safe, "secret_name": f"oidc_{safe}_client_secret",
            "digest_name": f"oidc_{safe}_client_secret_digest"}
