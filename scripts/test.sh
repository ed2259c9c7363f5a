#!/usr/bin/env bash
# Set up everything the test suite needs, then run all of it: ./scripts/test.sh [pytest args]
#
# Python packages go into .venv. The browser tests need Debian's chromium, the
# deployment tests nginx, openssl and systemd-analyze, the PostgreSQL store's tests postgresql and pgbouncer: as root with apt-get they are installed here;
# otherwise those tests are skipped, and this says so.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v openssl >/dev/null || missing+=(openssl)            # the proxy test's certificate
command -v systemd-analyze >/dev/null || missing+=(systemd)    # checks deploy/chat.service
[ -x /usr/lib/postgresql/15/bin/pg_ctl ] || missing+=(postgresql)  # the PostgreSQL store's tests
[ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)                 # ... behind a pooler in transaction mode
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing ${missing[*]} (Debian packages)..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "note: ${missing[*]} not installed (needs root and apt-get); the tests that use them will be skipped" >&2
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
echo "Installing Python packages into .venv..."
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
exec .venv/bin/python -m pytest "$@"
