#!/usr/bin/env bash
# Installs the Debian 12 packages that building, running and testing ytbridge need.
# Idempotent: does nothing when everything is there. Needs root (or sudo) to install.
set -euo pipefail

packages=(
  build-essential meson ninja-build pkg-config clang clang-format
  libcurl4-openssl-dev libwebsockets-dev libwebsockets-evlib-uv libjansson-dev libconfig-dev
  libuv1-dev libmicrohttpd-dev libssl-dev libunistring-dev python3 ca-certificates valgrind
  prometheus etcd-server
)
# libssl-dev: libcrypto for HMAC-SHA256 (bridge/hmac.c). libcurl4-openssl-dev pulls it in
# today, but the build needs it in its own right.
# prometheus: only for promtool (tests/integration/test_prometheus.py checks and unit-tests
# contrib/prometheus/ytbridge-rules.yml); its service is not used.
# etcd-server: the etcd the etcd tests start themselves (tests/etcd_server.h); its service is
# not used.

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
