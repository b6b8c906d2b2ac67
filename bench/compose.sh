#!/bin/sh
# Compose, one run, same machine: `up -d` and `down` of a 10-service project (a 3-level
# depends_on chain, a dependency gated on a 0.2 s healthcheck, a one-shot seeder) with
# `berth compose` against berthd, docker-compose 1.29 against berthd and, when dockerd is
# installed, docker-compose 1.29 and `berth compose` against dockerd. Then, on a 100-container
# project (10 services x 10 replicas): `compose ps` against `berth ps`, and a no-op `up -d`.
# Prints medians and ratios. Starts what it compares against and stops only what it started.
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
. bench/lib.sh
bench_need hyperfine docker-compose docker.io
if [ -z "${BERTH:-}" ]; then
  cargo build --release --locked -q
  BERTH=$PWD/target/x86_64-unknown-linux-gnu/release/berth
fi
work=$(mktemp -d /tmp/berth-bench.XXXXXX)
started_daemon=""
started_dockerd=""
started_containerd=""
bench_snapshot
BS=/run/berth-bench-compose/berth.sock
DS=/run/berth-bench-compose-docker.sock
cleanup() {
  for sock in "$BS" "$DS"; do
    [ -S "$sock" ] || continue
    for p in bench10 bench100; do
      DOCKER_HOST=unix://$sock "$BERTH" compose -p $p -f "$work/$p.yaml" down -v -t 0 >/dev/null 2>&1 || true
    done
  done
  for p in $started_dockerd $started_daemon $started_containerd; do
    kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
  done
  if [ -n "$started_containerd" ]; then
    pkill -f "containerd-shim.*-address /run/berth-bench-compose-containerd" 2>/dev/null || true
  fi
  umount -R /run/berth-bench-compose-docker 2>/dev/null || true
  bench_restore docker0 bcomp0 bcompd0
  rm -rf "$work" /run/berth-bench-compose /run/berth-bench-compose-docker /run/berth-bench-compose-containerd
}
trap cleanup EXIT

scripts/mkbusybox.sh "$work/busybox.tar"

# The 10-service project (no top-level `name`: docker-compose 1.29 does not know it).
cat >"$work/bench10.yaml" <<'EOF'
services:
  db:
    image: busybox
    command: ["sh", "-c", "touch /tmp/ok; exec sleep 3600"]
    stop_signal: SIGKILL
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ok"]
      interval: 200ms
      retries: 50
  seed:
    image: busybox
    command: ["true"]
    depends_on:
      db:
        condition: service_healthy
  mid:
    image: busybox
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    depends_on:
      seed:
        condition: service_completed_successfully
  api:
    image: busybox
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    depends_on: [mid]
  web:
    image: busybox
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    depends_on: [api]
EOF
for i in 1 2 3 4 5; do
  printf '  w%s:\n    image: busybox\n    command: ["sleep", "3600"]\n    stop_signal: SIGKILL\n' "$i" >>"$work/bench10.yaml"
done
# The 100-container project.
echo "services:" >"$work/bench100.yaml"
for i in 0 1 2 3 4 5 6 7 8 9; do
  printf '  s%s:\n    image: busybox\n    command: ["sleep", "3600"]\n    stop_signal: SIGKILL\n    scale: 10\n' "$i" >>"$work/bench100.yaml"
done

# A private berth daemon.
mkdir -p /run/berth-bench-compose
"$BERTH" daemon --data-root "$work/berth-data" --exec-root /run/berth-bench-compose -H "unix://$BS" \
  --config-file /nonexistent --bridge bcomp0 --bip 10.230.0.1/24 \
  --default-address-pool base=10.231.0.0/16,size=24 >"$work/berthd.log" 2>&1 &
started_daemon=$!
i=0; until "$BERTH" -H "unix://$BS" version >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 100 ] || { cat "$work/berthd.log"; exit 1; }; sleep 0.1; done
"$BERTH" -H "unix://$BS" import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null

