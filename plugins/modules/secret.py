#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: secret
short_description: Ensure generated secrets exist in a root-only store on the managed host
version_added: 0.1.0
description:
  - Ensures a set of named secrets exists in a store directory on the managed host (directory C(0700), files
    C(0600), owned by the user running the module, normally root). The store lives on the managed host so that
    ephemeral controllers (AWX execution environments) do not lose or regenerate secrets.
  - Generate once. An existing value never changes unless I(rotate) names it or I(rotate_all=true).
  - Secrets marked I(never_rotate) (storage encryption keys, the LiteLLM salt key, the Open WebUI secret key) refuse
    rotation unless I(force=true). The mark is sticky; once recorded in the store metadata it keeps protecting the
    secret even if a later task omits it.
  - Values of kind C(digest) are derived from another secret (Authelia client-secret digests, LDAP
    C(userPassword) hashes). They are re-derived only when the source changes, detected with a keyed HMAC
    fingerprint of the source kept in the metadata file, so re-runs report no change.
  - All specifications and all stored values are validated before anything is written; on any error the module
    fails and the store is left untouched. Writes are atomic (temporary file, fsync, rename) under an exclusive
    C(flock) on C(<store>/.lock), so concurrent runs serialise.
  - Results name secrets, never values, unless I(return_values=true).
  - 'Store layout: C(<name>) holds the value, C(<name>.pub) the public line of an SSH key pair, C(<name>.meta) JSON
    metadata (kind, parameters, generation counter, timestamps, never_rotate, derivation fingerprint), C(.lock) the
    lock file, C(.fingerprint-key) the HMAC key for derivation fingerprints.'
author:
  - Datamancy maintainers (@datamancy)
requirements:
  - cryptography (kinds C(rsa), C(ecdsa_p256), C(ssh_ed25519))
  - passlib (kind C(digest))
  - argon2-cffi (schemes C(argon2id) and C(ldap_argon2))
attributes:
  check_mode:
    support: full
    description: Reports what would be created, rotated or re-derived; writes nothing, not even the lock file.
  diff_mode:
    support: full
    description: Shows names, kinds and generation counters before and after; never a value.
  platform:
    support: full
    platforms: posix
    description: Uses C(fcntl.flock) and POSIX file modes.
