#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: secret_files
short_description: Hand stored secrets to a container as files it alone can read
version_added: 0.1.0
description:
  - Copies named secrets from the store kept by M(datamancy.stack.secret) into one directory per service, owned
    by the user the service's container runs as, so the container reads them through C(*_FILE) variables or a
    configuration include instead of its environment.
  - The values are read and written on the managed host and never travel through the controller or appear in a
    result, a diff or a log.
  - Writes are atomic. A file whose content, owner and mode already match is left alone, so re-runs report no
    change. Files in I(dest) that are not listed are removed when I(prune=true).
  - Every listed secret must exist in the store and I(dest) must be an absolute path before anything is written.
author:
  - Datamancy maintainers (@datamancy)
attributes:
  check_mode:
    support: full
    description: Reports which files would be written or removed; writes nothing.
  diff_mode:
    support: full
    description: Lists the file names (never the values) before and after.
  platform:
    support: full
    platforms: posix
    description: Uses POSIX file modes and ownership.
options:
  store:
    description: Secret store directory on the managed host.
    type: path
    default: /etc/datamancy/secrets
  dest:
    description: Directory receiving the files; created with I(dir_mode).
    type: path
    required: true
  owner:
    description: Owner of I(dest) and the files, a user name or a numeric uid (the container's user).
    type: str
    default: '0'
  group:
    description: Group of I(dest) and the files, a group name or a numeric gid.
    type: str
    default: '0'
  mode:
    description: Mode of the files.
    type: str
    default: '0400'
  dir_mode:
    description: Mode of I(dest).
    type: str
    default: '0500'
  names:
    description: Secrets copied under their own names; shorthand for I(files) entries that set only C(secret).
    type: list
    elements: str
    default: []
  files:
    description: The secrets to copy, with per-file options. I(names) and I(files) together list every file.
    type: list
    elements: dict
    default: []
    suboptions:
      secret:
        description: Name of the secret in the store.
        type: str
        required: true
      filename:
        description: File name in I(dest); defaults to the secret's name.
        type: str
      public:
        description: Copy the public half (C(<secret>.pub)) of a key pair instead of the secret itself.
        type: bool
        default: false
      format:
        description:
          - Text written to the file, with C({value}) replaced by the secret, for software that wants the secret
            inside a line of its own configuration (Redis C(requirepass {value}) in an included file).
          - Defaults to the bare value.
        type: str
        default: '{value}'
  prune:
    description: Remove files in I(dest) that are not listed in I(files).
    type: bool
    default: true
seealso:
  - module: datamancy.stack.secret
  - module: datamancy.stack.env_file
'''

EXAMPLES = r'''
- name: Give Authelia its secrets as files (read through AUTHELIA_*_FILE variables)
  datamancy.stack.secret_files:
    dest: /opt/datamancy/authelia/secrets
    owner: "8000"
    group: "8000"
    names:
      - authelia_jwt_secret
      - authelia_session_secret
    files:
      - secret: redis_password
        filename: session_redis_password

- name: Give Redis its password inside an included configuration file
  datamancy.stack.secret_files:
    dest: /opt/datamancy/redis/secrets
    owner: "999"
    group: "1000"
    files:
      - secret: redis_password
        filename: requirepass.conf
        format: "requirepass {value}\n"
'''

RETURN = r'''
written:
  description: File names written (created or changed content, owner or mode).
  returned: always
  type: list
  elements: str
  sample: [authelia_jwt_secret]
removed:
  description: File names removed by I(prune).
  returned: always
  type: list
  elements: str
  sample: []
'''

import os
import stat

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.datamancy.stack.plugins.module_utils.fileutil import (
    FileError,
    atomic_write,
    lstat_or_none,
    parse_mode,
    resolve_gid,
    resolve_uid,
    validate_abs_path,
)
from ansible_collections.datamancy.stack.plugins.module_utils.secret_store import SecretStore, StoreError


def _file_matches(path, data, uid, gid, mode):
    st = lstat_or_none(path)
    if st is None or not stat.S_ISREG(st.st_mode):
        return False
    if st.st_uid != uid or st.st_gid != gid or stat.S_IMODE(st.st_mode) != mode:
        return False
    with open(path, 'rb') as handle:
        return handle.read() == data


def plan(params):
    """Validate everything and return (values by filename, uid, gid, mode, dir_mode); raises on any problem."""
    dest = validate_abs_path(params['dest'], 'dest')
    uid, gid = resolve_uid(params['owner']), resolve_gid(params['group'])
    mode, dir_mode = parse_mode(params['mode']), parse_mode(params['dir_mode'])
    store = SecretStore(params['store'], check_mode=True)
    if not store.inspect():
        raise StoreError('secret store %s does not exist; create the secrets first' % store.path)
    entries = [dict(secret=name, filename=None, public=False, format='{value}') for name in params['names']]
    entries += params['files']
    if not entries:
        raise FileError('list at least one secret in names or files')
    values = {}
    for entry in entries:
        filename = entry.get('filename') or entry['secret'] + ('.pub' if entry['public'] else '')
        if '/' in filename or filename in ('.', '..'):
            raise FileError('filename %r must be a plain file name' % filename)
        if filename in values:
            raise FileError('filename %r is listed twice' % filename)
        value = store.read_public(entry['secret']) if entry['public'] else store.read(entry['secret'])
        if value is None:
            raise StoreError('secret %r is not in the store %s' % (entry['secret'], store.path))
        if '{value}' not in entry['format']:
            raise FileError('format for %r must contain {value}' % filename)
        values[filename] = entry['format'].replace('{value}', value).encode('utf-8')
    return dest, values, uid, gid, mode, dir_mode


def main():
    module = AnsibleModule(
        argument_spec=dict(
            store=dict(type='path', default='/etc/datamancy/secrets'),
            dest=dict(type='path', required=True),
            owner=dict(type='str', default='0'),
            group=dict(type='str', default='0'),
            mode=dict(type='str', default='0400'),
            dir_mode=dict(type='str', default='0500'),
            names=dict(type='list', elements='str', default=[], no_log=False),
            files=dict(type='list', elements='dict', default=[], options=dict(
                secret=dict(type='str', required=True, no_log=False),
                filename=dict(type='str'),
                public=dict(type='bool', default=False),
                format=dict(type='str', default='{value}'),
            )),
            prune=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    try:
        dest, values, uid, gid, mode, dir_mode = plan(module.params)
    except (FileError, StoreError) as exc:
        module.fail_json(msg=str(exc))

    written, removed = [], []
    dest_st = lstat_or_none(dest)
    if dest_st is not None and not stat.S_ISDIR(dest_st.st_mode):
        module.fail_json(msg='dest %s exists and is not a directory' % dest)
    dir_changed = (dest_st is None or dest_st.st_uid != uid or dest_st.st_gid != gid
                   or stat.S_IMODE(dest_st.st_mode) != dir_mode)
    existing = sorted(os.listdir(dest)) if dest_st is not None else []

    for filename, data in sorted(values.items()):
        if not _file_matches(os.path.join(dest, filename), data, uid, gid, mode):
            written.append(filename)
    if module.params['prune']:
        removed = [name for name in existing if name not in values]

    if not module.check_mode:
        if dest_st is None:
            os.makedirs(dest, 0o700)
        for filename in written:
            atomic_write(os.path.join(dest, filename), values[filename], mode, uid, gid)
        for filename in removed:
            path = os.path.join(dest, filename)
            if os.path.isdir(path) and not os.path.islink(path):
                module.fail_json(msg='refusing to prune the directory %s' % path)
            os.unlink(path)
        if dir_changed:
            os.chown(dest, uid, gid)
            os.chmod(dest, dir_mode)

    changed = bool(written or removed or dir_changed)
    result = dict(changed=changed, written=written, removed=removed)
    if module._diff:
        result['diff'] = dict(
            before='\n'.join(existing) + ('\n' if existing else ''),
            after='\n'.join(sorted(values)) + '\n',
            before_header='%s (file names)' % dest,
            after_header='%s (file names)' % dest,
        )
    module.exit_json(**result)


if __name__ == '__main__':
    main()
