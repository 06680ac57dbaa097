#!/usr/bin/env bash
# Install everything the tests need (virtualenv, Python packages, redis-server,
# Chromium and nginx via apt-get where missing) and run the whole suite.
#   ./test.sh                 ruff and mypy (settings in pyproject.toml), then every test
#   ./test.sh tests/unit -x   any pytest arguments: a targeted run, without ruff and mypy
# With no arguments, a lint or type error fails the run before any test starts. Set
# PRICEFEED_LINT=1 to run the checks before a targeted run too.
set -euo pipefail
cd "$(dirname "$0")"

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
# tests/faults/test_multihost.py: faults between namespaced hosts are nftables rules (iptables: NFQUEUE delay)
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
# tests/support/tls_redis.py makes a throwaway CA for the rediss:// test
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# tests/integration/test_nginx.py runs a real nginx in front of gunicorn
[ -x /usr/sbin/nginx ] || need_apt+=(nginx)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test.sh: installing ${need_apt[*]} with apt-get" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.requirements-test.sha
want=$(cat requirements.txt requirements-test.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "test.sh: installing Python packages" >&2
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements-test.txt
  echo "$want" > "$stamp"
fi

# React 19 and esbuild for the browser tests, from the npm registry (tests/browser/package-lock.json).
npm_lock=tests/browser/package-lock.json
npm_stamp=tests/browser/node_modules/.pricefeed-lock.sha
npm_want=$(sha256sum "$npm_lock" | cut -d' ' -f1)
if [ "$(cat "$npm_stamp" 2>/dev/null)" != "$npm_want" ]; then
  echo "test.sh: installing the browser tests' npm packages" >&2
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
  echo "$npm_want" > "$npm_stamp"
fi

if [ $# -eq 0 ] || [ "${PRICEFEED_LINT:-}" = 1 ]; then
  echo "test.sh: ruff check ." >&2
  .venv/bin/ruff check . || { echo "test.sh: ruff found problems (above) — failing" >&2; exit 1; }
  echo "test.sh: mypy" >&2
  .venv/bin/mypy || { echo "test.sh: mypy found problems (above) — failing" >&2; exit 1; }
fi

set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
  echo "test.sh: pytest collected no tests — failing loudly" >&2
  exit 1
fi
exit "$status"
