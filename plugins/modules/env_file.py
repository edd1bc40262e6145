#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: env_file
short_description: Write KEY=VALUE env files from stored secrets and plain values
version_added: 0.1.0
description:
  - Writes a whole env file (C(.env.bootstrap), C(.env), per-service env files) from secrets read on the managed
    host from the store kept by M(datamancy.stack.secret), and from plain values. Secret values never travel
    through the controller.
  - The file is fully managed; keys not listed in I(entries) are removed.
  - Writes are atomic (temporary file with the final mode and owner, fsync, rename). Unchanged content, mode and
    ownership report no change.
  - 'Quoting (I(format=compose)): a value of only C(A-Za-z0-9_./:@+=,%^~-) is written bare, which docker
    C(--env-file), compose and systemd C(EnvironmentFile=) all read identically (every generated kind is bare);
    other values without a single quote or line break are single-quoted (literal in compose and systemd); values
    with a single quote and none of C($), backslash, backtick, double quote are double-quoted; anything else,
    including line breaks, is refused. Use I(single_line) for PEM values.'
  - The diff shows secret values (and values of keys not known to be plain) as C(KEY=<redacted:sha256:...>), a
    short hash prefix that shows a change without revealing the value.
author:
  - Datamancy maintainers (@datamancy)
attributes:
  check_mode:
    support: full
    description: Reports whether the file would change; writes nothing.
  diff_mode:
    support: full
    description: Shows the file with secret values redacted, and mode/owner changes.
  platform:
    support: full
    platforms: posix
    description: Uses POSIX file modes and ownership.
options:
  path:
    description: Absolute path of the env file. Its directory must exist. A symbolic link is refused.
    type: path
    required: true
  entries:
    description: The variables, in file order. Each has exactly one of I(value) or I(secret).
    type: list
    elements: dict
    required: true
    suboptions:
      key:
        description: Variable name (C([A-Za-z_][A-Za-z0-9_]*)).
        type: str
        required: true
      value:
        description: A plain, non-secret value (visible in task arguments and diffs).
        type: str
      secret:
        description: Name of a secret in I(store) whose value is used.
        type: str
      single_line:
        description:
          - Replace line breaks of the value with the two characters C(\n) (the single-line PEM transport form).
        type: bool
        default: false
      redact:
        description: Redact this plain I(value) in diffs too. Secrets are always redacted.
        type: bool
        default: false
  store:
    description: Secret store directory (see M(datamancy.stack.secret)).
    type: path
    default: /etc/datamancy/secrets
  format:
    description:
      - C(compose) applies the quoting rule above (docker compose, systemd and, for bare values, docker run).
      - C(raw) writes values unquoted, for C(docker run --env-file) or the compose C(env_file) raw format.
    type: str
    choices: [compose, raw]
    default: compose
  mode:
    description: Octal mode of the file.
    type: str
    default: '0600'
  owner:
    description: Owner (name or uid). Default keeps the existing owner, or the running user for a new file.
    type: str
  group:
    description: Group (name or gid). Default keeps the existing group, or the running user's for a new file.
    type: str
  header:
    description: Start the file with a comment saying it is managed.
    type: bool
    default: true
  lock_timeout:
    description: Seconds to wait for the store lock held by a writer.
    type: int
    default: 60
notes:
  - Put secrets in the file with I(secret), never with I(value), because a I(value) is part of the task arguments.
seealso:
  - module: datamancy.stack.secret
'''

EXAMPLES = r'''
- name: Write the full-stack .env
  datamancy.stack.env_file:
    path: /opt/datamancy/.env
    owner: root
    group: root
    mode: "0600"
    entries:
      - {key: DOMAIN, value: example.org}
      - {key: LITELLM_MASTER_KEY, secret: litellm_master_key}
      - {key: AUTHELIA_IDENTITY_PROVIDERS_OIDC_HMAC_SECRET, secret: authelia_oidc_hmac_secret}
      - key: AUTHELIA_IDENTITY_PROVIDERS_OIDC_ISSUER_PRIVATE_KEY
        secret: authelia_oidc_issuer_key
        single_line: true
'''

RETURN = r'''
path:
  description: The env file.
  returned: always
  type: str
  sample: /opt/datamancy/.env
keys:
  description: The keys written, in order.
  returned: always
  type: list
  elements: str
  sample: [DOMAIN, LITELLM_MASTER_KEY]
content_changed:
  description: Whether the content differed (as opposed to only mode or ownership).
  returned: always
  type: bool
  sample: true
mode:
  description: The file mode after the run.
  returned: always
  type: str
  sample: '0600'
