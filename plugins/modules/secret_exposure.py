#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: secret_exposure
short_description: Find secret values in containers' configuration, naming the container and the secret only
version_added: 0.9.0
description:
  - Reads every value of the secret store kept by M(datamancy.stack.secret) (and the values of root-only env
    files such as the backup repository's credentials) on the managed host and searches the configuration Docker
    keeps of each container for them, that is what C(docker inspect) shows to anyone who can read the engine's
    API, the environment, the command, the entrypoint, the labels, the health check, the mounts' sources and the
    working directory.
  - A finding names the container, the field and the secret's name; no value ever leaves the managed host or
    appears in a result.
  - Multi-line values (PEM keys) are also searched line by line, every line of at least 16 characters.
author:
  - Datamancy maintainers (@datamancy)
extends_documentation_fragment:
  - community.docker.docker.api_documentation
attributes:
  check_mode:
    support: full
    description: It only reads; check mode runs the same search.
  diff_mode:
    support: none
    description: It changes nothing.
  platform:
    support: full
    platforms: posix
    description: Reads files and talks to the Docker API on the managed host.
options:
  store:
    description: Secret store directory on the managed host.
    type: path
    default: /etc/datamancy/secrets
  env_files:
    description:
      - Env files (C(KEY=VALUE) lines) whose values count as secrets too, named C(<file name>:<KEY>) in findings.
        A missing file is skipped.
    type: list
    elements: path
    default: []
  containers:
    description: Names of the containers to search. A missing container is reported in RV(missing).
    type: list
    elements: str
    required: true
  min_length:
    description: Values shorter than this are not searched (they would match by chance).
    type: int
    default: 8
requirements:
  - Docker API >= 1.25
'''

EXAMPLES = r'''
- name: Search the stack's containers for secret values
  datamancy.stack.secret_exposure:
    store: /etc/datamancy/secrets
    env_files: [/opt/datamancy/backup/config/repository.env]
    containers: [caddy, authelia, litellm]
  register: exposure
'''

RETURN = r'''
findings:
  description: One entry per secret found in a container's configuration.
  returned: always
  type: list
  elements: dict
  contains:
    container:
      description: The container's name.
      type: str
    field:
      description: Where the value is, e.g. C(Config.Env LITELLM_MASTER_KEY) or C(Mounts Source).
      type: str
    secret:
      description: The secret's name in the store (or C(<env file>:<KEY>)).
      type: str
checked:
  description: Names of the containers searched.
  returned: always
  type: list
  elements: str
missing:
  description: Names of the requested containers that do not exist.
  returned: always
  type: list
  elements: str
secrets:
  description: How many secret values were searched for (lines of multi-line values counted apiece).
  returned: always
  type: int
'''

from ansible_collections.community.docker.plugins.module_utils.common_api import AnsibleDockerClient

from ansible_collections.datamancy.stack.plugins.module_utils.exposure import (
    configuration_fields,
    env_file_values,
    find_exposures,
    store_values,
)


def main():
    client = AnsibleDockerClient(
        argument_spec=dict(
            store=dict(type="path", default="/etc/datamancy/secrets"),
            env_files=dict(type="list", elements="path", default=[]),
            containers=dict(type="list", elements="str", required=True),
            min_length=dict(type="int", default=8),
        ),
        supports_check_mode=True,
    )
    module = client.module
    params = module.params
    try:
        values = store_values(params["store"], params["min_length"])
        for path in params["env_files"]:
            values.update(env_file_values(path, params["min_length"]))
    except OSError as error:
        module.fail_json(msg="Cannot read the secrets to search for: %s" % error)

    findings, checked, missing = [], [], []
    for name in params["containers"]:
        container = client.get_container(name)
        if container is None:
            missing.append(name)
            continue
        checked.append(name)
        findings.extend(find_exposures(name, configuration_fields(container), values))
    module.exit_json(changed=False, findings=findings, checked=checked, missing=missing, secrets=len(values))


if __name__ == "__main__":
    main()
