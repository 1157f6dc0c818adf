# Shared by the e2e scripts: start `jevons serve` on a free loopback port, wait for
# /health, and stop it on exit. Usage: start_server JEVONS MODEL [extra args...]
set -euo pipefail
SERVER_PID=""
cleanup() { if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
start_server() {
  local jevons=$1 model=$2; shift 2
  PORT=$(free_port)
  "$jevons" serve -m "$model" --port "$PORT" -c 512 --kv-budget 64M --energy-source estimate "$@" > "$ARTIFACTS/server-$NAME.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 300); do
    if curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then cat "$ARTIFACTS/server-$NAME.log"; echo "server died"; exit 1; fi
    sleep 0.2
  done
  echo "server did not become healthy"; cat "$ARTIFACTS/server-$NAME.log"; exit 1
}
# A missing prerequisite skips the test locally (exit 77) but fails it in CI, where
# .ci/run installs everything: a CI run must not pass by skipping.
skip() { echo "$1"; if [ -n "${CI:-}" ]; then echo "CI is set: failing instead of skipping"; exit 1; fi; exit 77; }
