# -*- coding: utf-8 -*-
# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secret kinds: parameter validation, generation, derivation and format checks of stored values.

Randomness comes only from the ``secrets`` module (the OS CSPRNG) or from cryptography's key generation.
Nothing in here logs or returns a value to the caller except the functions whose job is to produce one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import string
import traceback

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised by ansible-test's import sanity test
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()

try:
    from passlib.hash import argon2 as passlib_argon2
    from passlib.hash import ldap_salted_sha1, pbkdf2_sha512
    HAS_PASSLIB = True
    PASSLIB_IMPORT_ERROR = None
except ImportError:  # pragma: no cover
    HAS_PASSLIB = False
    PASSLIB_IMPORT_ERROR = traceback.format_exc()


class SpecError(Exception):
    """Invalid secret specification (reported before anything is written)."""


class CorruptValueError(Exception):
    """A value found in the store does not match its kind (reported before anything is written)."""


class MissingLibraryError(Exception):
    def __init__(self, library, error):
        super().__init__(library)
        self.library = library
        self.error = error


# Characters allowed as password "symbols". Each of them is literal, without quoting or escaping, in:
#   POSIX sh words (no glob, expansion, tilde, comment or operator meaning mid-word), YAML plain scalars when not
#   the first character, docker --env-file / compose .env / systemd EnvironmentFile values, and the userinfo part
#   of a URL (RFC 3986 unreserved or sub-delims that parsers leave alone), so a generated password can go into a
#   DATABASE_URL unencoded. A symbol is never placed first (no option-like '-x', no YAML indicator).
PASSWORD_SYMBOLS = '-_.+=,'
PASSWORD_ALPHANUMERIC = string.ascii_letters + string.digits

KINDS = ('hex', 'base64', 'urlsafe_base64', 'password', 'api_key', 'rsa', 'ecdsa_p256', 'ssh_ed25519', 'digest')
PEM_KINDS = ('rsa', 'ecdsa_p256', 'ssh_ed25519')
DIGEST_SCHEMES = ('pbkdf2_sha512', 'argon2id', 'ldap_ssha', 'ldap_argon2')
RSA_SIZES = (2048, 3072, 4096)

MIN_BYTES = 16          # 128 bits: the floor for any random secret
MAX_BYTES = 1024
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
DEFAULT_BYTES = 32
DEFAULT_PASSWORD_LENGTH = 32
DEFAULT_RSA_SIZE = 4096
DEFAULT_PBKDF2_ROUNDS = 310000   # Authelia's documented default for pbkdf2-sha512
MIN_PBKDF2_ROUNDS = 100000
# Authelia's recommended argon2id parameters (memory in KiB).
ARGON2_PARAMS = {'memory_cost': 65536, 'rounds': 3, 'parallelism': 4}

NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_-]{0,127}\Z')
HEX_RE = re.compile(r'^[0-9a-f]+\Z')
B64_RE = re.compile(r'^[A-Za-z0-9+/]+={0,2}\Z')
URLSAFE_B64_RE = re.compile(r'^[A-Za-z0-9_-]+={0,2}\Z')
API_KEY_PREFIX_RE = re.compile(r'^[A-Za-z0-9_-]{0,16}\Z')


def validate_name(name, what='secret name'):
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise SpecError('%s %r is invalid: use 1-128 characters of letters, digits, "_" and "-", starting with a '
                        'letter or digit' % (what, name))
    return name


def _int_param(spec, key, default):
    value = spec.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError('secret %r: %s must be an integer, got %r' % (spec.get('name'), key, value))
    return value


