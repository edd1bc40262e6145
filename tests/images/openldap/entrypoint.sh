#!/bin/bash
# First start (both volumes empty): build cn=config and the suffix entry offline with slapadd, using the
# admin password read from LDAP_ADMIN_PASSWORD_FILE (hashed, never logged). Later starts leave all data
# untouched. Then slapd runs in the foreground as the openldap user.
#
# Environment:
#   LDAP_BASE_DN              suffix, default dc=stack,dc=local (admin DN is cn=admin,<suffix>)
#   LDAP_ORGANISATION         o= of the suffix entry
#   LDAP_ADMIN_PASSWORD_FILE  file holding the admin password (first start only)
#   LDAP_LOG_LEVEL            slapd debug/log level written to stderr, default "stats"
#   /etc/ldap/seed.d/*.ldif   optional entries slapadd-ed into the suffix on first start (sorted by name)
set -euo pipefail

base_dn=${LDAP_BASE_DN:-dc=stack,dc=local}
organisation=${LDAP_ORGANISATION:-Datamancy Stack}
config_dir=/etc/ldap/slapd.d
data_dir=/var/lib/ldap
log() { echo "ldap-entrypoint: $*" >&2; }

is_empty() { [[ -z "$(ls -A "$1" 2>/dev/null)" ]]; }

run_as_ldap() {
  # Run as openldap whether we started as root (drop privileges) or already as openldap.
  if [[ $(id -u) -eq 0 ]]; then setpriv --reuid=openldap --regid=openldap --init-groups -- "$@"; else "$@"; fi
}

initialise() {
  local password_file=${LDAP_ADMIN_PASSWORD_FILE:-}
  if [[ -z "$password_file" || ! -r "$password_file" ]]; then
    log "first start needs a readable admin password file (LDAP_ADMIN_PASSWORD_FILE='${password_file}')"
    exit 1
  fi
  if [[ ! "$base_dn" =~ ^dc=([^,=]+)(,dc=[^,=]+)*$ ]]; then
    log "LDAP_BASE_DN must be a dc=...,dc=... suffix, got '${base_dn}'"
    exit 1
  fi
  local first_dc=${BASH_REMATCH[1]}
  local work
  umask 077
  work=$(mktemp -d)
  chmod 0700 "$work"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT

  # The password file may end with a newline (echo > file); strip exactly one so the hash matches
  # what clients send. slappasswd -T reads it from a file, so it never appears in argv.
  local password
  password=$(<"$password_file")
  if [[ -z "$password" ]]; then log "the admin password file is empty"; exit 1; fi
  printf '%s' "$password" >"$work/pw"
  unset password
  local hash
  hash=$(slappasswd -h '{SSHA}' -T "$work/pw")
  rm -f "$work/pw"

  local root_peer='gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth'
  local ldap_uid ldap_gid
  ldap_uid=$(id -u openldap); ldap_gid=$(id -g openldap)
  local ldap_peer="gidNumber=${ldap_gid}+uidNumber=${ldap_uid},cn=peercred,cn=external,cn=auth"

  cat >"$work/config.ldif" <<LDIF
dn: cn=config
objectClass: olcGlobal
cn: config
olcArgsFile: /run/slapd/slapd.args
olcPidFile: /run/slapd/slapd.pid
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
olcAccess: {0}to * by dn.exact=${root_peer} manage by dn.exact=${ldap_peer} manage by * break
olcAccess: {1}to dn.exact="" by * read
olcAccess: {2}to dn.base="cn=Subschema" by * read

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
olcAccess: {0}to * by dn.exact=${root_peer} manage by dn.exact=${ldap_peer} manage by * break

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
olcAccess: {0}to * by dn.exact=${root_peer} manage by dn.exact=${ldap_peer} manage by * break
olcAccess: {1}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {2}to attrs=shadowLastChange by self write by users read by * none
olcAccess: {3}to * by users read by * none

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

  chown -R openldap:openldap "$work" 2>/dev/null || true
  run_as_ldap slapadd -n 0 -F "$config_dir" -l "$work/config.ldif"
  run_as_ldap slapadd -n 1 -F "$config_dir" -l "$work/base.ldif"
  local seed
  for seed in /etc/ldap/seed.d/*.ldif; do
    [[ -e "$seed" ]] || continue
    log "loading seed $(basename "$seed")"
    run_as_ldap slapadd -n 1 -F "$config_dir" -l "$seed"
  done
  rm -rf "$work"
  trap - EXIT
  log "initialised ${base_dn} (admin cn=admin,${base_dn})"
}

if [[ $(id -u) -eq 0 ]]; then
  install -d -o openldap -g openldap -m 0750 /run/slapd
  chown openldap:openldap "$config_dir" "$data_dir"
fi

if is_empty "$config_dir"; then
  if ! is_empty "$data_dir"; then
    # Never guess: a data directory without its config is a broken restore, not a first start.
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