'''

import os
import stat
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.datamancy.stack.plugins.module_utils.envfile import (
    KEY_RE, EnvFileError, quote_value, redacted_text, render,
)
from ansible_collections.datamancy.stack.plugins.module_utils.fileutil import (
    FileError, atomic_write, format_mode, group_name, lstat_or_none, owner_name, parse_mode, resolve_gid,
    resolve_uid, validate_abs_path,
)
from ansible_collections.datamancy.stack.plugins.module_utils.generators import SpecError, validate_name
from ansible_collections.datamancy.stack.plugins.module_utils.secret_store import DEFAULT_STORE, SecretStore, StoreError


def _validate_entries(entries):
    seen = set()
    for entry in entries:
        key = entry['key']
        if not KEY_RE.match(key or ''):
            raise EnvFileError('key %r is not a valid variable name' % (key,))
        if key in seen:
            raise EnvFileError('key %s is listed twice' % key)
        seen.add(key)
        if (entry.get('value') is None) == (entry.get('secret') is None):
            raise EnvFileError('key %s needs exactly one of value or secret' % key)
        if entry.get('secret') is not None:
            validate_name(entry['secret'], 'secret of key %s' % key)


def run(module):
    params = module.params
    path = validate_abs_path(params['path'], 'path')
    entries = params['entries']
    _validate_entries(entries)
    mode = parse_mode(params['mode'])
    want_uid = resolve_uid(params['owner'])
    want_gid = resolve_gid(params['group'])

    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise FileError('directory %s of the env file does not exist' % parent)
    st = lstat_or_none(path)
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise FileError('%s is a symbolic link; refusing to write secrets through it' % path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise FileError('%s exists and is not a regular file' % path)

    # Resolve values on the managed host; only names went through the task arguments.
    secret_names = [e['secret'] for e in entries if e.get('secret') is not None]
    values = {}
    if secret_names:
        store = SecretStore(params['store'], check_mode=True)  # read-only use: never creates anything
        if not store.inspect():
            raise StoreError('secret store %s does not exist; create the secrets with datamancy.stack.secret first'
                             % store.path)
        store.lock(exclusive=False, timeout=params['lock_timeout'])
        try:
            for name in secret_names:
                value = store.read(name)
                if value is None:
                    raise StoreError('secret %s is not in the store %s' % (name, store.path))
                values[name] = value
        finally:
            store.unlock()

    lines = []
    plain_keys = set()
    for entry in entries:
        if entry.get('secret') is not None:
            value = values[entry['secret']]
        else:
            value = entry['value']
            if not entry['redact']:
                plain_keys.add(entry['key'])
        if entry['single_line']:
            value = value.rstrip('\n').replace('\r', '').replace('\n', '\\n')
        lines.append((entry['key'], quote_value(entry['key'], value, params['format'])))
    content = render(lines, params['header']).encode('utf-8')

    old_content = None
    if st is not None:
        with open(path, 'rb') as handle:
            old_content = handle.read()
    uid = want_uid if want_uid is not None else (st.st_uid if st is not None else None)
    gid = want_gid if want_gid is not None else (st.st_gid if st is not None else None)

    content_changed = old_content != content
    attr_changed = st is not None and (stat.S_IMODE(st.st_mode) != mode or (uid is not None and st.st_uid != uid)
                                       or (gid is not None and st.st_gid != gid))
    changed = content_changed or attr_changed or st is None

    result = {'changed': changed, 'path': path, 'keys': [e['key'] for e in entries],
              'content_changed': content_changed, 'mode': format_mode(mode)}
    if module._diff:
        before_text = redacted_text(old_content.decode('utf-8', 'replace'), plain_keys) if old_content is not None \
            else ''
        after_text = redacted_text(content.decode('utf-8'), plain_keys)
        diffs = [{'before_header': path, 'after_header': path, 'before': before_text, 'after': after_text}]
        if attr_changed:
            diffs.append({'before_header': path + ' (attributes)', 'after_header': path + ' (attributes)',
                          'before': 'mode=%s owner=%s group=%s\n' % (format_mode(st.st_mode), owner_name(st.st_uid),
                                                                     group_name(st.st_gid)),
                          'after': 'mode=%s owner=%s group=%s\n' % (
                              format_mode(mode), owner_name(uid if uid is not None else st.st_uid),
                              group_name(gid if gid is not None else st.st_gid))})
        result['diff'] = diffs

    if changed and not module.check_mode:
        if content_changed or st is None:
            atomic_write(path, content, mode, uid, gid)
        else:
            os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid, follow_symlinks=False)
            os.chmod(path, mode)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            entries=dict(type='list', elements='dict', required=True, options=dict(
                key=dict(type='str', required=True, no_log=False),
                value=dict(type='str'),
                secret=dict(type='str', no_log=False),
                single_line=dict(type='bool', default=False),
                redact=dict(type='bool', default=False),
            )),
            store=dict(type='path', default=DEFAULT_STORE),
            format=dict(type='str', default='compose', choices=['compose', 'raw']),
            mode=dict(type='str', default='0600'),
            owner=dict(type='str'),
            group=dict(type='str'),
            header=dict(type='bool', default=True),
            lock_timeout=dict(type='int', default=60),
        ),
        supports_check_mode=True,
    )
    try:
        result = run(module)
    except (EnvFileError, FileError, StoreError, SpecError) as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg='filesystem error writing %s: %s' % (module.params['path'], exc),
                         exception=traceback.format_exc())
    module.exit_json(**result)


if __name__ == '__main__':
    main()
