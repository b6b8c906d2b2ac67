#!/bin/sh
# Container start latency, one run, same machine: berth (daemon path and runtime alone) vs crun
# and runc on the same busybox bundle, docker and podman (installed with apt-get). Prints medians and
# ratios to crun. Starts what it compares against and stops only what it started.
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-30}
. bench/lib.sh
# What it compares against (BENCH_SKIP_INSTALL=1 uses only what is already installed).
bench_need hyperfine crun runc docker.io podman
# BERTH=path runs another build (e.g. an older one, for a before/after) instead of the release.
if [ -z "${BERTH:-}" ]; then
  cargo build --release --locked -q
  BERTH=$PWD/target/x86_64-unknown-linux-gnu/release/berth
fi
work=$(mktemp -d /tmp/berth-bench.XXXXXX)
started_daemon=""
started_dockerd=""
started_containerd=""
started_podman=""
# The bridges, nft tables (podman's netavark adds some) and cgroup parents the engines leave
# behind are removed at the end if the script made them.
bench_snapshot
cleanup() {
  for p in $started_dockerd $started_daemon $started_containerd; do
    kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
  done
  if [ -n "$started_containerd" ]; then
    # containerd-shims of the benchmark's containers, if any survived.
    pkill -f "containerd-shim.*-address /run/berth-bench-containerd" 2>/dev/null || true
  fi
  umount -R /run/berth-bench-docker 2>/dev/null || true
  if [ -n "$started_podman" ]; then
    $P system reset -f >/dev/null 2>&1 || true
  fi
  bench_restore docker0 podman0 bbench0
  rm -rf "$work" /run/berth-bench /run/berth-bench-docker /run/berth-bench-containerd /run/berth-bench-podman
  if [ -n "$started_podman" ]; then bench_restore_podman_cache; fi
}
trap cleanup EXIT

# One busybox bundle shared by crun, runc and `berth runtime`.
scripts/mkbusybox.sh "$work/busybox.tar"
mkdir -p "$work/bundle/rootfs"
tar -C "$work/bundle/rootfs" -xf "$work/busybox.tar"
(cd "$work/bundle" && crun spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"true"/' config.json)

# A private berth daemon.
"$BERTH" daemon --data-root "$work/berth-data" --exec-root /run/berth-bench -H unix:///run/berth-bench/berth.sock \
  --config-file /nonexistent --bridge bbench0 --bip 10.229.0.1/24 >"$work/berthd.log" 2>&1 &
started_daemon=$!
B="$BERTH -H unix:///run/berth-bench/berth.sock"
i=0; until $B version >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 100 ] || { cat "$work/berthd.log"; exit 1; }; sleep 0.1; done
$B import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null

# crun refuses hybrid cgroup hosts whose cgroup2 has a controller (this VM's has hugetlb).
# Then every engine is timed inside a private mount namespace without the cgroup2 mount, so
# crun runs with cgroups like the others; the host's mounts are not touched.
hybrid=""
if ! crun --root "$work/crun" run --bundle "$work/bundle" bench-probe >/dev/null 2>&1; then
  hybrid=1
  echo "note: hybrid cgroups; timing in a mount namespace without /sys/fs/cgroup/unified"
fi
set -- \
  -n crun "crun --root $work/crun run --bundle $work/bundle bench-crun" \
  -n runc "runc --root $work/runc run --bundle $work/bundle bench-runc" \
  -n berth-runtime "$BERTH runtime --root $work/brt run --bundle $work/bundle bench-brt" \
  -n berth "$B run --rm --network none busybox true" \
  -n berth-bridge "$B run --rm busybox true"
# Docker (Debian's docker.io): a private containerd + dockerd with their own roots and sockets,
# no iptables, its own bridge subnet, started here and stopped at the end.
if command -v dockerd >/dev/null && command -v containerd >/dev/null; then
  cdir=/run/berth-bench-containerd
  mkdir -p "$cdir" "$work/docker"
  containerd --root "$work/docker/containerd" --state "$cdir/state" --address "$cdir/containerd.sock" \
    >"$work/containerd.log" 2>&1 &
  started_containerd=$!
  i=0; until [ -S "$cdir/containerd.sock" ]; do i=$((i+1)); [ $i -lt 100 ] || break; sleep 0.1; done
  dockerd --data-root "$work/docker/data" --exec-root /run/berth-bench-docker --pidfile "$work/dockerd.pid" \
    -H unix:///run/berth-bench-docker.sock --containerd "$cdir/containerd.sock" \
    --iptables=false --ip6tables=false --bip 10.228.0.1/24 >"$work/dockerd.log" 2>&1 &
  started_dockerd=$!
  D="docker -H unix:///run/berth-bench-docker.sock"
  i=0; until $D info >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 150 ] || break; sleep 0.2; done
  if $D import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null 2>&1; then
    set -- "$@" -n docker "$D run --rm --network none busybox true" \
      -n docker-bridge "$D run --rm busybox true"
  else
    echo "note: dockerd did not come up; see $work/dockerd.log"
  fi
fi
# Podman, daemonless, on roots of its own.
if command -v podman >/dev/null; then
  P="podman --root $work/podman/root --runroot /run/berth-bench-podman --cgroup-manager=cgroupfs --events-backend=file"
  started_podman=1
  $P import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null
  # Podman asks for RLIMIT_NOFILE 1048576 and an NPROC above this host's hard limits; it gets
  # explicit ones (setting them costs the same).
  set -- "$@" -n podman "$P run --rm --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network none busybox true" \
    -n podman-bridge "$P run --rm --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 busybox true"
fi
if [ -n "$hybrid" ]; then
  unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified && exec "$@"' sh \
    hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$work/start.json" "$@" >/dev/null
else
  hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$work/start.json" "$@" >/dev/null
fi
python3 - "$work/start.json" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))["results"]
med = {r["command"]: r["median"] * 1000 for r in res}
base = med.get("crun")
print(f"{'engine':<15}{'median ms':>10}{'x crun':>9}")
for name, m in med.items():
    print(f"{name:<15}{m:>10.2f}{m / base:>9.2f}")
print()
print("network setup (bridge minus none), median ms:")
for eng in ("berth", "docker", "podman"):
    if eng in med and eng + "-bridge" in med:
        print(f"{eng:<15}{med[eng + '-bridge'] - med[eng]:>10.2f}")
PY