def normalize_spec(spec):
    """Validate one spec and return the canonical parameters that define the kind (stored in metadata).

    Only parameters relevant to the kind are kept, so metadata comparisons are not disturbed by unrelated keys.
    """
    name = validate_name(spec.get('name'))
    kind = spec.get('kind')
    if kind not in KINDS:
        raise SpecError('secret %r: unknown kind %r; supported kinds: %s' % (name, kind, ', '.join(KINDS)))
    params = {}
    if kind in ('hex', 'base64', 'urlsafe_base64', 'api_key'):
        nbytes = _int_param(spec, 'bytes', DEFAULT_BYTES)
        if nbytes < MIN_BYTES or nbytes > MAX_BYTES:
            raise SpecError('secret %r: bytes=%d is out of range; a %s secret needs %d to %d random bytes'
                            % (name, nbytes, kind, MIN_BYTES, MAX_BYTES))
        params['bytes'] = nbytes
        if kind == 'api_key':
            prefix = spec.get('prefix')
            prefix = 'sk-' if prefix is None else prefix
            if not API_KEY_PREFIX_RE.match(prefix):
                raise SpecError('secret %r: prefix %r must be at most 16 letters, digits, "_" or "-"' % (name, prefix))
            params['prefix'] = prefix
    elif kind == 'password':
        length = _int_param(spec, 'length', DEFAULT_PASSWORD_LENGTH)
        if length < MIN_PASSWORD_LENGTH or length > MAX_PASSWORD_LENGTH:
            raise SpecError('secret %r: length=%d is out of range; a password needs %d to %d characters'
                            % (name, length, MIN_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH))
        params['length'] = length
        params['symbols'] = bool(spec.get('symbols'))
    elif kind == 'rsa':
        size = _int_param(spec, 'size', DEFAULT_RSA_SIZE)
        if size not in RSA_SIZES:
            raise SpecError('secret %r: RSA size %d is not supported; choose one of %s'
                            % (name, size, ', '.join(str(s) for s in RSA_SIZES)))
        params['size'] = size
    elif kind == 'ssh_ed25519':
        comment = spec.get('comment') or ''
        if not re.match(r'^[A-Za-z0-9@._+-]{0,128}\Z', comment):
            raise SpecError('secret %r: comment %r may only contain letters, digits and "@._+-"' % (name, comment))
        params['comment'] = comment
    elif kind == 'digest':
        source = spec.get('derive_from')
        if not source:
            raise SpecError('secret %r: kind digest needs derive_from (the secret whose digest it is)' % name)
        validate_name(source, 'derive_from of secret %r' % name)
        if source == name:
            raise SpecError('secret %r: derive_from cannot name the secret itself' % name)
        scheme = spec.get('scheme') or 'pbkdf2_sha512'
        if scheme not in DIGEST_SCHEMES:
            raise SpecError('secret %r: unknown scheme %r; supported schemes: %s'
                            % (name, scheme, ', '.join(DIGEST_SCHEMES)))
        params['derive_from'] = source
        params['scheme'] = scheme
        if scheme == 'pbkdf2_sha512':
            rounds = _int_param(spec, 'rounds', DEFAULT_PBKDF2_ROUNDS)
            if rounds < MIN_PBKDF2_ROUNDS:
                raise SpecError('secret %r: rounds=%d is too low for pbkdf2-sha512 (minimum %d)'
                                % (name, rounds, MIN_PBKDF2_ROUNDS))
            params['rounds'] = rounds
    if kind != 'digest' and spec.get('derive_from'):
        raise SpecError('secret %r: derive_from is only valid with kind digest' % name)
    return kind, params


def required_libraries(kind, params):
    libs = []
    if kind in PEM_KINDS:
        libs.append('cryptography')
    if kind == 'digest':
        libs.append('passlib')
        if params.get('scheme') in ('argon2id', 'ldap_argon2'):
            libs.append('argon2-cffi')
    return libs


def check_libraries(kind, params):
    for lib in required_libraries(kind, params):
        if lib == 'cryptography' and not HAS_CRYPTOGRAPHY:
            raise MissingLibraryError('cryptography', CRYPTOGRAPHY_IMPORT_ERROR)
        if lib == 'passlib' and not HAS_PASSLIB:
            raise MissingLibraryError('passlib', PASSLIB_IMPORT_ERROR)
        if lib == 'argon2-cffi':
            try:
                import argon2  # noqa: F401 pylint: disable=unused-import
            except ImportError:
                raise MissingLibraryError('argon2-cffi', traceback.format_exc())


# --------------------------------------------------------------------------------------------------- generation

