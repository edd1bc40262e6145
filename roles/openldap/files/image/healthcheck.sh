#!/bin/sh
# Healthy = slapd answers a base-scope search on the suffix over the local socket (SASL EXTERNAL as the
# openldap user, whom the ACLs let manage the directory; no password involved).
exec ldapsearch -Q -LLL -Y EXTERNAL -H ldapi:/// -b "${LDAP_BASE_DN:-dc=stack,dc=local}" -s base dn >/dev/null
