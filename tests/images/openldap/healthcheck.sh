#!/bin/sh
# Healthy = slapd answers a base-scope search on the configured suffix over the local socket
# (SASL EXTERNAL: root or the openldap user in the container, no password needed).
exec ldapsearch -Q -LLL -Y EXTERNAL -H ldapi:/// -b "${LDAP_BASE_DN:-dc=stack,dc=local}" -s base dn >/dev/null
