#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: authelia_oidc_keys
short_description: Ensure Authelia's OpenID Connect HMAC secret and issuer signing keys
version_added: 0.1.0
description:
  - Keeps Authelia's OIDC provider secrets in the secret store of M(datamancy.stack.secret) on the managed host.
  - The HMAC secret is I(hmac_length) random letters and digits (at least 64).
  - The issuer keys form a key ring of RSA private keys (PKCS#8 PEM). Each key's id is its RFC 7638 JWK
    thumbprint (SHA-256, base64url), so the id follows from the public key and never needs to be chosen.
  - I(rotate=true) adds a new key and makes it the active (first) one while the previous keys stay published in
    the JWKS, so tokens signed before the rotation keep verifying. I(retire_previous=true) removes every key but
    the active one once those tokens have expired; I(retire_after) does so by itself once a key was superseded
    that many seconds ago.
  - Authelia accepts a key id only when it starts and ends with a letter or digit. A thumbprint that does not (one
    in 32 keys starts with C(-) or C(_)) is never generated, such a key is drawn again. A stored key with such an id
    (Authelia could never start with it) is replaced.
  - 'Files written under I(store) for I(name): C(<name>_hmac_secret), C(<name>_keyring) (JSON key ring with the
    private keys), C(<name>_issuer_key) (active key PEM), C(<name>_issuer_key_single_line) (the PEM with line
    breaks as the two characters C(\n), the single-line form for C(AUTHELIA_IDENTITY_PROVIDERS_OIDC_ISSUER_PRIVATE_KEY)),
    C(<name>_jwks) (public JWKS JSON), C(<name>_issuer_key_previous_<n>) (the PEM of the I(n)th previous key, for
    as long as it is published), each with a C(.meta) file; all C(0600).'
author:
  - Datamancy maintainers (@datamancy)
requirements:
  - cryptography
attributes:
  check_mode:
    support: full
    description: Reports what would be created, rotated or retired; writes nothing.
  diff_mode:
    support: full
    description: Shows key ids and the HMAC secret's generation before and after; never a value.
  platform:
    support: full
    platforms: posix
    description: Uses POSIX file modes and ownership.
options:
  store:
    description: Secret store directory on the managed host.
    type: path
    default: /etc/datamancy/secrets
  name:
    description: Prefix of the store entries.
    type: str
    default: authelia_oidc
  hmac_length:
    description: Length of the HMAC secret; 64 to 1024.
    type: int
    default: 64
  key_size:
    description: RSA key size of new issuer keys.
    type: int
    choices: [2048, 3072, 4096]
    default: 4096
  rotate:
    description: Generate a new active issuer key; the previous ones stay published until retired.
    type: bool
    default: false
  retire_previous:
    description: Remove every issuer key except the active one from the key ring and the JWKS.
    type: bool
    default: false
  retire_after:
    description:
      - Seconds a superseded issuer key stays published; a key replaced longer ago than this is retired on the
        next run. Choose more than the longest token lifespan. Unset, previous keys stay until I(retire_previous).
    type: int
  rotate_hmac:
    description: Replace the HMAC secret (invalidates outstanding authorization codes and refresh tokens).
    type: bool
    default: false
  return_values:
    description:
      - Also return the private values in RV(values), for templating Authelia's configuration.
      - The action plugin then censors the whole result; consumers must use C(no_log=true).
    type: bool
    default: false
  lock_timeout:
    description: Seconds to wait for the store lock.
    type: int
    default: 60
seealso:
  - module: datamancy.stack.secret
  - module: datamancy.stack.env_file
  - name: RFC 7638 JSON Web Key Thumbprint
    description: Defines the key ids used here.
    link: https://www.rfc-editor.org/rfc/rfc7638
'''

EXAMPLES = r'''
- name: Ensure the OIDC HMAC secret and issuer key
  datamancy.stack.authelia_oidc_keys:
  register: oidc

- name: Rotate the issuer key, keeping the old one published
  datamancy.stack.authelia_oidc_keys:
    rotate: true

- name: Later, once tokens signed by the old key have expired
  datamancy.stack.authelia_oidc_keys:
    retire_previous: true

