# -*- coding: utf-8 -*-
# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The root-only secret store on the managed host.

Layout of a store directory (0700, owned by the user running the module, normally root)::

    .lock               empty file; flock()ed exclusively by writers, shared by readers
    .fingerprint-key    32 random bytes keying the HMAC fingerprints of derivation sources
    <name>              the value: exact text, no trailing newline for scalars, PEM text for keys
    <name>.pub          the public line of an ssh_ed25519 key pair
    <name>.meta         JSON metadata: kind, kind parameters, timestamps, never_rotate and, for derived values,
                        the source name and its keyed fingerprint. Never a value.

Every file is 0600. Names are restricted to ``[A-Za-z0-9][A-Za-z0-9_-]*`` so they can never collide with the
suffixed files, the dot files or escape the directory.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import stat
import time

from ansible_collections.datamancy.stack.plugins.module_utils.fileutil import (
    FileError, atomic_write, format_mode, lstat_or_none, validate_abs_path,
)
from ansible_collections.datamancy.stack.plugins.module_utils.generators import SpecError, validate_name

DIR_MODE = 0o700
FILE_MODE = 0o600
LOCK_NAME = '.lock'
KEY_NAME = '.fingerprint-key'
META_SUFFIX = '.meta'
PUB_SUFFIX = '.pub'
DEFAULT_STORE = '/etc/datamancy/secrets'
METADATA_FORMAT = 1


class StoreError(Exception):
    """Unusable store (bad path, not a directory, unreadable, foreign owner, corrupt metadata)."""


