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
# etcd-server: the etcd binary for the replica tests (issue 12, the cluster block): they start
# a real three-member etcd cluster of their own on loopback (free ports, a temporary data
# directory) and stop it. Debian's etcd.service is not used: it is neither started nor enabled
# here (see below), so no stray etcd listens on 2379.

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive

# Installing etcd-server would start etcd.service (Debian's postinst, through invoke-rc.d or
# deb-systemd-invoke, which both honour policy-rc.d). A policy that forbids starts, only for
# this install and only when the machine has none of its own, keeps every service down; the
# unit is then disabled so that it does not start at the next boot either.
policy=/usr/sbin/policy-rc.d
own_policy=""
if [[ " ${missing[*]} " == *" etcd-server "* && ! -e $policy ]]; then
  printf '#!/bin/sh\n# scripts/deps.sh: no service starts during this install\nexit 101\n' |
    $sudo tee "$policy" >/dev/null
  $sudo chmod 0755 "$policy"
  own_policy=1
fi
cleanup() { [ -z "$own_policy" ] || $sudo rm -f "$policy"; }
trap cleanup EXIT

$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
if [[ " ${missing[*]} " == *" etcd-server "* ]] && command -v systemctl >/dev/null; then
  $sudo systemctl disable --quiet etcd.service 2>/dev/null || true
fi
