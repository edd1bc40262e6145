#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: secure_paths
short_description: Assert or enforce owner, group and mode of secret files and directories
version_added: 0.1.0
description:
  - Matches absolute glob patterns (C(**) recurses) and compares each match's owner, group and mode with the rule.
  - With I(state=enforce) mismatches are corrected; with I(state=assert) or in check mode they are only reported,
    and I(state=assert) fails when any violation exists, listing them all.
  - Symbolic links are never followed or changed; a match that is a link is reported in RV(skipped_symlinks).
  - Hidden files only match patterns whose component starts with a dot (for example C(/opt/datamancy/.env*)).
author:
  - Datamancy maintainers (@datamancy)
attributes:
  check_mode:
    support: full
    description: Reports the violations that enforce would correct; changes nothing.
  diff_mode:
    support: full
    description: Shows mode and ownership of each corrected path before and after.
  platform:
    support: full
    platforms: posix
    description: Uses POSIX file modes and ownership.
options:
  rules:
    description: What to check. A path matched by several rules must not get conflicting expectations.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path or glob pattern.
        type: str
        required: true
      owner:
        description: Expected owner (name or uid). Omit to not check.
        type: str
      group:
        description: Expected group (name or gid). Omit to not check.
        type: str
      mode:
        description: Expected octal mode, for example C('0600'). Omit to not check.
        type: str
      file_type:
        description: Apply the rule only to matches of this type.
        type: str
        choices: [any, file, directory]
        default: any
      required:
        description: Report a violation when the pattern matches nothing.
        type: bool
        default: false
  state:
    description: C(enforce) corrects violations; C(assert) reports them and fails if there are any.
    type: str
    choices: [enforce, assert]
    default: enforce
'''

EXAMPLES = r'''
- name: Enforce the modes the security guide requires
  datamancy.stack.secure_paths:
    rules:
      - {path: /etc/datamancy/secrets, owner: root, group: root, mode: "0700", file_type: directory, required: true}
      - {path: /etc/datamancy/secrets/*, owner: root, mode: "0600", file_type: file}
      - {path: /opt/datamancy/.env*, owner: root, mode: "0600", file_type: file}

- name: Audit (fails with the list of violations)
  datamancy.stack.secure_paths:
    state: assert
    rules:
      - {path: /opt/datamancy/**/*.key, mode: "0600", file_type: file}
'''

RETURN = r'''
violations:
  description: Every mismatch found (before correction when enforcing).
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The path (or the pattern, for an unmatched required rule).
      type: str
    attribute:
      description: C(owner), C(group), C(mode) or C(exists).
      type: str
    actual:
      description: What was found.
      type: str
    expected:
      description: What the rule asks for.
      type: str
  sample: [{path: /opt/datamancy/.env, attribute: mode, actual: '0644', expected: '0600'}]
fixed:
  description: Paths corrected (or that would be, in check mode).
  returned: always
  type: list
  elements: str
checked:
  description: Number of distinct paths examined.
  returned: always
  type: int
skipped_symlinks:
  description: Matches that are symbolic links and were left alone.
  returned: always
  type: list
  elements: str