# Docker (Debian's docker.io), when installed: containerd + dockerd on roots of their own.
D=""
if command -v dockerd >/dev/null && command -v containerd >/dev/null; then
  cdir=/run/berth-bench-compose-containerd
  mkdir -p "$cdir" "$work/docker"
  containerd --root "$work/docker/containerd" --state "$cdir/state" --address "$cdir/containerd.sock" \
    >"$work/containerd.log" 2>&1 &
  started_containerd=$!
  i=0; until [ -S "$cdir/containerd.sock" ]; do i=$((i+1)); [ $i -lt 100 ] || break; sleep 0.1; done
  dockerd --data-root "$work/docker/data" --exec-root /run/berth-bench-compose-docker --pidfile "$work/dockerd.pid" \
    -H "unix://$DS" --containerd "$cdir/containerd.sock" --bridge none \
    --iptables=false --ip6tables=false --default-address-pool base=10.232.0.0/16,size=24 \
    >"$work/dockerd.log" 2>&1 &
  started_dockerd=$!
  i=0; until docker -H "unix://$DS" info >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 150 ] || break; sleep 0.2; done
  if docker -H "unix://$DS" import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null 2>&1; then
    D=1
  else
    echo "note: dockerd did not come up; see $work/dockerd.log"
  fi
fi

# up -d and down, each timed with the other as hyperfine's --prepare.
BC="$BERTH compose -p bench10 -f $work/bench10.yaml --progress quiet"
DC="docker-compose --log-level ERROR -p bench10 -f $work/bench10.yaml"
set --
for pair in "berth-compose:$BS:$BC" "docker-compose:$BS:$DC"; do
  name=${pair%%:*}; rest=${pair#*:}; sock=${rest%%:*}; cmd=${rest#*:}
  set -- "$@" "$name@berthd|$sock|$cmd"
done
if [ -n "$D" ]; then
  set -- "$@" "docker-compose@dockerd|$DS|$DC" "berth-compose@dockerd|$DS|$BC"
fi
: >"$work/updown.txt"
for spec in "$@"; do
  label=${spec%%|*}; rest=${spec#*|}; sock=${rest%%|*}; cmd=${rest#*|}
  env="env DOCKER_HOST=unix://$sock"
  hyperfine -N --runs "$RUNS" --export-json "$work/up.json" \
    --prepare "$env $cmd down -t 0" -n "$label up" "$env $cmd up -d" >/dev/null
  hyperfine -N --runs "$RUNS" --export-json "$work/down.json" \
    --prepare "$env $cmd up -d" -n "$label down" "$env $cmd down -t 0" >/dev/null
  python3 - "$work/up.json" "$work/down.json" >>"$work/updown.txt" <<'PY'
import json, sys
for f in sys.argv[1:]:
    r = json.load(open(f))["results"][0]
    print(f'{r["command"]}\t{r["median"] * 1000:.0f}')
PY
done
python3 - "$work/updown.txt" <<'PY'
import sys
med = dict(l.rstrip("\n").split("\t") for l in open(sys.argv[1]))
med = {k: float(v) for k, v in med.items()}
print(f"{'10 services':<30}{'median ms':>10}{'x docker-compose@berthd':>25}")
for k, v in med.items():
    op = k.rsplit(" ", 1)[1]
    base = med.get(f"docker-compose@berthd {op}")
    print(f"{k:<30}{v:>10.0f}{v / base:>25.2f}")
PY
env DOCKER_HOST="unix://$BS" $BC down -t 0 >/dev/null 2>&1 || true

# 100 containers: ps and a no-op re-up.
B100="$BERTH compose -p bench100 -f $work/bench100.yaml --progress quiet"
env DOCKER_HOST="unix://$BS" $B100 up -d
hyperfine -N --warmup 2 --runs 20 --export-json "$work/ps.json" \
  -n "berth compose ps" "env DOCKER_HOST=unix://$BS $B100 ps" \
  -n "berth ps" "$BERTH -H unix://$BS ps" \
  -n "berth compose up -d (no-op)" "env DOCKER_HOST=unix://$BS $B100 up -d" >/dev/null
python3 - "$work/ps.json" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))["results"]
med = {r["command"]: r["median"] * 1000 for r in res}
print()
print(f"{'100 containers':<30}{'median ms':>10}{'x berth ps':>12}")
for k, v in med.items():
    print(f"{k:<30}{v:>10.1f}{v / med['berth ps']:>12.2f}")
PY
