#!/usr/bin/env bash
# First start (both volumes empty): build cn=config and the suffix entry offline with slapadd. Later starts
# leave all data untouched; the role's reconcile program (ldap-reconcile) manages entries and ACLs over
# ldapi:/// afterwards. Then slapd runs in the foreground. Works unprivileged (the image's default user is
# openldap and the volumes are pre-owned by it); started as root it drops to openldap.
#
# Environment:
#   LDAP_BASE_DN                   suffix, default dc=stack,dc=local (admin DN is cn=admin,<suffix>)
#   LDAP_ORGANISATION              o= of the suffix entry
#   LDAP_ADMIN_PASSWORD_HASH_FILE  file holding the admin password's {SSHA} hash (preferred: no plaintext)
#   LDAP_ADMIN_PASSWORD_FILE       or a file holding the plaintext, hashed here (first start only)
#   LDAP_LOG_LEVEL                 slapd log level written to stderr, default "stats"
set -euo pipefail

base_dn=${LDAP_BASE_DN:-dc=stack,dc=local}
organisation=${LDAP_ORGANISATION:-Datamancy Stack}
config_dir=/etc/ldap/slapd.d
data_dir=/var/lib/ldap
run_dir=/run/slapd
log() { echo "ldap-entrypoint: $*" >&2; }

is_empty() { [[ -z "$(ls -A "$1" 2>/dev/null)" ]]; }

as_ldap() {
  if [[ $(id -u) -eq 0 ]]; then setpriv --reuid=openldap --regid=openldap --init-groups -- "$@"; else "$@"; fi
}

admin_hash() {
  # Prints the {SSHA} hash of the admin password; the plaintext (if given) never reaches argv or the log.
  local hash_file=${LDAP_ADMIN_PASSWORD_HASH_FILE:-} password_file=${LDAP_ADMIN_PASSWORD_FILE:-} hash
  if [[ -n "$hash_file" && -r "$hash_file" ]]; then
    hash=$(<"$hash_file")
    if [[ "$hash" != "{"* ]]; then log "${hash_file} does not hold a {SCHEME} hash"; return 1; fi
    printf '%s' "$hash"
  elif [[ -n "$password_file" && -r "$password_file" ]]; then
    if [[ ! -s "$password_file" ]]; then log "the admin password file is empty"; return 1; fi
    # slappasswd -T hashes the file's content exactly; strip one trailing newline first (echo > file).
    local tmp
    tmp=$(mktemp)
    printf '%s' "$(<"$password_file")" >"$tmp"
    slappasswd -h '{SSHA}' -T "$tmp"
    rm -f "$tmp"
  else
    log "first start needs LDAP_ADMIN_PASSWORD_HASH_FILE or LDAP_ADMIN_PASSWORD_FILE pointing at a readable file"
    return 1
  fi
}

initialise() {
  if [[ ! "$base_dn" =~ ^dc=([a-zA-Z0-9-]+)(,dc=[a-zA-Z0-9-]+)*$ ]]; then
    log "LDAP_BASE_DN must be a dc=...,dc=... suffix, got '${base_dn}'"
    exit 1
  fi
  local first_dc=${BASH_REMATCH[1]} hash work
  hash=$(admin_hash)
  umask 077
  work=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT

  local ldap_uid ldap_gid
  ldap_uid=$(id -u openldap); ldap_gid=$(id -g openldap)
  # Only local processes of root or the openldap user (SASL EXTERNAL over ldapi) may manage the directory and
  # its configuration. Until the role's reconcile program installs the full ACLs, nobody else reads anything.
  local peers="by dn.exact=gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth manage"
  peers+=" by dn.exact=gidNumber=${ldap_gid}+uidNumber=${ldap_uid},cn=peercred,cn=external,cn=auth manage"

  cat >"$work/config.ldif" <<LDIF
dn: cn=config
objectClass: olcGlobal
cn: config
olcArgsFile: ${run_dir}/slapd.args
olcPidFile: ${run_dir}/slapd.pid
olcPasswordHash: {SSHA}
olcDisallows: bind_anon
olcRequires: authc

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb
olcModuleLoad: memberof

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif

include: file:///etc/ldap/schema/cosine.ldif

include: file:///etc/ldap/schema/nis.ldif

include: file:///etc/ldap/schema/inetorgperson.ldif

dn: olcDatabase={-1}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {-1}frontend
olcSizeLimit: 500
olcAccess: {0}to * ${peers} by * break
olcAccess: {1}to dn.exact="" by * read
olcAccess: {2}to dn.base="cn=Subschema" by * read

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
olcAccess: {0}to * ${peers} by * none

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcDbDirectory: ${data_dir}
olcSuffix: ${base_dn}
olcRootDN: cn=admin,${base_dn}
olcRootPW: ${hash}
olcDbMaxSize: 1073741824
olcDbIndex: objectClass eq
olcDbIndex: cn,uid,mail eq,sub
olcDbIndex: member,memberUid eq
olcDbIndex: uidNumber,gidNumber eq
olcLastMod: TRUE
olcAccess: {0}to * ${peers} by * break
olcAccess: {1}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {2}to * by * none

dn: olcOverlay={0}memberof,olcDatabase={1}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcMemberOf
olcOverlay: {0}memberof
olcMemberOfDangling: ignore
olcMemberOfRefInt: TRUE
olcMemberOfGroupOC: groupOfNames
olcMemberOfMemberAD: member
olcMemberOfMemberOfAD: memberOf
LDIF

  cat >"$work/base.ldif" <<LDIF
dn: ${base_dn}
objectClass: top
objectClass: dcObject
objectClass: organization
dc: ${first_dc}
o: ${organisation}
LDIF

  [[ $(id -u) -eq 0 ]] && chown -R openldap:openldap "$work"
  as_ldap slapadd -q -n 0 -F "$config_dir" -l "$work/config.ldif"
  as_ldap slapadd -q -n 1 -F "$config_dir" -l "$work/base.ldif"
  rm -rf "$work"
  trap - EXIT
  log "initialised ${base_dn} (admin cn=admin,${base_dn})"
}

if [[ $(id -u) -eq 0 ]]; then
  install -d -o openldap -g openldap -m 0750 "$run_dir"
  chown openldap:openldap "$config_dir" "$data_dir"
elif [[ ! -w "$run_dir" ]]; then
  log "${run_dir} is not writable by $(id -un); give the container a tmpfs there (read-only root filesystem)"
  exit 1
fi

if is_empty "$config_dir"; then
  if ! is_empty "$data_dir"; then
    # Never guess: a data directory without its configuration is a broken restore, not a first start.
    log "${data_dir} holds data but ${config_dir} is empty; refusing to initialise over it"
    exit 1
  fi
  initialise
else
  log "existing configuration found, starting without changes"
fi

if [[ $# -gt 0 ]]; then
  exec "$@"
fi

slapd_args=(-h "ldap:/// ldapi:///" -F "$config_dir" -d "${LDAP_LOG_LEVEL:-stats}")
if [[ $(id -u) -eq 0 ]]; then
  slapd_args+=(-u openldap -g openldap)
fi
exec /usr/sbin/slapd "${slapd_args[@]}"
