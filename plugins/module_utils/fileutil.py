# -*- coding: utf-8 -*-
# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""File helpers shared by the secret-handling modules.

Everything here works on the managed host. Writes are atomic (temporary file in the target directory, fsync,
rename, fsync of the directory) so a crash or a concurrent reader never sees a half-written secret, and the final
mode/owner are applied to the temporary file *before* the rename so the secret is never visible with a wider mode.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import tempfile


class FileError(Exception):
    """A filesystem problem reported to the user via fail_json."""


def fsync_dir(path):
    """Persist a rename: the directory entry must reach the disk too, not only the file data."""
    fd = os.open(path, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path, data, mode=0o600, uid=None, gid=None):
    """Replace ``path`` with ``data`` (bytes) atomically, with ``mode`` and ownership set before it appears."""
    directory = os.path.dirname(path) or '.'
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-', suffix='.part')
    try:
        # mkstemp already creates 0600; fchmod makes the final mode explicit and independent of the umask.
        os.fchmod(fd, mode)
        if uid is not None or gid is not None:
            os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    os.close(fd)
    try:
        os.rename(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(directory)


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def lstat_or_none(path):
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def resolve_uid(owner):
    """Owner given as a name or a numeric string/int -> uid; None stays None (keep whatever is there)."""
    if owner is None or owner == '':
        return None
    if isinstance(owner, int) or str(owner).isdigit():
        return int(owner)
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise FileError('unknown owner %r on this host' % owner)


def resolve_gid(group):
    if group is None or group == '':
        return None
    if isinstance(group, int) or str(group).isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise FileError('unknown group %r on this host' % group)


def parse_mode(mode):
    """Accept '0600', '600', 0o600 (int). Symbolic modes are refused: secrets need an exact, reviewable mode."""
    if mode is None:
        return None
    if isinstance(mode, int):
        value = mode
    else:
        text = str(mode).strip()
        if not text or any(c not in '01234567' for c in text) or len(text) > 5:
            raise FileError('mode %r must be an octal string such as "0600"' % (mode,))
        value = int(text, 8)
    if value < 0 or value > 0o7777:
        raise FileError('mode %r is out of range' % (mode,))
    return value


def format_mode(value):
    return '%04o' % stat.S_IMODE(value)


def owner_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def validate_abs_path(path, what='path'):
    """Absolute, normalised, no '..' components, not '/': a relative or sloppy path for a secret is an error."""
    if not isinstance(path, str) or not path:
        raise FileError('%s must be a non-empty string' % what)
    if '\x00' in path or '\n' in path:
        raise FileError('%s contains a NUL or newline character' % what)
    if not os.path.isabs(path):
        raise FileError('%s %r must be an absolute path' % (what, path))
    if '..' in path.split('/'):
        raise FileError('%s %r must not contain ".." components' % (what, path))
    normalised = os.path.normpath(path)
    if normalised == '/':
        raise FileError('%s must not be the filesystem root' % what)
    return normalised