def generate_password(length, symbols=False):
    alphabet = PASSWORD_ALPHANUMERIC + (PASSWORD_SYMBOLS if symbols else '')
    while True:
        first = secrets.choice(PASSWORD_ALPHANUMERIC)
        value = first + ''.join(secrets.choice(alphabet) for dummy in range(length - 1))
        # Require every character class so the value passes any "complex password" policy; rejection sampling
        # keeps the distribution uniform over the accepted set.
        if not any(c.islower() for c in value) or not any(c.isupper() for c in value):
            continue
        if not any(c.isdigit() for c in value):
            continue
        if symbols and not any(c in PASSWORD_SYMBOLS for c in value):
            continue
        return value


def _pem_private(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode('ascii')


def generate_rsa_pem(size):
    return _pem_private(rsa.generate_private_key(public_exponent=65537, key_size=size))


def generate(kind, params):
    """Return (value, public) for a non-derived kind; ``public`` is only set for SSH key pairs."""
    if kind == 'hex':
        return secrets.token_hex(params['bytes']), None
    if kind == 'base64':
        return base64.b64encode(secrets.token_bytes(params['bytes'])).decode('ascii'), None
    if kind == 'urlsafe_base64':
        return base64.urlsafe_b64encode(secrets.token_bytes(params['bytes'])).decode('ascii'), None
    if kind == 'api_key':
        return params['prefix'] + secrets.token_hex(params['bytes']), None
    if kind == 'password':
        return generate_password(params['length'], params['symbols']), None
    if kind == 'rsa':
        return generate_rsa_pem(params['size']), None
    if kind == 'ecdsa_p256':
        return _pem_private(ec.generate_private_key(ec.SECP256R1())), None
    if kind == 'ssh_ed25519':
        key = ed25519.Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption()).decode('ascii')
        return private, ssh_public_line(key, params.get('comment', ''))
    raise SpecError('kind %r cannot be generated directly' % kind)


def ssh_public_line(key, comment=''):
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode('ascii')
    return line + (' ' + comment if comment else '') + '\n'


def derive(params, source_value):
    """Digest of ``source_value`` per scheme (fresh random salt each call)."""
    scheme = params['scheme']
    if scheme == 'pbkdf2_sha512':
        # passlib's modular crypt format "$pbkdf2-sha512$<rounds>$<ab64 salt>$<ab64 hash>" is what Authelia reads.
        return pbkdf2_sha512.using(rounds=params['rounds'], salt_size=16).hash(source_value)
    if scheme == 'argon2id':
        return passlib_argon2.using(type='ID', **ARGON2_PARAMS).hash(source_value)
    if scheme == 'ldap_ssha':
        return ldap_salted_sha1.hash(source_value)
    if scheme == 'ldap_argon2':
        # OpenLDAP's pw-argon2 module: "{ARGON2}" followed by the PHC string.
        return '{ARGON2}' + passlib_argon2.using(type='ID', **ARGON2_PARAMS).hash(source_value)
    raise SpecError('unknown scheme %r' % scheme)


def verify_digest(scheme, source_value, digest):
    """True when ``digest`` is a digest of ``source_value`` (used by tests and by audits)."""
    if scheme == 'pbkdf2_sha512':
        return pbkdf2_sha512.verify(source_value, digest)
    if scheme == 'argon2id':
        return passlib_argon2.verify(source_value, digest)
    if scheme == 'ldap_ssha':
        return ldap_salted_sha1.verify(source_value, digest)
    if scheme == 'ldap_argon2':
        return digest.startswith('{ARGON2}') and passlib_argon2.verify(source_value, digest[len('{ARGON2}'):])
    raise SpecError('unknown scheme %r' % scheme)