options:
  store:
    description:
      - Absolute path of the store directory on the managed host. Created with mode C(0700) when missing.
      - Must not be a symbolic link and must be owned by the user running the module.
    type: path
    default: /etc/datamancy/secrets
  secrets:
    description:
      - The secrets to ensure. Names are unique, 1-128 characters of letters, digits, C(_) and C(-).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name of the secret; also its file name in the store.
        type: str
        required: true
      kind:
        description:
          - C(hex) is I(bytes) random bytes as lowercase hex.
          - C(base64) and C(urlsafe_base64) are I(bytes) random bytes, padded base64.
          - C(password) is I(length) characters of letters and digits (at least one lowercase, uppercase and
            digit), plus the symbols C(-_.+=,) when I(symbols=true). Those symbols are literal in shell words, YAML,
            env files and URL userinfo, and are never the first character.
          - C(api_key) is I(prefix) (default C(sk-)) followed by I(bytes) random bytes as hex.
          - C(rsa) is an unencrypted PKCS#8 PEM private key of I(size) bits.
          - C(ecdsa_p256) is an unencrypted PKCS#8 PEM P-256 private key.
          - C(ssh_ed25519) is an OpenSSH private key; its public C(ssh-ed25519 ...) line is stored as
            C(<name>.pub) and returned in RV(public_keys).
          - C(digest) is derived from I(derive_from) with I(scheme).
        type: str
        required: true
        choices: [hex, base64, urlsafe_base64, password, api_key, rsa, ecdsa_p256, ssh_ed25519, digest]
      bytes:
        description: Random bytes for C(hex), C(base64), C(urlsafe_base64) and C(api_key); 16 to 1024.
        type: int
        default: 32
      length:
        description: Length of a C(password); 12 to 1024.
        type: int
        default: 32
      symbols:
        description: Include the symbols C(-_.+=,) in a C(password) (at least one is then guaranteed).
        type: bool
        default: false
      prefix:
        description: Prefix of an C(api_key).
        type: str
        default: sk-
      size:
        description: Key size of an C(rsa) key.
        type: int
        choices: [2048, 3072, 4096]
        default: 4096
      comment:
        description: Comment appended to the public line of an C(ssh_ed25519) key.
        type: str
      derive_from:
        description:
          - For C(digest), the name of the source secret, either in this task's I(secrets) or already in the
            store. Digests of digests are refused.
        type: str
      scheme:
        description:
          - For C(digest). C(pbkdf2_sha512) gives Authelia's C($pbkdf2-sha512$<rounds>$...), C(argon2id) gives
            C($argon2id$v=19$m=65536,t=3,p=4$...), C(ldap_ssha) gives C({SSHA}...) and C(ldap_argon2) gives
            C({ARGON2}$argon2id$...) for OpenLDAP's argon2 module.
        type: str
        choices: [pbkdf2_sha512, argon2id, ldap_ssha, ldap_argon2]
        default: pbkdf2_sha512
      rounds:
        description: Rounds for C(pbkdf2_sha512); at least 100000.
        type: int
        default: 310000
      never_rotate:
        description:
          - Refuse rotation of this secret unless I(force=true). Use for keys whose change destroys data.
        type: bool
        default: false
  rotate:
    description:
      - Names of secrets to replace with new values. Each must be in I(secrets).
      - Digests derived from a rotated secret are re-derived in the same run.
    type: list
    elements: str
    default: []
  rotate_all:
    description:
      - Rotate every secret in I(secrets) except the never-rotate ones, which are skipped with a warning and
        listed in RV(skipped_never_rotate).
    type: bool
    default: false
  force:
    description: Allow rotating never-rotate secrets named in I(rotate).
    type: bool
    default: false
  return_values:
    description:
      - Also return the values in RV(values), for templating configuration files.
      - The collection's action plugin then marks the whole result C(no_log), so it is censored in every output
        even at C(-vvvv). Tasks consuming the registered values must still use C(no_log=true) themselves.
    type: bool
    default: false
  lock_timeout:
    description: Seconds to wait for the store lock held by another run.
    type: int
    default: 60
notes:
  - Set C(no_log=true) on every task that touches a value (templates, copies, commands using them); this module
    keeps values out of its own result, but Ansible cannot protect a value once another task prints it.
seealso:
  - module: datamancy.stack.env_file
  - module: datamancy.stack.authelia_oidc_keys
  - module: datamancy.stack.secure_paths
'''

EXAMPLES = r'''
- name: Ensure the Authelia, LiteLLM and Open WebUI secrets exist
  datamancy.stack.secret:
    secrets:
      - {name: authelia_jwt_secret, kind: hex, bytes: 32}
      - {name: authelia_session_secret, kind: hex, bytes: 32}
      - {name: authelia_storage_encryption_key, kind: hex, bytes: 32, never_rotate: true}
      - {name: litellm_master_key, kind: api_key}
      - {name: litellm_salt_key, kind: hex, never_rotate: true}
      - {name: webui_secret_key, kind: urlsafe_base64, never_rotate: true}
      - {name: ldap_admin_password, kind: password, length: 32}
      - {name: ldap_admin_password_hash, kind: digest, derive_from: ldap_admin_password, scheme: ldap_ssha}
      - {name: oidc_openwebui_client_secret, kind: password, length: 64}
      - {name: oidc_openwebui_client_digest, kind: digest, derive_from: oidc_openwebui_client_secret}
      - {name: stackops_ssh_key, kind: ssh_ed25519, comment: stackops}

