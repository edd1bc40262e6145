# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja tests that validate user input before any change: CIDRs, allowlists and DNS domain names."""

from __future__ import annotations

import ipaddress
import re

# One DNS label: letters, digits and inner hyphens, at most 63 characters (RFC 1035 / RFC 1123).
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.IGNORECASE)


def cidr(value):
    """True for an IPv4/IPv6 network or single address (``10.0.0.0/8``, ``::1``) with no host bits set."""
    # Whole strings only: a value with a line break around it would carry the break into the Caddyfile.
    if not isinstance(value, str) or not value or value != value.strip():
        return False
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        return False
    return True


def cidr_list(value):
    """True for a space-separated (or YAML list) allowlist whose every entry is a valid CIDR; empty is false."""
    entries = value.split() if isinstance(value, str) else list(value or [])
    return bool(entries) and all(cidr(entry) for entry in entries)


def domain(value):
    """True for a fully qualified DNS name with at least two labels, no trailing dot, at most 253 characters."""
    if not isinstance(value, str) or len(value) > 253:
        return False
    labels = value.split(".")
    return len(labels) >= 2 and all(_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


class TestModule:
    """Ansible test plugin entry point."""

    def tests(self):
        return {"cidr": cidr, "cidr_list": cidr_list, "domain": domain}
