#!/usr/bin/env bash
# Start pricefeed under gunicorn (gevent workers).
#   ./run.sh              real Binance (or whatever PRICEFEED_UPSTREAM_URL names)
#   ./run.sh --simulate   offline demo: also starts the Binance simulator and points the feed at it
# Without PRICEFEED_REDIS_URL the bus is in-process and each worker has its own
# exchange connection, so one worker is the default. Dashboard: http://127.0.0.1:8000/
set -euo pipefail
cd "$(dirname "$0")"

simulate=0
for arg in "$@"; do
  case "$arg" in
    --simulate) simulate=1 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "run.sh: creating .venv" >&2
  "$python" -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "run.sh: installing requirements" >&2
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.txt
  echo "$want" > "$stamp"
fi

if [ "$simulate" = 1 ]; then
  sim_port=${PRICEFEED_SIMULATOR_PORT:-9900}
  sim_log=$(mktemp -t pricefeed-simulator.XXXXXX)
  .venv/bin/python -m pricefeed.simulator --host 127.0.0.1 --port "$sim_port" >"$sim_log" 2>&1 &
  sim_pid=$!
  trap 'kill "$sim_pid" 2>/dev/null || true' EXIT INT TERM
  for _ in $(seq 1 100); do
    grep -q "listening on" "$sim_log" && break
    kill -0 "$sim_pid" 2>/dev/null || { cat "$sim_log" >&2; echo "run.sh: simulator failed to start" >&2; exit 1; }
    sleep 0.1
  done
  grep -q "listening on" "$sim_log" || { cat "$sim_log" >&2; echo "run.sh: simulator did not start" >&2; exit 1; }
  echo "run.sh: $(grep 'listening on' "$sim_log") (simulated exchange)" >&2
  export PRICEFEED_UPSTREAM_URL="ws://127.0.0.1:${sim_port}"
  export PRICEFEED_REST_URL="http://127.0.0.1:${sim_port}"
  export PRICEFEED_SIMULATED=true
  .venv/bin/gunicorn -c gunicorn.conf.py app:app &
  app_pid=$!
  trap 'kill "$app_pid" "$sim_pid" 2>/dev/null || true; wait "$app_pid" 2>/dev/null || true' EXIT INT TERM
  wait "$app_pid"
else
  exec .venv/bin/gunicorn -c gunicorn.conf.py app:app
fi
