#!/usr/bin/env bash
# Runs the example shop against the local Experience API emulator (`make demo` calls this).
#
#   DEMO_PORT=8000 DEMO_EMULATOR_PORT=8765   preferred ports (a free one is used when taken)
#   EXPERIENCE_API_URL=...                    set it to use a real environment: no emulator then
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
# The shop has its own settings, whatever another project exported.
unset DJANGO_SETTINGS_MODULE
MANAGE=(env PYTHONUNBUFFERED=1 "$PY" example_project/manage.py)
if [ ! -x "$PY" ]; then
  echo "No virtualenv at .venv: run 'make demo' from the repository root." >&2
  exit 1
fi

# The preferred port when it is free, else any free port.
pick_port() {
  "$PY" - "$1" <<'PYEOF'
import socket, sys

def free(port: int) -> int:
    with socket.socket() as sock:
        # Like the servers themselves: a port in TIME_WAIT after a previous run is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        return sock.getsockname()[1]

try:
    print(free(int(sys.argv[1])))
except OSError:
    print(free(0))
PYEOF
}

# Wait until a URL answers (any HTTP status), or give up after about 20 seconds.
wait_for() {
  "$PY" - "$1" <<'PYEOF'
import sys, time, urllib.error, urllib.request

deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    try:
        urllib.request.urlopen(sys.argv[1], timeout=1)
        sys.exit(0)
    except urllib.error.HTTPError:
        sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit(1)
PYEOF
}

PIDS=()
cleanup() {
  trap - INT TERM EXIT
  if [ "${#PIDS[@]}" -gt 0 ]; then
    echo
    echo "Stopping the demo..."
    kill "${PIDS[@]}" 2>/dev/null || true
    wait "${PIDS[@]}" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

SITE_PORT=$(pick_port "${DEMO_PORT:-8000}")
SITE="http://127.0.0.1:$SITE_PORT"

echo "Preparing the database..."
"${MANAGE[@]}" migrate --noinput --verbosity 0
echo
"${MANAGE[@]}" create_demo_users
echo

if [ -z "${EXPERIENCE_API_URL:-}" ]; then
  EMULATOR_PORT=$(pick_port "${DEMO_EMULATOR_PORT:-8765}")
  export EXPERIENCE_API_URL="http://127.0.0.1:$EMULATOR_PORT"
  export SHOP_EMULATED_DESTINATIONS=1  # sign-ins also reach its Experiture and Releva emulators
  "$PY" -m django_experience.emulator --host 127.0.0.1 --port "$EMULATOR_PORT" \
    --config example_project/emulator.json &
  PIDS+=("$!")
  if ! wait_for "$EXPERIENCE_API_URL/__emulator__/stats"; then
    echo "The emulator did not start." >&2
    exit 1
  fi
  API_NOTE="the local emulator at $EXPERIENCE_API_URL (experiences: example_project/emulator.json)"
else
  API_NOTE="$EXPERIENCE_API_URL (organization ${EXPERIENCE_ORGANIZATION_ID:-demo-shop})"
fi

"${MANAGE[@]}" runserver --noreload "127.0.0.1:$SITE_PORT" &
PIDS+=("$!")
if ! wait_for "$SITE/static/shop/shop.css"; then
  echo "The site did not start." >&2
  exit 1
fi

cat <<EOF

The demo shop is running against $API_NOTE.

  $SITE/                              the shop: baseline hero, an A/B-tested call to action
  $SITE/?utm_campaign=spring-sale     arrive from the campaign link: the spring sale hero
  $SITE/products/                     browse the catalogue, then go home: "Welcome back"
  $SITE/accounts/login/               sign in as ada or grace: "Hi Ada", gold shipping for Ada
  $SITE/admin/django_experience/profilemapping/
                                      the admin (as ada): users mapped to their profiles
EOF
if [ -n "${EMULATOR_PORT:-}" ]; then
  cat <<EOF
  $EXPERIENCE_API_URL/__emulator__/profiles   what the emulator stored (profiles, events)
  $EXPERIENCE_API_URL/__emulator__/destinations
                                      signed-in users upserted to Experiture and Releva
EOF
fi
echo
echo "Press Ctrl-C to stop both."

# Return as soon as either process ends (or Ctrl-C); the EXIT trap stops the other.
wait -n "${PIDS[@]}" || true