- name: Put the HMAC secret and the single-line issuer key in Authelia's env file
  datamancy.stack.env_file:
    path: /opt/datamancy/authelia.env
    entries:
      - {key: AUTHELIA_IDENTITY_PROVIDERS_OIDC_HMAC_SECRET, secret: authelia_oidc_hmac_secret}
      - {key: AUTHELIA_IDENTITY_PROVIDERS_OIDC_ISSUER_PRIVATE_KEY, secret: authelia_oidc_issuer_key_single_line}
'''

RETURN = r'''
kid:
  description: Key id (RFC 7638 thumbprint) of the active issuer key.
  returned: always
  type: str
  sample: NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs
kids:
  description: Key ids of all published keys, active first.
  returned: always
  type: list
  elements: str
key_entries:
  description: Store entries holding the published keys' PEMs, in the order of RV(kids).
  returned: always
  type: list
  elements: str
  sample: [authelia_oidc_issuer_key, authelia_oidc_issuer_key_previous_1]
jwks:
  description:
    - The public JWKS (public data).
    - In check mode a key that would be generated is a throwaway key that is not stored.
  returned: always
  type: dict
created:
  description: Store entries created (C(hmac_secret), C(issuer_key)).
  returned: always
  type: list
  elements: str
rotated:
  description: Entries rotated (C(hmac_secret), C(issuer_key)).
  returned: always
  type: list
  elements: str
retired:
  description: Key ids removed from the key ring.
  returned: always
  type: list
  elements: str
replaced:
  description: Key ids of stored keys Authelia cannot use (see the description), dropped from the key ring.
  returned: always
  type: list
  elements: str
values:
  description:
    - Only with I(return_values=true); the result is censored. Keys C(hmac_secret), C(issuer_private_key),
      C(issuer_private_key_single_line) and C(keys) (list of C(kid), C(algorithm), C(key) PEM, active first).
  returned: when I(return_values=true)
  type: dict
