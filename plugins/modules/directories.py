#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: directories
short_description: Ensure several directories exist with their owner, group and mode in one call
version_added: 0.1.0
description:
  - The batch form of M(ansible.builtin.file) with C(state=directory) for a role's directories, so a converge
    makes one module call per role instead of one per directory.
  - Missing directories (and missing parents, root-owned C(0755)) are created; owner, group and mode of each listed
    directory are corrected. A listed path that exists as something else than a directory is an error; symbolic
    links are never followed.
author:
  - Datamancy maintainers (@datamancy)
attributes:
  check_mode:
    support: full
    description: Reports what would be created or corrected; changes nothing.
  diff_mode:
    support: full
    description: Shows each created or corrected directory's mode and ownership before and after.
  platform:
    support: full
    platforms: posix
    description: Uses POSIX file modes and ownership.
options:
  directories:
    description: The directories, in order (a parent before its children).
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      owner:
        description: Owner (name or uid).
        type: str
        default: root
      group:
        description: Group (name or gid).
        type: str
        default: root
      mode:
        description: Octal mode, for example C('0750').
        type: str
        default: '0755'
'''

EXAMPLES = r'''
- name: Create Caddy's directories
  datamancy.stack.directories:
    directories:
      - {path: /opt/datamancy/caddy}
      - {path: /opt/datamancy/caddy/data, owner: "10000", group: "10000", mode: "0700"}
'''

RETURN = r'''
created:
  description: Directories created (or that would be, in check mode).
  returned: always
  type: list
  elements: str
corrected:
  description: Existing directories whose owner, group or mode were corrected (or would be).
  returned: always
  type: list
  elements: str
'''

import os
import stat

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.datamancy.stack.plugins.module_utils.fileutil import (
    FileError, format_mode, group_name, lstat_or_none, owner_name, parse_mode, resolve_gid, resolve_uid,
)


def _line(path, mode, uid, gid):
    return '%s %s %s:%s' % (path, format_mode(mode), owner_name(uid), group_name(gid))


def run(module):
    created, corrected, before, after = [], [], [], []
    for entry in module.params['directories']:
        path = entry['path']
        if not os.path.isabs(path):
            raise FileError('path %r must be absolute' % path)
        uid, gid, mode = resolve_uid(entry['owner']), resolve_gid(entry['group']), parse_mode(entry['mode'])
        st = lstat_or_none(path)
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise FileError('%s exists and is not a directory' % path)
        if st is None:
            created.append(path)
            before.append('%s absent' % path)
            if not module.check_mode:
                parent = os.path.dirname(path)
                if not os.path.isdir(parent):
                    os.makedirs(parent, 0o755)
                os.mkdir(path, 0o700)
        elif (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != (uid, gid, mode):
            corrected.append(path)
            before.append(_line(path, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid))
        else:
            continue
        after.append(_line(path, mode, uid, gid))
        if not module.check_mode:
            # Ownership first: chown can clear setgid bits that the mode then sets again.
            os.chown(path, uid, gid, follow_symlinks=False)
            os.chmod(path, mode)
    result = {'changed': bool(created or corrected), 'created': created, 'corrected': corrected}
    if module._diff and result['changed']:
        result['diff'] = {'before_header': 'directories', 'after_header': 'directories',
                          'before': '\n'.join(before) + '\n', 'after': '\n'.join(after) + '\n'}
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            directories=dict(type='list', elements='dict', required=True, options=dict(
                path=dict(type='path', required=True),
                owner=dict(type='str', default='root'),
                group=dict(type='str', default='root'),
                mode=dict(type='str', default='0755'),
            )),
        ),
        supports_check_mode=True,
    )
    try:
        result = run(module)
    except FileError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg='cannot create or change %s: %s' % (exc.filename, exc.strerror))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