class SecretStore(object):
    """Access to one store directory. Methods never print or return values except read()."""

    def __init__(self, path, check_mode=False):
        try:
            self.path = validate_abs_path(path, 'store path')
        except FileError as exc:
            raise StoreError(str(exc))
        self.check_mode = check_mode
        self.uid = os.geteuid()
        self._lock_fd = None
        self.fixed_modes = []

    # ------------------------------------------------------------------------------------------ directory

    def inspect(self):
        """Validate the store path without changing anything. Returns True when the directory exists."""
        st = lstat_or_none(self.path)
        if st is None:
            parent = os.path.dirname(self.path)
            while parent and not os.path.lexists(parent):
                parent = os.path.dirname(parent)
            pst = os.lstat(parent)
            if not stat.S_ISDIR(pst.st_mode):
                raise StoreError('store path %s cannot be created: %s is not a directory' % (self.path, parent))
            return False
        if stat.S_ISLNK(st.st_mode):
            raise StoreError('store path %s is a symbolic link; refusing to follow it for a secret store' % self.path)
        if not stat.S_ISDIR(st.st_mode):
            raise StoreError('store path %s exists but is not a directory' % self.path)
        if st.st_uid != self.uid:
            raise StoreError('store directory %s is owned by uid %d, not by uid %d running this module; '
                             'refusing to use a store another user controls' % (self.path, st.st_uid, self.uid))
        if not os.access(self.path, os.R_OK | os.X_OK):
            raise StoreError('store directory %s is not readable' % self.path)
        try:
            os.listdir(self.path)
        except OSError as exc:
            raise StoreError('store directory %s is not readable: %s' % (self.path, exc.strerror))
        return True

    def ensure_dir(self):
        """Create the directory (0700) or correct its mode. Returns True when something changed."""
        st = lstat_or_none(self.path)
        if st is None:
            if self.check_mode:
                return True
            # Parents get the usual mode (they may hold other, non-secret things); only the store is 0700.
            parent = os.path.dirname(self.path)
            if not os.path.isdir(parent):
                os.makedirs(parent, 0o755)
            os.mkdir(self.path, DIR_MODE)
            os.chmod(self.path, DIR_MODE)
            return True
        if stat.S_IMODE(st.st_mode) != DIR_MODE:
            self.fixed_modes.append({'path': self.path, 'before': format_mode(st.st_mode),
                                     'after': format_mode(DIR_MODE)})
            if not self.check_mode:
                os.chmod(self.path, DIR_MODE)
            return True
        return False

    # -------------------------------------------------------------------------------------------- locking

    def lock(self, exclusive=True, timeout=60.0):
        """flock() the store's lock file so concurrent runs serialise. In check mode nothing is created."""
        lock_path = os.path.join(self.path, LOCK_NAME)
        if self._lock_fd is not None or not os.path.isdir(self.path):
            return
        if self.check_mode or not exclusive:
            if not os.path.exists(lock_path):
                return
            fd = os.open(lock_path, os.O_RDONLY | os.O_NOFOLLOW)
        else:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
        mode = fcntl.LOCK_EX if exclusive and not self.check_mode else fcntl.LOCK_SH
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise StoreError('timed out after %.0fs waiting for the lock on %s (another run is writing the '
                                     'store)' % (timeout, lock_path))
                time.sleep(0.1)
        self._lock_fd = fd

    def unlock(self):
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # --------------------------------------------------------------------------------------------- files

    def file_path(self, name, suffix=''):
        validate_name(name)
        return os.path.join(self.path, name + suffix)

    def _read_file(self, path):
        """Read a store file; it must be a regular file owned by us. A mode other than 0600 is corrected."""
        st = lstat_or_none(path)
        if st is None:
            return None
        if not stat.S_ISREG(st.st_mode):
            raise StoreError('%s is not a regular file' % path)
        if st.st_uid != self.uid:
            raise StoreError('%s is owned by uid %d, not %d' % (path, st.st_uid, self.uid))
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, 'rb') as handle:
                data = handle.read()
        except OSError as exc:
            raise StoreError('cannot read %s: %s' % (path, exc.strerror))
        if stat.S_IMODE(st.st_mode) != FILE_MODE:
            self.fixed_modes.append({'path': path, 'before': format_mode(st.st_mode), 'after': format_mode(FILE_MODE)})
        try:
            return data.decode('utf-8')
        except UnicodeDecodeError:
            raise StoreError('%s is not UTF-8 text' % path)

    def list_names(self):
        """Names of the values in the store (files without a suffix, skipping dot files)."""
        if not os.path.isdir(self.path):
            return []
        names = []
        for entry in sorted(os.listdir(self.path)):
            if entry.startswith('.') or entry.endswith(META_SUFFIX) or entry.endswith(PUB_SUFFIX):
                continue
            try:
                names.append(validate_name(entry))
            except SpecError:
                continue  # not ours (a name this module could not have written); leave it alone
        return names

    def exists(self, name):
        return os.path.lexists(self.file_path(name))

    def read(self, name):
        return self._read_file(self.file_path(name))

    def read_public(self, name):
        return self._read_file(self.file_path(name, PUB_SUFFIX))

    def read_meta(self, name):
        text = self._read_file(self.file_path(name, META_SUFFIX))
        if text is None:
            return None
        try:
            meta = json.loads(text)
        except ValueError:
            raise StoreError('metadata %s is not valid JSON' % self.file_path(name, META_SUFFIX))
        if not isinstance(meta, dict) or 'kind' not in meta:
            raise StoreError('metadata %s has no kind' % self.file_path(name, META_SUFFIX))
        return meta

    def _write(self, path, text):
        if self.check_mode:
            return
        atomic_write(path, text.encode('utf-8'), FILE_MODE)

    def write(self, name, value):
        self._write(self.file_path(name), value)

    def write_public(self, name, value):
        self._write(self.file_path(name, PUB_SUFFIX), value)

    def write_meta(self, name, meta):
        meta = dict(meta, format=METADATA_FORMAT)
        self._write(self.file_path(name, META_SUFFIX), json.dumps(meta, sort_keys=True, indent=2) + '\n')

    def remove(self, name, suffix=''):
        if self.check_mode:
            return
        try:
            os.unlink(self.file_path(name, suffix))
        except FileNotFoundError:
            pass

    def apply_fixed_modes(self):
        if self.check_mode:
            return
        for item in self.fixed_modes:
            if os.path.lexists(item['path']) and not os.path.islink(item['path']):
                os.chmod(item['path'], int(item['after'], 8))

    def fingerprint_key(self):
        """The HMAC key for source fingerprints, or None when the store has none yet."""
        path = os.path.join(self.path, KEY_NAME)
        st = lstat_or_none(path)
        if st is None:
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_uid != self.uid:
            raise StoreError('%s must be a regular file owned by uid %d' % (path, self.uid))
        with open(path, 'rb') as handle:
            key = handle.read()
        if len(key) < 32:
            raise StoreError('%s is truncated' % path)
        return key

    def write_fingerprint_key(self, key):
        if not self.check_mode:
            atomic_write(os.path.join(self.path, KEY_NAME), key, FILE_MODE)


def new_fingerprint_key():
    return secrets.token_bytes(32)
