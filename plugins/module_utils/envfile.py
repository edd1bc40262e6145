# -*- coding: utf-8 -*-
# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""KEY=VALUE env files readable by docker, docker compose and systemd, and their redacted diff form.

Quoting rule (format ``compose``, the default), chosen so one file reads the same in every consumer we use:

1. A value made only of ``A-Z a-z 0-9 _ . / : @ + = , % ^ ~ -`` (or an empty value) is written bare. Every
   generated secret kind falls in this class, and a bare value means the same thing to ``docker run --env-file``
   (which never strips quotes), compose ``env_file``/``.env`` and systemd ``EnvironmentFile=``.
2. Anything else without a single quote or line break is single-quoted: compose and systemd both take single-quoted
   text literally (no ``$`` interpolation, no backslash escapes), so ``$``, ``#``, spaces, ``"`` and ``\\`` survive.
3. A value with a single quote but none of ``$ \\ ` "`` is double-quoted: in that subset double quotes mean the same
   to compose (which would interpolate ``$`` and process escapes) and to systemd.
4. Anything else (a single quote together with ``$``/backslash/backtick/double quote, a line break, NUL) has no
   portable spelling and is refused. Multi-line PEM values use the single-line form (``\\n`` as two characters),
   which rule 2 then quotes; otherwise mount the secret as a file and use a ``*_FILE`` variable.

Format ``raw`` writes values unquoted for consumers that never unquote (``docker run --env-file``, compose
``format: raw``); it refuses line breaks only.
"""

from __future__ import annotations

import hashlib
import re

KEY_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*\Z')
BARE_RE = re.compile(r'^[A-Za-z0-9_./:@+=,%^~-]*\Z')
HEADER = '# Managed by Ansible (datamancy.stack.env_file). Manual changes are overwritten.\n'


class EnvFileError(Exception):
    pass


def quote_value(key, value, fmt='compose'):
    if '\x00' in value:
        raise EnvFileError('value of %s contains a NUL character' % key)
    if '\n' in value or '\r' in value:
        raise EnvFileError('value of %s spans several lines; set single_line=true (PEM transport form with \\n) '
                           'or mount it as a file and use a *_FILE variable' % key)
    if fmt == 'raw':
        return value
    if BARE_RE.match(value):
        return value
    if "'" not in value:
        return "'" + value + "'"
    if not any(c in value for c in '$\\`"'):
        return '"' + value + '"'
    raise EnvFileError('value of %s contains a single quote together with one of $ \\ ` "; no quoting reads the '
                       'same in docker compose and systemd, so it is refused' % key)


def unquote_value(text):
    """Inverse of quote_value for the compose format (used by tests and to compare parsed files)."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in '\'"':
        return text[1:-1]
    return text


def render(lines, header=True):
    """``lines`` is a list of (key, quoted_value). Returns the file text."""
    out = [HEADER] if header else []
    out.extend('%s=%s\n' % (key, quoted) for key, quoted in lines)
    return ''.join(out)


def parse(text):
    """Split an env file into (key, raw_value) pairs; comments and blank lines are skipped."""
    pairs = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith('#') or '=' not in stripped:
            continue
        key, raw = stripped.split('=', 1)
        if key.startswith('export '):
            key = key[len('export '):].strip()
        pairs.append((key.strip(), raw))
    return pairs


def fingerprint(raw):
    """Short, non-reversible marker so a diff shows *that* a redacted value changed, never the value."""
    return hashlib.sha256(raw.encode('utf-8')).hexdigest()[:12]


def redact_line(key, raw):
    return '%s=<redacted:sha256:%s>' % (key, fingerprint(raw))


def redacted_text(text, plain_keys):
    """The file as shown in a diff: every value whose key is not known to be plain is replaced by a marker.

    Keys not in ``plain_keys`` (including keys that are no longer managed) are redacted: an unknown line in an env
    file is more likely a secret than not.
    """
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or line + '\n' == HEADER:
            out.append(line)
            continue
        if stripped.startswith('#') or '=' not in stripped:
            # A foreign comment or stray line may hold a commented-out secret: show only that it exists.
            out.append('# <line redacted:sha256:%s>' % fingerprint(stripped))
            continue
        key, raw = stripped.split('=', 1)
        if key in plain_keys:
            out.append(stripped)
        else:
            out.append(redact_line(key, raw))
    return '\n'.join(out) + ('\n' if out else '')
