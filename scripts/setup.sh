#!/bin/sh
# README command 1: install what berth needs, build it, start the daemon if none runs, make
# busybox:latest from Debian's busybox-static and run a container.
set -eu
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
need=""
for p in busybox-static libseccomp-dev pkg-config nftables iproute2 tini; do
  dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
done
if [ -n "$need" ]; then
  apt-get update -q
  apt-get install -y -q $need
fi
# Members of the berth group may use the daemon's socket (as Docker's docker group).
getent group berth >/dev/null 2>&1 || groupadd --system berth
cargo build --release --locked
install -m 0755 target/x86_64-unknown-linux-gnu/release/berth /usr/local/bin/berth
sock=/run/berth/berth.sock
if ! berth -H "unix://$sock" version >/dev/null 2>&1; then
  mkdir -p /var/log
  nohup /usr/local/bin/berth daemon >>/var/log/berth.log 2>&1 &
  i=0
  until berth -H "unix://$sock" version >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 100 ] || { echo "berth daemon did not come up; see /var/log/berth.log" >&2; exit 1; }
    sleep 0.1
  done
fi
if ! berth image inspect busybox:latest >/dev/null 2>&1; then
  tmp=$(mktemp)
  scripts/mkbusybox.sh "$tmp"
  berth import --change 'CMD ["sh"]' "$tmp" busybox:latest
  rm -f "$tmp"
fi
berth run --rm busybox echo hello from berth
