#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: vhost_probe
short_description: Ask every vhost of the ingress for a page without a session, the way a browser would
version_added: 0.1.0
description:
  - Connects to the ingress at I(address):I(port) on the managed host and sends one C(GET) per vhost with the
    vhost's name as TLS SNI and C(Host) header, without cookies or credentials, and without following redirects.
  - Returns each answer's status and C(Location), for the audit to judge (datamancy.stack.audit_report).
  - Reads only; a connection or TLS failure is an answer too (status null and the error).
author:
  - Datamancy maintainers (@datamancy)
attributes:
  check_mode:
    support: full
    description: Probing changes nothing, so it runs in check mode as well.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
  platform:
    support: full
    platforms: posix
    description: Runs on the managed host, where the ingress publishes its port.
options:
  address:
    description: Address the ingress listens on, as reachable from the managed host.
    type: str
    default: 127.0.0.1
  port:
    description: The ingress's HTTPS port on the host.
    type: int
    default: 443
  vhosts:
    description: The vhosts to probe.
    type: list
    elements: dict
    required: true
    suboptions:
      fqdn:
        description: The vhost's name.
        type: str
        required: true
      path:
        description: Path to request.
        type: str
        default: /
  ca_file:
    description: CA certificate the ingress's certificates must chain to; omit for the system's trust store.
    type: path
  validate_certs:
    description: Verify the ingress's certificate and name.
    type: bool
    default: true
  timeout:
    description: Seconds per request.
    type: int
    default: 30
  retries:
    description: Further attempts after a request got no answer (a timeout on a loaded host is no finding).
    type: int
    default: 2
'''

EXAMPLES = r'''
- name: Probe every vhost without a session
  datamancy.stack.vhost_probe:
    port: 443
    vhosts:
      - { fqdn: open-webui.example.org }
      - { fqdn: api.litellm.example.org, path: /v1/models }
  register: probes
'''

RETURN = r'''
probes:
  description: One answer per vhost.
  returned: always
  type: list
  elements: dict
  contains:
    fqdn: {description: The vhost., type: str}
    path: {description: The path requested., type: str}
    status: {description: "The HTTP status; null when no answer came.", type: int}
    location: {description: The Location header of a redirect., type: str}
    error: {description: Why no answer came., type: str}
'''

import http.client
import ssl
import time

from ansible.module_utils.basic import AnsibleModule


class _SNIConnection(http.client.HTTPSConnection):
    """Connects to the ingress's address but presents the vhost's name (SNI and certificate check)."""

    def __init__(self, address, port, server_name, context, timeout):
        super().__init__(address, port, context=context, timeout=timeout)
        self._server_name = server_name
        self._ssl_context = context

    def connect(self):
        http.client.HTTPConnection.connect(self)
        self.sock = self._ssl_context.wrap_socket(self.sock, server_hostname=self._server_name)


def probe(address, port, fqdn, path, context, timeout):
    result = {"fqdn": fqdn, "path": path, "status": None, "location": "", "error": ""}
    connection = _SNIConnection(address, port, fqdn, context, timeout)
    try:
        host = fqdn if port == 443 else f"{fqdn}:{port}"
        connection.request("GET", path, headers={"Host": host, "Accept": "text/html,application/xhtml+xml",
                                                 "User-Agent": "datamancy-audit"})
        response = connection.getresponse()
        result["status"] = response.status
        result["location"] = response.getheader("Location") or ""
        response.read(65536)
    except (OSError, http.client.HTTPException, ssl.SSLError) as error:
        result["error"] = f"{type(error).__name__}: {error}"
    finally:
        connection.close()
    return result


def main():
    module = AnsibleModule(
        argument_spec={
            "address": {"type": "str", "default": "127.0.0.1"},
            "port": {"type": "int", "default": 443},
            "vhosts": {"type": "list", "elements": "dict", "required": True,
                       "options": {"fqdn": {"type": "str", "required": True},
                                   "path": {"type": "str", "default": "/"}}},
            "ca_file": {"type": "path"},
            "validate_certs": {"type": "bool", "default": True},
            "timeout": {"type": "int", "default": 30},
            "retries": {"type": "int", "default": 2},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        if params["validate_certs"]:
            context = ssl.create_default_context(cafile=params["ca_file"])
        else:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    except (OSError, ssl.SSLError) as error:
        # No CA (Caddy never started, say): every vhost is unverifiable, which is the audit's finding, not a crash.
        failure = f"CA file {params['ca_file']}: {error}"
        probes = [{"fqdn": vhost["fqdn"], "path": vhost["path"], "status": None, "location": "", "error": failure}
                  for vhost in params["vhosts"]]
        module.exit_json(changed=False, probes=probes)
    probes = []
    for vhost in params["vhosts"]:
        result = probe(params["address"], params["port"], vhost["fqdn"], vhost["path"], context, params["timeout"])
        attempts = params["retries"]
        while result["status"] is None and attempts > 0:
            attempts -= 1
            time.sleep(2)
            result = probe(params["address"], params["port"], vhost["fqdn"], vhost["path"], context, params["timeout"])
        probes.append(result)
    module.exit_json(changed=False, probes=probes)


if __name__ == "__main__":
    main()
