#!/usr/bin/env bash
# Builds ytbridge and runs it in the foreground.
#
#   scripts/run.sh [YTBRIDGE OPTIONS...]
#
# With a configuration (-c FILE, $YTBRIDGE_CONFIG, /etc/ytbridge/ytbridge.conf) or
# $YTBRIDGE_YOUTRACK_URL + $YTBRIDGE_YOUTRACK_TOKEN, it polls that YouTrack. With none of them,
# it starts the bundled demo YouTrack (the test suite's fake, changing a project every few
# seconds) and polls that, so you can watch changes being detected. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

scripts/deps.sh
if [ ! -f build/build.ninja ]; then
  meson setup build -Dbuildtype=release >/dev/null
fi
ninja -C build >/dev/null
bin="$top/build/bridge/ytbridge"

has_config=""
for a in "$@"; do
  case "$a" in -c|--config|--config=*|-c*) has_config=1 ;; esac
done
if [ -n "$has_config" ] || [ -n "${YTBRIDGE_CONFIG:-}" ] || [ -f /etc/ytbridge/ytbridge.conf ]; then
  exec "$bin" "$@"
fi

demo=$(mktemp -d /tmp/ytbridge-demo.XXXXXX)
cleanup() {
  [ -n "${fake_pid:-}" ] && kill "$fake_pid" 2>/dev/null || true
  rm -rf "$demo"
}
trap cleanup EXIT

if [ -n "${YTBRIDGE_YOUTRACK_URL:-}" ]; then
  : "${YTBRIDGE_YOUTRACK_TOKEN:?set YTBRIDGE_YOUTRACK_TOKEN (the permanent token of the service account)}"
  url="$YTBRIDGE_YOUTRACK_URL"
  echo "run: polling $url (state in $demo/state)" >&2
else
  # The demo token is a made-up value the demo server expects; it is not a real credential.
  export YTBRIDGE_YOUTRACK_TOKEN="perm:demo-token-not-real"
  python3 tests/fakes/fake_youtrack.py --port 0 --demo --token "$YTBRIDGE_YOUTRACK_TOKEN" \
    >"$demo/port" 2>"$demo/fake.log" &
  fake_pid=$!
  for _ in $(seq 100); do
    grep -q '^PORT ' "$demo/port" 2>/dev/null && break
    sleep 0.1
  done
  port=$(sed -n 's/^PORT //p' "$demo/port")
  [ -n "$port" ] || { cat "$demo/fake.log" >&2; echo "run: the demo YouTrack did not start" >&2; exit 1; }
  url="http://127.0.0.1:$port"
  echo "run: no configuration given: polling the demo YouTrack at $url every 10 s" >&2
  echo "run: (it changes a project every few seconds; Ctrl-C to stop)" >&2
fi

cat >"$demo/ytbridge.conf" <<CONF
youtrack: { url = "$url"; poll_interval = 10; };
state_dir = "$demo/state";
notify: { first_run = "baseline"; };
sinks = ( { name = "console"; type = "stdout"; format = "text"; } );
CONF
root_flag=""
[ "$(id -u)" -eq 0 ] && root_flag="--allow-root"   # the demo runs as whoever started it
"$bin" $root_flag -c "$demo/ytbridge.conf" "$@" &
bridge_pid=$!
trap 'kill -TERM $bridge_pid 2>/dev/null || true' INT TERM
wait "$bridge_pid" || true
wait "$bridge_pid" 2>/dev/null || true
