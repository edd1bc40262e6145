#!/bin/bash
# Prepare LAM's configuration directory, then run the given command (apache in the foreground).
# - Missing non-secret defaults (templates, language list, samples, .htaccess) are copied in, so an empty
#   mounted directory works; files already there are never overwritten.
# - config.cfg (master configuration password) and lam.conf (server profile) are what a role writes. When
#   one is missing it is created with a random password that is never shown, i.e. locked, so the image has
#   no well-known default password.
set -euo pipefail
config_dir=/var/lib/ldap-account-manager/config
defaults=/usr/share/ldap-account-manager/image-default-config
log() { echo "lam-entrypoint: $*" >&2; }

# LAM's {SSHA} format: base64(sha1(password + salt)) followed by a space and base64(salt).
random_ssha() {
  python3 -c 'import base64, hashlib, os; p = os.urandom(32); s = os.urandom(8); print("{SSHA}" + base64.b64encode(hashlib.sha1(p + s).digest()).decode() + " " + base64.b64encode(s).decode())'
}

writable=true
if ! touch "$config_dir/.lam-write-test" 2>/dev/null; then writable=false; else rm -f "$config_dir/.lam-write-test"; fi

if $writable; then
  cp -a -n "$defaults/." "$config_dir/"
  if [[ ! -e "$config_dir/config.cfg" ]]; then
    log "no config.cfg mounted: writing one with a random master password (configuration pages locked)"
    umask 077
    {
      echo "password: $(random_ssha)"
      echo "default: lam"
      echo "logLevel: 4"
      echo "logDestination: SYSLOG"
      echo "configDatabaseType: files"
    } >"$config_dir/config.cfg"
  fi
  if ! compgen -G "$config_dir/*.conf" | grep -qv '\.sample\.conf$'; then
    log "no server profile mounted: writing lam.conf for ${LAM_LDAP_URL:-ldap://ldap:389} with a random profile password"
    umask 077
    base_dn=${LAM_BASE_DN:-dc=stack,dc=local}
    sed -e "s|^ServerURL: .*|ServerURL: ${LAM_LDAP_URL:-ldap://ldap:389}|" \
        -e "s|^Admins: .*|Admins: cn=admin,${base_dn}|" \
        -e "s|^Passwd: .*|Passwd: $(random_ssha)|" \
        -e "s|dc=my-domain,dc=com|${base_dn}|g; s|dc=yourdomain,dc=org|${base_dn}|g" \
        -e "s|^types: suffix_user: ou=People,|types: suffix_user: ou=users,|" \
        -e "s|^types: suffix_group: ou=group,|types: suffix_group: ou=groups,|" \
        "$defaults/unix.sample.conf" >"$config_dir/lam.conf"
  fi
  # LAM (www-data) must read its config and may write it from the configuration pages.
  chown -R www-data:www-data "$config_dir"
  chmod 0700 "$config_dir"
  find "$config_dir" -maxdepth 1 \( -name '*.conf' -o -name 'config.cfg' \) -exec chmod 0600 {} +
else
  log "$config_dir is not writable (read-only mount or missing capabilities): using the files as they are"
fi
install -d -o www-data -g www-data -m 0700 /var/lib/ldap-account-manager/sess /var/lib/ldap-account-manager/tmp
install -d -o www-data -g www-data -m 0700 /var/lib/ldap-account-manager/tmp/internal
install -d -m 0755 /run/apache2 /run/lock/apache2
if [[ "${1:-}" == apache2 ]]; then
  # What apache2ctl would do, but exec'd so apache is tini's direct child and gets its signals:
  # envvars sets the worker user (www-data), pid file and lock directory.
  # envvars reads variables that may be unset; relax nounset only while sourcing it.
  set +u
  # shellcheck disable=SC1091
  . /etc/apache2/envvars
  set -u
  rm -f "${APACHE_PID_FILE:-/run/apache2/apache2.pid}"
fi
exec "$@"
