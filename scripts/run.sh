#!/usr/bin/env bash
# Builds ytbridge (in build-demo/) and runs it in the foreground.
#
#   scripts/run.sh [YTBRIDGE OPTIONS...]
#
# With a configuration (-c FILE, $YTBRIDGE_CONFIG, /etc/ytbridge/ytbridge.conf) or
# $YTBRIDGE_YOUTRACK_URL + $YTBRIDGE_YOUTRACK_TOKEN, it polls that YouTrack. With none of them,
# it starts the bundled demo YouTrack (the test suite's fake, changing a project every few
# seconds) and polls that, so you can watch changes being detected. Ctrl-C, SIGTERM or closing
# the terminal (SIGHUP) stops everything it started.
#
# YTBRIDGE_BIN=/path/to/ytbridge skips the package installation and the build and runs that
# binary instead (the tests do this).
#
# The build directory is build-demo/, not build/: build/ stays free for the README's
# "Installing" step, which configures its own prefix.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

say() { echo "run: $*" >&2; }

if [ -n "${YTBRIDGE_BIN:-}" ]; then
  bin="$YTBRIDGE_BIN"
else
  say "checking the Debian packages (scripts/deps.sh)..."
  scripts/deps.sh
  if [ ! -f build-demo/build.ninja ]; then
    say "configuring build-demo/ (meson)..."
    meson setup build-demo -Dbuildtype=release >/dev/null
  fi
  say "building (ninja -C build-demo)..."
  ninja -C build-demo >/dev/null
  bin="$top/build-demo/bridge/ytbridge"
fi

root_flag=()
# The bridge refuses root without --allow-root; the Quick start runs this as root.
[ "$(id -u)" -eq 0 ] && root_flag=(--allow-root)

demo=""
fake_pid=""
bridge_pid=""
cleanup() {
  trap - HUP INT TERM EXIT
  # The bridge takes SIGHUP as "reload", so it is always stopped with SIGTERM.
  [ -n "$bridge_pid" ] && kill -TERM "$bridge_pid" 2>/dev/null|| true
  [ -n "$fake_pid" ] && kill -TERM "$fake_pid" 2>/dev/null || true
  [ -n "$bridge_pid" ] && wait "$bridge_pid" 2>/dev/null || true
  [ -n "$fake_pid" ] && wait "$fake_pid" 2>/dev/null || true
  [ -n "$demo" ] && rm -rf "$demo" || true
  return 0
}
on_signal() {
  cleanup
  exit "$1"
}
trap cleanup EXIT
trap 'on_signal 129' HUP
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

# Runs the bridge as a child (not exec), so that the traps above outlive it.
run_bridge() {
  "$bin" "${root_flag[@]}" "$@" &
  bridge_pid=$!
  rc=0
  wait "$bridge_pid" || rc=$?
  bridge_pid=""
  return "$rc"
}

has_config=""
for a in "$@"; do
  case "$a" in -c|--config|--config=*|-c*) has_config=1 ;; esac
done
if [ -n "$has_config" ] || [ -n "${YTBRIDGE_CONFIG:-}" ] || [ -f /etc/ytbridge/ytbridge.conf ]; then
  rc=0
  run_bridge "$@" || rc=$?
  exit "$rc"
fi

demo=$(mktemp -d /tmp/ytbridge-demo.XXXXXX)
if [ -n "${YTBRIDGE_YOUTRACK_URL:-}" ]; then
  : "${YTBRIDGE_YOUTRACK_TOKEN:?set YTBRIDGE_YOUTRACK_TOKEN (the permanent token of the service account)}"
  url="$YTBRIDGE_YOUTRACK_URL"
  say "polling $url (state in $demo/state)"
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
  [ -n "$port" ] || { cat "$demo/fake.log" >&2; say "the demo YouTrack did not start"; exit 1; }
  url="http://127.0.0.1:$port"
  say "no configuration given: polling the demo YouTrack at $url every 10 s"
  say "(it changes a project every few seconds; Ctrl-C to stop)"
fi

cat >"$demo/ytbridge.conf" <<CONF
youtrack: { url = "$url"; poll_interval = 10; };
state_dir = "$demo/state";
notify: { first_run = "baseline"; };
sinks = ( { name = "console"; type = "stdout"; format = "text"; } );
CONF
run_bridge -c "$demo/ytbridge.conf" "$@" || true