'''

import datetime
import json
import re
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.datamancy.stack.plugins.module_utils.fileutil import FileError
from ansible_collections.datamancy.stack.plugins.module_utils.generators import (
    HAS_CRYPTOGRAPHY, CRYPTOGRAPHY_IMPORT_ERROR, CorruptValueError, SpecError, check_stored, generate_password,
    generate_rsa_pem, jwk_thumbprint, pem_single_line, rsa_public_jwk, validate_name,
)
from ansible_collections.datamancy.stack.plugins.module_utils.secret_store import (
    DEFAULT_STORE, META_SUFFIX, SecretStore, StoreError,
)


# Authelia's own rule for key ids (its configuration validator): letters, digits and ._~- , starting and ending
# with a letter or digit.
AUTHELIA_KID_RE = re.compile(r'[A-Za-z0-9](?:[A-Za-z0-9._~-]*[A-Za-z0-9])?\Z')
PREVIOUS_KEY_SUFFIX = '_previous_'


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _kid(pem):
    return jwk_thumbprint(rsa_public_jwk(pem))


def _new_key(size, now):
    # The id is the key's thumbprint, so an id Authelia refuses can only be avoided by drawing another key.
    for _attempt in range(32):
        pem = generate_rsa_pem(size)
        kid = _kid(pem)
        if AUTHELIA_KID_RE.match(kid):
            return {'kid': kid, 'algorithm': 'RS256', 'created': now.isoformat(), 'key': pem}
    raise SpecError('no RSA key with an id Authelia accepts in 32 attempts')


def _superseded_long_ago(keys, now, retire_after):
    """Index of the first key superseded (by the key before it) at least retire_after seconds ago, or None."""
    if retire_after is None:
        return None
    for index in range(1, len(keys)):
        try:
            superseded = datetime.datetime.fromisoformat(keys[index - 1]['created'])
        except (KeyError, TypeError, ValueError):
            continue
        if superseded.tzinfo is None:
            superseded = superseded.replace(tzinfo=datetime.timezone.utc)
        if (now - superseded).total_seconds() >= retire_after:
            return index
    return None


def _load_keyring(store, entry, exists):
    text = store.read(entry) if exists else None
    if text is None:
        return []
    try:
        keys = json.loads(text)['keys']
    except (ValueError, KeyError, TypeError):
        keys = None
    if not isinstance(keys, list):
        raise CorruptValueError('key ring %s is not valid JSON with a list of keys' % store.file_path(entry))
    for item in keys:
        if not isinstance(item, dict) or not isinstance(item.get('key'), str):
            raise CorruptValueError('key ring %s has an entry without a key' % store.file_path(entry))
        check_stored('%s (kid %s)' % (entry, item.get('kid')), 'rsa', {}, item['key'])
        if _kid(item['key']) != item.get('kid'):
            raise CorruptValueError('key ring %s: the key id %s does not match its key' % (entry, item.get('kid')))
    return keys


def run(module):
    p = module.params
    prefix = validate_name(p['name'], 'name')
    if not 64 <= p['hmac_length'] <= 1024:
        raise SpecError('hmac_length=%d is out of range; Authelia needs at least 64 characters' % p['hmac_length'])
    if p['retire_after'] is not None and p['retire_after'] < 0:
        raise SpecError('retire_after=%d must not be negative' % p['retire_after'])
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=CRYPTOGRAPHY_IMPORT_ERROR)
    names = {k: '%s_%s' % (prefix, k)
             for k in ('hmac_secret', 'keyring', 'issuer_key', 'issuer_key_single_line', 'jwks')}
    for entry in names.values():
        validate_name(entry)

    store = SecretStore(p['store'], check_mode=module.check_mode)
    exists = store.inspect()
    store.lock(exclusive=True, timeout=p['lock_timeout'])
    try:
        return _run_locked(module, store, exists, names)
    finally:
        store.unlock()


def _run_locked(module, store, exists, names):
    p = module.params
    now = _now()
    result = {'created': [], 'rotated': [], 'retired': [], 'replaced': []}
    writes = {}   # store entry -> (value, meta)

    hmac_value = store.read(names['hmac_secret']) if exists else None
    hmac_meta = store.read_meta(names['hmac_secret']) if exists else None
    if hmac_value is not None:
        check_stored(names['hmac_secret'], 'password', {}, hmac_value)
        if len(hmac_value) < 64:
            raise CorruptValueError('stored secret %r is shorter than the 64 characters Authelia requires; set '
                                    'rotate_hmac=true to replace it' % names['hmac_secret'])
    hmac_generation_before = (hmac_meta or {}).get('generation', '?')
    keys = _load_keyring(store, names['keyring'], exists)
    old_kids = [k['kid'] for k in keys]

    if hmac_value is None or p['rotate_hmac']:
        result['created' if hmac_value is None else 'rotated'].append('hmac_secret')
        hmac_value = generate_password(p['hmac_length'])
        generation = ((hmac_meta or {}).get('generation') or 0) + 1
        hmac_meta = {'kind': 'password', 'params': {'length': p['hmac_length'], 'symbols': False},
                     'never_rotate': False, 'generation': generation,
                     'created': (hmac_meta or {}).get('created') or now.isoformat(), 'updated': now.isoformat()}
        writes[names['hmac_secret']] = (hmac_value, hmac_meta)

    ring_changed = False
    unusable = [k['kid'] for k in keys if not AUTHELIA_KID_RE.match(k['kid'])]
    if unusable:
        result['replaced'] = unusable
        keys = [k for k in keys if k['kid'] not in unusable]
        ring_changed = True
    if not keys or p['rotate']:
        result['created' if not old_kids else 'rotated'].append('issuer_key')
        keys.insert(0, _new_key(p['key_size'], now))
        ring_changed = True
    retire_from = 1 if p['retire_previous'] else _superseded_long_ago(keys, now, p['retire_after'])
    if retire_from is not None and len(keys) > retire_from:
        result['retired'] = [k['kid'] for k in keys[retire_from:]]
        keys = keys[:retire_from]
        ring_changed = True

    active = keys[0]
    jwks = {'keys': [dict(rsa_public_jwk(k['key']), kid=k['kid'], use='sig', alg=k.get('algorithm', 'RS256'))
                     for k in keys]}
    if ring_changed:
        writes[names['keyring']] = (json.dumps({'keys': keys}, indent=2, sort_keys=True) + '\n',
                                    {'kind': 'keyring', 'params': {}, 'never_rotate': False,
                                     'updated': now.isoformat()})
    # The exported forms are recomputed from the ring and rewritten only when they differ, so re-runs are no-ops
    # and a damaged export repairs itself.
    previous_prefix = names['issuer_key'] + PREVIOUS_KEY_SUFFIX
    key_entries = [names['issuer_key']] + ['%s%d' % (previous_prefix, n) for n in range(1, len(keys))]
    exports = {
        names['issuer_key']: (active['key'], 'rsa', active['kid']),
        names['issuer_key_single_line']: (pem_single_line(active['key']), 'pem_single_line', active['kid']),
        names['jwks']: (json.dumps(jwks, indent=2, sort_keys=True) + '\n', 'jwks', active['kid']),
    }
    # Previous keys are files of their own: Authelia's configuration reads each published key from one.
    for entry, key in zip(key_entries[1:], keys[1:]):
        exports[entry] = (key['key'], 'rsa', key['kid'])
    for entry, (value, kind, kid) in exports.items():
        current = store.read(entry) if exists else None
        if current != value:
            writes[entry] = (value, {'kind': kind, 'params': {'source': names['keyring'], 'kid': kid},
                                     'never_rotate': False, 'updated': now.isoformat()})
    stale = sorted(name for name in (store.list_names() if exists else [])
                   if name.startswith(previous_prefix) and name not in key_entries)

    if writes or exists:
        store.ensure_dir()
    changed = bool(writes or stale or store.fixed_modes)
    if not module.check_mode:
        store.apply_fixed_modes()
        if writes or stale:
            store.lock(exclusive=True, timeout=p['lock_timeout'])
            # The ring goes first: every other file can be recomputed from it, the reverse is not true.
            for entry in sorted(writes, key=lambda e: e != names['keyring']):
                value, meta = writes[entry]
                store.write(entry, value)
                store.write_meta(entry, meta)
            for entry in stale:
                store.remove(entry)
                store.remove(entry, META_SUFFIX)

    output = dict(result, changed=changed, kid=active['kid'], kids=[k['kid'] for k in keys], jwks=jwks,
                  key_entries=key_entries, store=store.path, fixed_modes=store.fixed_modes)
    if module._diff:
        before = ''
        if 'hmac_secret' not in result['created']:
            before += 'hmac_secret: generation %s\n' % hmac_generation_before
        before += ''.join('issuer key: %s%s\n' % (k, ' (active)' if i == 0 else '') for i, k in enumerate(old_kids))
        after = 'hmac_secret: generation %s\n' % (hmac_meta or {}).get('generation', '?') + ''.join(
            'issuer key: %s%s\n' % (k['kid'], ' (active)' if i == 0 else '') for i, k in enumerate(keys))
        output['diff'] = {'before_header': 'authelia oidc keys (ids only)', 'after_header': 'authelia oidc keys '
                          '(ids only)', 'before': before, 'after': after}
    if p['return_values']:
        output['values'] = {
            'hmac_secret': hmac_value,
            'issuer_private_key': active['key'],
            'issuer_private_key_single_line': pem_single_line(active['key']),
            'keys': [{'kid': k['kid'], 'algorithm': k.get('algorithm', 'RS256'), 'key': k['key']} for k in keys],
        }
    return output


def main():
    module = AnsibleModule(
        argument_spec=dict(
            store=dict(type='path', default=DEFAULT_STORE),
            name=dict(type='str', default='authelia_oidc'),
            hmac_length=dict(type='int', default=64, no_log=False),
            key_size=dict(type='int', default=4096, choices=[2048, 3072, 4096], no_log=False),
            rotate=dict(type='bool', default=False),
            retire_previous=dict(type='bool', default=False),
            retire_after=dict(type='int', no_log=False),
            rotate_hmac=dict(type='bool', default=False),
            return_values=dict(type='bool', default=False),
            lock_timeout=dict(type='int', default=60),
        ),
        supports_check_mode=True,
    )
    try:
        output = run(module)
    except (SpecError, CorruptValueError, StoreError, FileError) as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg='filesystem error in the secret store: %s' % exc, exception=traceback.format_exc())
    module.exit_json(**output)


if __name__ == '__main__':
    main()