def source_fingerprint(key, source_name, source_value):
    """Keyed fingerprint of a derivation source.

    Keyed (HMAC with the store's private key) rather than a plain hash so the metadata is no faster oracle for the
    source than the slow digest itself.
    """
    message = b'datamancy-derive-v1\x00' + source_name.encode('utf-8') + b'\x00' + source_value.encode('utf-8')
    return hmac.new(key, message, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------------------------- stored values

def check_stored(name, kind, params, value, public=None):
    """Raise CorruptValueError if a stored value cannot be of ``kind``. Never puts the value in the message."""
    def bad(reason):
        raise CorruptValueError('stored secret %r is corrupt or not of kind %s: %s' % (name, kind, reason))

    if not value:
        bad('the file is empty')
    if kind not in PEM_KINDS and ('\n' in value or '\r' in value):
        bad('it contains a line break')
    if kind == 'hex':
        if not HEX_RE.match(value) or len(value) % 2:
            bad('not lowercase hexadecimal')
    elif kind in ('base64', 'urlsafe_base64'):
        pattern = B64_RE if kind == 'base64' else URLSAFE_B64_RE
        if not pattern.match(value) or len(value) % 4:
            bad('not valid %s' % kind)
        try:
            decoder = base64.b64decode if kind == 'base64' else base64.urlsafe_b64decode
            decoder(value.encode('ascii'))
        except (binascii.Error, ValueError):
            bad('not decodable')
    elif kind == 'api_key':
        prefix = params.get('prefix', 'sk-')
        if not value.startswith(prefix) or not HEX_RE.match(value[len(prefix):]):
            bad('expected %r followed by hexadecimal' % prefix)
    elif kind == 'password':
        allowed = set(PASSWORD_ALPHANUMERIC + PASSWORD_SYMBOLS)
        if any(c not in allowed for c in value):
            bad('it contains characters outside the password alphabet')
    elif kind == 'digest':
        prefixes = {'pbkdf2_sha512': '$pbkdf2-sha512$', 'argon2id': '$argon2id$', 'ldap_ssha': '{SSHA}',
                    'ldap_argon2': '{ARGON2}$argon2id$'}
        if not value.startswith(prefixes[params['scheme']]):
            bad('expected a %s digest' % params['scheme'])
    elif kind in ('rsa', 'ecdsa_p256'):
        try:
            key = serialization.load_pem_private_key(value.encode('ascii'), password=None)
        except (ValueError, TypeError, UnicodeEncodeError):
            bad('the PEM cannot be parsed as an unencrypted private key')
        if kind == 'rsa':
            if not isinstance(key, rsa.RSAPrivateKey):
                bad('the PEM holds no RSA key')
            if params.get('size') and key.key_size != params['size']:
                bad('RSA key size %d differs from the recorded %d' % (key.key_size, params['size']))
        elif not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != 'secp256r1':
            bad('the PEM holds no P-256 ECDSA key')
    elif kind == 'ssh_ed25519':
        try:
            key = serialization.load_ssh_private_key(value.encode('ascii'), password=None)
        except (ValueError, TypeError, UnicodeEncodeError):
            bad('the OpenSSH private key cannot be parsed')
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            bad('the OpenSSH key is not ed25519')
        if public is not None:
            expected = ssh_public_line(key).split()[:2]
            if public.split()[:2] != expected:
                bad('the .pub file does not match the private key')


def pem_single_line(pem):
    """The one-line transport form: line breaks become the two characters backslash-n."""
    return pem.rstrip('\n').replace('\r', '').replace('\n', '\\n')


# ------------------------------------------------------------------------------------------------ JWK / JWKS

def _b64url_uint(number):
    length = max(1, (number.bit_length() + 7) // 8)
    return base64.urlsafe_b64encode(number.to_bytes(length, 'big')).rstrip(b'=').decode('ascii')


def rsa_public_jwk(pem):
    # Only the public numbers are read here, so the RSA consistency check cryptography >= 39 runs on every load
    # (a fifth of a second for a 4096-bit key) is skipped; check_stored runs it when a stored key is read.
    try:
        key = serialization.load_pem_private_key(pem.encode('ascii'), password=None,
                                                 unsafe_skip_rsa_key_validation=True)
    except TypeError:  # cryptography < 39 (Debian 12 ships 38) has no such check and no such argument
        key = serialization.load_pem_private_key(pem.encode('ascii'), password=None)
    numbers = key.public_key().public_numbers()
    return {'kty': 'RSA', 'e': _b64url_uint(numbers.e), 'n': _b64url_uint(numbers.n)}


def jwk_thumbprint(jwk):
    """RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace, base64url unpadded."""
    required = {'RSA': ('e', 'kty', 'n'), 'EC': ('crv', 'kty', 'x', 'y'), 'OKP': ('crv', 'kty', 'x')}[jwk['kty']]
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(',', ':'), sort_keys=True)
    digest = hashlib.sha256(canonical.encode('utf-8')).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b'=').decode('ascii')
