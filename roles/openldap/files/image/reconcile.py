#!/usr/bin/python3
"""Bring the directory to the state the datamancy.stack.openldap role declares, without ever wiping it.

    ldap-reconcile [--check] DESIRED.json   (- reads it from stdin)

Connects over ldapi:/// with SASL EXTERNAL (the openldap user manages the directory by the image's ACLs), reads
the desired state the role renders (no secret in it: password hashes are named as files under /run/secrets),
and adds or modifies what differs:

- the database's ACLs (olcAccess) and the admin's password hash (olcRootPW);
- entries with the attributes the role manages (other attributes, e.g. set through LAM, are left alone);
  ``initial`` attributes, such as a user's first password, are written only when the entry is created, so a
  password the user changed is never reset;
- group membership of the users the role declares; members added by other means stay;
- users under the prune base that the role does not declare are deleted only with ``prune``.

Prints one JSON object {"changed", "added", "modified", "deleted"} naming DNs and attribute names, never values.
With --check nothing is written and the same report says what would change.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time

import ldap
import ldap.dn
import ldap.filter
import ldap.modlist

PEER_ACL = (
    "to * by dn.exact=gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth manage "
    "by dn.exact=gidNumber={gid}+uidNumber={uid},cn=peercred,cn=external,cn=auth manage by * break"
)
_ACL_INDEX = re.compile(r"^\{\d+\}")


class Reconciler:
    def __init__(self, conn, desired, check):
        self.conn = conn
        self.desired = desired
        self.check = check
        self.report = {"changed": False, "added": [], "modified": [], "deleted": []}

    # --- helpers -------------------------------------------------------------------------------------------

    def _read(self, dn, attrs=None):
        try:
            result = self.conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", attrs)
        except ldap.NO_SUCH_OBJECT:
            return None
        return {k.lower(): [v.decode("utf-8") for v in vals] for k, vals in result[0][1].items()}

    def _children(self, base, filterstr, attrs):
        try:
            result = self.conn.search_s(base, ldap.SCOPE_ONELEVEL, filterstr, attrs)
        except ldap.NO_SUCH_OBJECT:
            return []
        return [(dn, {k.lower(): [v.decode("utf-8") for v in vals] for k, vals in entry.items()})
                for dn, entry in result]

    @staticmethod
    def _secret(path):
        with open(path, encoding="utf-8") as handle:
            value = handle.read().strip()
        if not value:
            raise ValueError("secret file %s is empty" % path)
        return value

    @staticmethod
    def norm_dn(dn):
        return ldap.dn.dn2str(
            [[(attr.lower(), value.lower(), flag) for attr, value, flag in rdn] for rdn in ldap.dn.str2dn(dn)])

    def _mark(self, kind, name):
        self.report["changed"] = True
        if name not in self.report[kind]:
            self.report[kind].append(name)

    def _modify(self, dn, mods, label=None):
        if not mods:
            return
        self._mark("modified", label or dn)
        if not self.check:
            self.conn.modify_s(dn, mods)

    # --- configuration (cn=config) ---------------------------------------------------------------------------

    def _database_dn(self):
        base = self.desired["base_dn"]
        found = self.conn.search_s("cn=config", ldap.SCOPE_ONELEVEL,
                                   "(&(objectClass=olcDatabaseConfig)(olcSuffix=%s))"
                                   % ldap.filter.escape_filter_chars(base), ["olcSuffix"])
        if not found:
            raise RuntimeError("no database with suffix %s in cn=config (was the volume created for another base DN?)"
                               % base)
        return found[0][0]

    def config(self, uid, gid):
        db_dn = self._database_dn()
        current = self._read(db_dn, ["olcAccess", "olcRootPW"]) or {}
        want_acl = [PEER_ACL.format(uid=uid, gid=gid)] + list(self.desired.get("access", []))
        have_acl = [_ACL_INDEX.sub("", value) for value in current.get("olcaccess", [])]
        mods = []
        if [" ".join(a.split()) for a in have_acl] != [" ".join(a.split()) for a in want_acl]:
            mods.append((ldap.MOD_REPLACE, "olcAccess",
                         [("{%d}%s" % (i, acl)).encode("utf-8") for i, acl in enumerate(want_acl)]))
        hash_file = self.desired.get("root_password_hash_file")
        if hash_file:
            root_pw = self._secret(hash_file)
            if current.get("olcrootpw") != [root_pw]:
                mods.append((ldap.MOD_REPLACE, "olcRootPW", [root_pw.encode("utf-8")]))
        self._modify(db_dn, mods, label="%s (%s)" % (db_dn, ", ".join(m[1] for m in mods)) if mods else None)

    # --- entries -------------------------------------------------------------------------------------------

    def _next_id(self):
        """Lowest free uidNumber at or above id_min, never reusing a number an existing entry holds."""
        used = set()
        for _dn, entry in self.conn.search_s(self.desired["base_dn"], ldap.SCOPE_SUBTREE,
                                             "(|(uidNumber=*)(gidNumber=*))", ["uidNumber", "gidNumber"]):
            for key in ("uidNumber", "gidNumber"):
                used.update(int(v) for v in entry.get(key, []))
        used.update(self._allocated)
        number = int(self.desired.get("id_min", 10000))
        while number in used:
            number += 1
        self._allocated.add(number)
        return number

    def entry(self, spec):
        dn = spec["dn"]
        current = self._read(dn, ["*"])
        attrs = {k: [str(v) for v in vals] for k, vals in spec.get("attributes", {}).items()}
        for attr, path in spec.get("secret_attributes", {}).items():
            attrs[attr] = [self._secret(path)]
        posix = spec.get("posix")
        if current is None:
            attrs["objectClass"] = list(spec["object_classes"])
            for attr, vals in spec.get("initial", {}).items():
                attrs.setdefault(attr, [str(v) for v in vals])
            for attr, path in spec.get("initial_secret_attributes", {}).items():
                attrs.setdefault(attr, [self._secret(path)])
            if "shadowaccount" in {oc.lower() for oc in spec["object_classes"]}:
                # Days since the epoch: the password was (initially) set today.
                attrs.setdefault("shadowLastChange", [str(int(time.time() // 86400))])
            if posix is not None:
                uid_number = posix.get("uid_number") or self._next_id()
                attrs["uidNumber"] = [str(uid_number)]
                attrs["gidNumber"] = [str(posix.get("gid_number") or uid_number)]
            self._mark("added", dn)
            if not self.check:
                self.conn.add_s(dn, ldap.modlist.addModlist(
                    {k: [v.encode("utf-8") for v in vals] for k, vals in attrs.items()}))
            return
        mods = []
        have_oc = {oc.lower() for oc in current.get("objectclass", [])}
        missing_oc = [oc for oc in spec["object_classes"] if oc.lower() not in have_oc]
        if missing_oc:
            mods.append((ldap.MOD_ADD, "objectClass", [oc.encode("utf-8") for oc in missing_oc]))
        if posix is not None:
            for key, attr in (("uid_number", "uidNumber"), ("gid_number", "gidNumber")):
                if posix.get(key):
                    attrs[attr] = [str(posix[key])]
        for attr, vals in sorted(attrs.items()):
            if current.get(attr.lower()) != vals:
                mods.append((ldap.MOD_REPLACE, attr, [v.encode("utf-8") for v in vals]))
        self._modify(dn, mods, label=dn)

    def group(self, spec, pruned):
        dn = spec["dn"]
        current = self._read(dn, ["member"]) or {}
        placeholder = spec["placeholder"]
        declared = {self.norm_dn(m): m for m in spec.get("members", [])}
        managed = {self.norm_dn(m) for m in spec.get("managed", [])} | {self.norm_dn(m) for m in pruned}
        keep = {}
        for member in current.get("member", []):
            key = self.norm_dn(member)
            if key in managed and key not in declared:
                continue
            keep[key] = member
        for key, member in declared.items():
            keep.setdefault(key, member)
        real = {k: v for k, v in keep.items() if k != self.norm_dn(placeholder)}
        # groupOfNames needs at least one member: an otherwise empty group holds a placeholder DN no one has.
        want = sorted(real.values(), key=str.lower) if real else [placeholder]
        have = current.get("member", [])
        if sorted(self.norm_dn(m) for m in have) != sorted(self.norm_dn(m) for m in want):
            self._modify(dn, [(ldap.MOD_REPLACE, "member", [m.encode("utf-8") for m in want])], label=dn)

    def run(self, uid, gid):
        self._allocated = set()
        self.config(uid, gid)
        for spec in self.desired.get("entries", []):
            self.entry(spec)
        prune = self.desired.get("prune") or {}
        pruned = []
        if prune.get("enabled"):
            declared = {self.norm_dn(dn) for dn in prune.get("keep", [])}
            for dn, _entry in self._children(prune["base"], "(objectClass=*)", ["1.1"]):
                if self.norm_dn(dn) not in declared:
                    pruned.append(dn)
        for spec in self.desired.get("groups", []):
            entry = {"dn": spec["dn"], "object_classes": spec["object_classes"],
                     "attributes": spec.get("attributes", {})}
            if self._read(spec["dn"], ["1.1"]) is None:
                members = sorted(spec.get("members") or [spec["placeholder"]], key=str.lower)
                self.entry(dict(entry, initial={"member": members}))
            else:
                self.entry(entry)
                self.group(spec, pruned)
        for dn in pruned:
            self._mark("deleted", dn)
            if not self.check:
                self.conn.delete_s(dn)
        return self.report


def main(argv):
    check = "--check" in argv
    paths = [a for a in argv if not a.startswith("--")]
    if len(paths) != 1:
        print("usage: ldap-reconcile [--check] DESIRED.json", file=sys.stderr)
        return 2
    try:
        if paths[0] == "-":
            desired = json.load(sys.stdin)
        else:
            with open(paths[0], encoding="utf-8") as handle:
                desired = json.load(handle)
    except (OSError, ValueError) as error:
        print(json.dumps({"failed": True, "msg": "ldap-reconcile: cannot read the desired state: %s" % error}))
        return 1
    conn = ldap.initialize("ldapi:///")
    conn.protocol_version = ldap.VERSION3
    try:
        conn.sasl_non_interactive_bind_s("EXTERNAL")
        report = Reconciler(conn, desired, check).run(os.getuid(), os.getgid())
    except (ldap.LDAPError, OSError, ValueError, RuntimeError) as error:
        # LDAP errors carry the server's diagnostic (DN, attribute, reason), never an attribute value.
        detail = error.args[0] if isinstance(error, ldap.LDAPError) and error.args else str(error)
        if isinstance(detail, dict):
            detail = {k: v for k, v in detail.items() if k in ("desc", "info", "matched")}
        print(json.dumps({"failed": True, "msg": "ldap-reconcile: %s" % (detail,)}))
        return 1
    finally:
        conn.unbind_s()
    report["check_mode"] = check
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