- name: Rotate the session secret (its digests are re-derived)
  datamancy.stack.secret:
    secrets:
      - {name: authelia_session_secret, kind: hex}
    rotate: [authelia_session_secret]

- name: Read values for templating (the result is censored; the consumer must use no_log too)
  datamancy.stack.secret:
    secrets:
      - {name: oidc_openwebui_client_digest, kind: digest, derive_from: oidc_openwebui_client_secret}
    return_values: true
  register: oidc_secrets
  no_log: true

- name: Template the Authelia client list
  ansible.builtin.template:
    src: clients.yml.j2
    dest: /opt/datamancy/authelia/clients.yml
    mode: "0600"
  no_log: true
'''

RETURN = r'''
store:
  description: Normalised path of the store.
  returned: always
  type: str
  sample: /etc/datamancy/secrets
names:
  description: Names of all secrets in I(secrets), sorted.
  returned: always
  type: list
  elements: str
  sample: [authelia_jwt_secret, litellm_master_key]
created:
  description: Secrets generated by this run (or that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [litellm_master_key]
rotated:
  description: Secrets replaced by this run.
  returned: always
  type: list
  elements: str
  sample: []
rederived:
  description: Digests recomputed because their source or scheme changed.
  returned: always
  type: list
  elements: str
  sample: []
adopted:
  description: Values found in the store without metadata that were validated and given metadata.
  returned: always
  type: list
  elements: str
  sample: []
unchanged:
  description: Secrets left as they were.
  returned: always
  type: list
  elements: str
  sample: [authelia_jwt_secret]
skipped_never_rotate:
  description: Never-rotate secrets that I(rotate_all) skipped.
  returned: always
  type: list
  elements: str
  sample: [litellm_salt_key]
fixed_modes:
  description: Store files or the directory whose mode was corrected to C(0600)/C(0700).
  returned: always
  type: list
  elements: dict
  sample: [{path: /etc/datamancy/secrets/foo, before: '0644', after: '0600'}]
public_keys:
  description: Public C(ssh-ed25519) lines of the C(ssh_ed25519) secrets (public data, always returned).
  returned: always
  type: dict
  sample: {stackops_ssh_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... stackops}
values:
  description:
    - Name to value, only with I(return_values=true). In check mode, secrets that do not exist yet are absent.
    - The result is then censored by the action plugin; use C(no_log=true) on consumers.
  returned: when I(return_values=true)
  type: dict
  sample: {}
'''

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.datamancy.stack.plugins.module_utils.generators import (
    CorruptValueError, MissingLibraryError, SpecError, check_libraries, check_stored, derive, generate,
    normalize_spec, source_fingerprint,
)
from ansible_collections.datamancy.stack.plugins.module_utils.secret_store import (
    DEFAULT_STORE, SecretStore, StoreError, new_fingerprint_key,
)
from ansible_collections.datamancy.stack.plugins.module_utils.fileutil import FileError


def _now():
    import datetime
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


class Refusal(Exception):
    pass


def plan_and_apply(module):
    params = module.params
    check_mode = module.check_mode

    # 1. Specifications, validated before the store is even looked at.
    specs = {}
    order = []
    for raw in params['secrets']:
        kind, kind_params = normalize_spec(raw)
        name = raw['name']
        if name in specs:
            raise SpecError('secret %r is listed twice' % name)
        check_libraries(kind, kind_params)
        specs[name] = {'kind': kind, 'params': kind_params, 'never_rotate': bool(raw.get('never_rotate'))}
        order.append(name)
    rotate = list(params['rotate'] or [])
    for name in rotate:
        if name not in specs:
            raise SpecError('rotate names %r, which is not in secrets' % name)

    store = SecretStore(params['store'], check_mode=check_mode)
    exists = store.inspect()
    store.lock(exclusive=True, timeout=params['lock_timeout'])
    try:
        return _run_locked(module, store, exists, specs, order, set(rotate))
    finally:
        store.unlock()


def _run_locked(module, store, exists, specs, order, rotate):
    params = module.params
    # 2. Load and validate what the store already holds, including derivation sources outside this task.
    current = {}
    names_to_load = list(order)
    for spec in specs.values():
        source = spec['params'].get('derive_from')
        if source and source not in specs and source not in names_to_load:
            names_to_load.append(source)
    for name in names_to_load:
        value = store.read(name) if exists else None
        meta = store.read_meta(name) if exists else None
        public = store.read_public(name) if exists else None
        current[name] = {'value': value, 'meta': meta, 'public': public}

    for name in names_to_load:
        entry = current[name]
        spec = specs.get(name)
        meta = entry['meta']
        if spec is None:
            # A source that only exists in the store: it must be there, with metadata telling its kind.
            if entry['value'] is None:
                raise SpecError('derive_from names %r, which is neither in secrets nor in the store %s'
                                % (name, store.path))
            if meta is None:
                raise SpecError('derivation source %r has no metadata in the store; list it in secrets' % name)
            if meta['kind'] == 'digest':
                raise SpecError('derivation source %r is itself a digest; derive from the plaintext secret' % name)
            check_stored(name, meta['kind'], meta.get('params', {}), entry['value'], entry['public'])
            continue
        if spec['kind'] == 'digest':
            source = spec['params']['derive_from']
            source_kind = specs[source]['kind'] if source in specs else None
            if source_kind == 'digest':
                raise SpecError('secret %r derives from %r, which is itself a digest' % (name, source))
        if entry['value'] is None:
            continue
        stored_kind = meta['kind'] if meta else spec['kind']
        if stored_kind != spec['kind'] and name not in rotate:
            raise SpecError('secret %r is stored as kind %s but requested as kind %s; name it in rotate to replace '
                            'it' % (name, stored_kind, spec['kind']))
        if name in rotate and stored_kind != spec['kind']:
            continue  # about to be replaced; its old format does not matter
        stored_params = (meta or {}).get('params') or spec['params']
        check_stored(name, stored_kind, stored_params, entry['value'],
                     entry['public'] if stored_kind == 'ssh_ed25519' else None)

    # 3. Plan. Refusals are raised here, still before any write.
    result = {'created': [], 'rotated': [], 'rederived': [], 'adopted': [], 'unchanged': [],
              'skipped_never_rotate': []}
    warnings = []
    writes = {}          # name -> (value, public or None, meta)
    meta_only = {}       # name -> meta
    now = _now()
    for name in order:
        spec = specs[name]
        if spec['kind'] == 'digest':
            continue
        entry = current[name]
        meta = entry['meta']
        sticky_never = spec['never_rotate'] or bool(meta and meta.get('never_rotate'))
        wants_rotation = name in rotate or params['rotate_all']
        if entry['value'] is None:
            action = 'created'
        elif wants_rotation:
            if sticky_never and not params['force']:
                if name in rotate:
                    raise Refusal('secret %r is marked never_rotate (changing it would make existing data '
                                  'unreadable); set force=true to rotate it anyway' % name)
                result['skipped_never_rotate'].append(name)
                warnings.append('rotate_all skipped never-rotate secret %s' % name)
                action = None
            else:
                action = 'rotated'
        else:
            action = None
        if action:
            value, public = generate(spec['kind'], spec['params'])
            generation = ((meta or {}).get('generation') or 0) + 1
            writes[name] = (value, public, {
                'kind': spec['kind'], 'params': spec['params'], 'never_rotate': sticky_never,
                'generation': generation, 'created': (meta or {}).get('created') or now, 'updated': now})
            result[action].append(name)
            continue
        if meta is None:
            meta_only[name] = {'kind': spec['kind'], 'params': spec['params'], 'never_rotate': sticky_never,
                               'generation': 1, 'created': now, 'updated': now}
            result['adopted'].append(name)
            if spec['kind'] == 'ssh_ed25519' and entry['public'] is None:
                writes[name] = (entry['value'], _public_from_private(entry['value'], spec['params']),
                                meta_only.pop(name))
            continue
        if spec['kind'] == 'ssh_ed25519' and entry['public'] is None:
            # The public half is recomputable from the private key: restore it instead of failing.
            writes[name] = (entry['value'], _public_from_private(entry['value'], meta.get('params', {})), meta)
            result['rederived'].append(name)
            continue
        if spec['never_rotate'] and not meta.get('never_rotate'):
            meta_only[name] = dict(meta, never_rotate=True)
        if meta.get('params') != spec['params']:
            warnings.append('secret %s keeps its existing value although its parameters changed; rotate it to '
                            'apply the new parameters' % name)
        result['unchanged'].append(name)

    fp_key = store.fingerprint_key() if exists else None
    new_fp_key = None if fp_key is not None else new_fingerprint_key()
    for name in order:
        spec = specs[name]
        if spec['kind'] != 'digest':
            continue
        source = spec['params']['derive_from']
        if source in writes:
            source_value = writes[source][0]
        else:
            source_value = current[source]['value']
        fingerprint = source_fingerprint(fp_key or new_fp_key, source, source_value)
        entry = current[name]
        meta = entry['meta']
        if entry['value'] is None:
            action = 'created'
        elif name in rotate or params['rotate_all']:
            action = 'rotated'   # a fresh salt; the plaintext is unaffected, so never_rotate does not apply
        elif meta is None or meta.get('source_fingerprint') != fingerprint or meta.get('params') != spec['params'] \
                or meta.get('kind') != 'digest':
            action = 'rederived'
        else:
            action = None
        if action:
            generation = ((meta or {}).get('generation') or 0) + 1
            writes[name] = (derive(spec['params'], source_value), None, {
                'kind': 'digest', 'params': spec['params'], 'never_rotate': False, 'generation': generation,
                'source': source, 'source_fingerprint': fingerprint,
                'created': (meta or {}).get('created') or now, 'updated': now})
            result[action].append(name)
        else:
            result['unchanged'].append(name)

    # Digests in the store that derive from a secret replaced now, but are not listed in this task, would silently
    # go stale: re-derive them too, with the parameters recorded in their metadata.
    replaced = set(result['rotated'])
    if replaced and exists:
        for name in store.list_names():
            if name in specs:
                continue
            meta = store.read_meta(name)
            if not meta or meta.get('kind') != 'digest' or meta.get('source') not in replaced:
                continue
            source = meta['source']
            dep_params = meta.get('params') or {}
            check_libraries('digest', dep_params)
            fingerprint = source_fingerprint(fp_key or new_fp_key, source, writes[source][0])
            writes[name] = (derive(dep_params, writes[source][0]), None, dict(
                meta, source_fingerprint=fingerprint, generation=(meta.get('generation') or 0) + 1, updated=now))
            order.append(name)
            specs[name] = {'kind': 'digest', 'params': dep_params, 'never_rotate': False}
            current[name] = {'value': store.read(name), 'meta': meta, 'public': None}
            result['rederived'].append(name)

    if writes or meta_only or exists:
        store.ensure_dir()
    changed = bool(writes or meta_only or store.fixed_modes)

    # 4. Apply (nothing at all in check mode).
    if not module.check_mode:
        store.apply_fixed_modes()
        if writes or meta_only:
            # The directory may have been created just now, in which case there was nothing to lock before.
            store.lock(exclusive=True, timeout=params['lock_timeout'])
            if new_fp_key is not None and any(writes[n][2].get('kind') == 'digest' for n in writes):
                store.write_fingerprint_key(new_fp_key)
            for name in order:
                if name in writes:
                    value, public, meta = writes[name]
                    store.write(name, value)
                    if public is not None:
                        store.write_public(name, public)
                    store.write_meta(name, meta)
                elif name in meta_only:
                    store.write_meta(name, meta_only[name])

    # 5. Report: names, kinds and generations only.
    public_keys = {}
    for name in order:
        if specs[name]['kind'] == 'ssh_ed25519':
            pub = writes[name][1] if name in writes else current[name]['public']
            if pub is not None:
                public_keys[name] = pub.strip()
    output = dict(result, changed=changed, store=store.path, names=sorted(order), fixed_modes=store.fixed_modes,
                  public_keys=public_keys)
    if module._diff:
        output['diff'] = _diff(order, specs, current, writes, meta_only, result)
    if params['return_values']:
        values = {}
        for name in order:
            if name in writes:
                values[name] = writes[name][0]
            elif current[name]['value'] is not None:
                values[name] = current[name]['value']
        output['values'] = values
    return output, warnings


def _public_from_private(private_pem, kind_params):
    from cryptography.hazmat.primitives import serialization
    from ansible_collections.datamancy.stack.plugins.module_utils.generators import ssh_public_line
    key = serialization.load_ssh_private_key(private_pem.encode('ascii'), password=None)
    return ssh_public_line(key, kind_params.get('comment', ''))


def _diff(order, specs, current, writes, meta_only, result):
    labels = {}
    for action in ('created', 'rotated', 'rederived', 'adopted'):
        for name in result[action]:
            labels[name] = action
    before, after = [], []
    for name in sorted(order):
        meta = current[name]['meta']
        if current[name]['value'] is not None:
            kind = meta['kind'] if meta else specs[name]['kind']
            before.append('%s: %s (generation %s)' % (name, kind, (meta or {}).get('generation', '?')))
        new_meta = writes[name][2] if name in writes else meta_only.get(name, meta)
        if new_meta is not None:
            line = '%s: %s (generation %s)' % (name, new_meta['kind'], new_meta.get('generation'))
            if name in labels:
                line += ' [%s]' % labels[name]
            after.append(line)
    return {'before_header': 'secret store (names and kinds only)',
            'after_header': 'secret store (names and kinds only)',
            'before': '\n'.join(before) + ('\n' if before else ''),
            'after': '\n'.join(after) + ('\n' if after else '')}


def main():
    spec_options = dict(
        name=dict(type='str', required=True),
        kind=dict(type='str', required=True, choices=['hex', 'base64', 'urlsafe_base64', 'password', 'api_key',
                                                      'rsa', 'ecdsa_p256', 'ssh_ed25519', 'digest']),
        bytes=dict(type='int', default=32),
        length=dict(type='int', default=32),
        symbols=dict(type='bool', default=False),
        prefix=dict(type='str', default='sk-'),
        size=dict(type='int', default=4096, choices=[2048, 3072, 4096]),
        comment=dict(type='str'),
        derive_from=dict(type='str'),
        scheme=dict(type='str', default='pbkdf2_sha512',
                    choices=['pbkdf2_sha512', 'argon2id', 'ldap_ssha', 'ldap_argon2']),
        rounds=dict(type='int', default=310000),
        never_rotate=dict(type='bool', default=False),
    )
    module = AnsibleModule(
        argument_spec=dict(
            store=dict(type='path', default=DEFAULT_STORE),
            secrets=dict(type='list', elements='dict', required=True, options=spec_options, no_log=False),
            rotate=dict(type='list', elements='str', default=[], no_log=False),
            rotate_all=dict(type='bool', default=False),
            force=dict(type='bool', default=False),
            return_values=dict(type='bool', default=False),
            lock_timeout=dict(type='int', default=60),
        ),
        supports_check_mode=True,
    )
    try:
        output, warnings = plan_and_apply(module)
    except MissingLibraryError as exc:
        module.fail_json(msg=missing_required_lib(exc.library), exception=exc.error)
    except (SpecError, CorruptValueError, StoreError, FileError, Refusal) as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg='filesystem error in the secret store: %s' % exc, exception=traceback.format_exc())
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**output)


if __name__ == '__main__':
    main()