'''

import glob
import os
import stat

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.datamancy.stack.plugins.module_utils.fileutil import (
    FileError, format_mode, group_name, owner_name, parse_mode, resolve_gid, resolve_uid,
)


def _expectations(rules):
    """Map each matched path to its expected attributes; conflicting rules are an error."""
    expected = {}
    missing = []
    symlinks = set()
    for index, rule in enumerate(rules):
        pattern = rule['path']
        if not os.path.isabs(pattern):
            raise FileError('rule %d: path %r must be absolute' % (index + 1, pattern))
        want = {}
        if rule.get('owner') not in (None, ''):
            want['owner'] = resolve_uid(rule['owner'])
        if rule.get('group') not in (None, ''):
            want['group'] = resolve_gid(rule['group'])
        if rule.get('mode') not in (None, ''):
            want['mode'] = parse_mode(rule['mode'])
        matched = 0
        for path in sorted(set(glob.glob(pattern, recursive=True))):
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                symlinks.add(path)
                continue
            if rule['file_type'] == 'file' and not stat.S_ISREG(st.st_mode):
                continue
            if rule['file_type'] == 'directory' and not stat.S_ISDIR(st.st_mode):
                continue
            matched += 1
            current = expected.setdefault(path, {})
            for attribute, value in want.items():
                if attribute in current and current[attribute][0] != value:
                    raise FileError('%s is matched by rule %d and rule %d with different %s expectations'
                                    % (path, current[attribute][1] + 1, index + 1, attribute))
                current[attribute] = (value, index)
        if rule['required'] and matched == 0:
            missing.append({'path': pattern, 'attribute': 'exists', 'actual': 'missing', 'expected': 'present'})
    return expected, missing, sorted(symlinks)


def _show(attribute, value):
    if attribute == 'mode':
        return format_mode(value)
    if attribute == 'owner':
        return owner_name(value)
    return group_name(value)


def run(module):
    params = module.params
    enforce = params['state'] == 'enforce'
    expected, violations, symlinks = _expectations(params['rules'])
    fixed = []
    before_lines, after_lines = [], []
    for path in sorted(expected):
        st = os.lstat(path)
        actual = {'owner': st.st_uid, 'group': st.st_gid, 'mode': stat.S_IMODE(st.st_mode)}
        wrong = {}
        for attribute, (value, dummy) in sorted(expected[path].items()):
            if actual[attribute] != value:
                wrong[attribute] = value
                violations.append({'path': path, 'attribute': attribute, 'actual': _show(attribute, actual[attribute]),
                                   'expected': _show(attribute, value)})
        if not wrong or not enforce:
            continue
        fixed.append(path)
        target = dict(actual, **wrong)
        before_lines.append('%s %s %s:%s' % (path, format_mode(actual['mode']), owner_name(actual['owner']),
                                             group_name(actual['group'])))
        after_lines.append('%s %s %s:%s' % (path, format_mode(target['mode']), owner_name(target['owner']),
                                            group_name(target['group'])))
        if not module.check_mode:
            if 'owner' in wrong or 'group' in wrong:
                # chown can clear setuid/setgid bits, so ownership goes first and the mode is applied after it.
                os.chown(path, target['owner'], target['group'], follow_symlinks=False)
            os.chmod(path, target['mode'])

    result = {'changed': bool(fixed), 'violations': violations, 'fixed': fixed, 'checked': len(expected),
              'skipped_symlinks': symlinks}
    if module._diff and fixed:
        result['diff'] = {'before_header': 'modes and owners', 'after_header': 'modes and owners',
                          'before': '\n'.join(before_lines) + '\n', 'after': '\n'.join(after_lines) + '\n'}
    unfixable = [v for v in violations if v['attribute'] == 'exists']
    if not enforce and violations:
        module.fail_json(msg='%d permission violation(s): %s' % (len(violations), '; '.join(
            '%s %s is %s, expected %s' % (v['path'], v['attribute'], v['actual'], v['expected'])
            for v in violations)), **result)
    if enforce and unfixable:
        module.fail_json(msg='required paths are missing: %s' % ', '.join(v['path'] for v in unfixable), **result)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            rules=dict(type='list', elements='dict', required=True, options=dict(
                path=dict(type='str', required=True),
                owner=dict(type='str'),
                group=dict(type='str'),
                mode=dict(type='str'),
                file_type=dict(type='str', default='any', choices=['any', 'file', 'directory']),
                required=dict(type='bool', default=False),
            )),
            state=dict(type='str', default='enforce', choices=['enforce', 'assert']),
        ),
        supports_check_mode=True,
    )
    try:
        result = run(module)
    except FileError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg='cannot inspect or change %s: %s' % (exc.filename, exc.strerror))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
