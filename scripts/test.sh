#!/bin/sh
# README command 2: install test dependencies and run every test (unit, system, docker CLI interop).
set -eu
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
need=""
for p in busybox-static libseccomp-dev pkg-config nftables iptables iproute2 tini crun runc curl procps skopeo python3 python3-yaml python3-docker zstd docker-registry docker-compose openssl debootstrap; do
  dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
done
if [ -n "$need" ]; then
  apt-get update -q
  apt-get install -y -q $need
fi
# Members of the berth group may use the daemon's socket (as Docker's docker group).
getent group berth >/dev/null 2>&1 || groupadd --system berth
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked -- --test-threads=2
