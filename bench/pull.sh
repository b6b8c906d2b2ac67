#!/bin/sh
# Cold pull of the same ~100 MB multi-layer image (Debian minbase, three layers) from a local
# registry (Debian's docker-registry on 127.0.0.1) with berth, docker and podman in one run;
# prints medians and ratios to docker. Starts what it compares against and stops only what it
# started; every image is removed before each timed pull.
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
. bench/lib.sh
bench_need hyperfine debootstrap docker-registry skopeo python3 docker.io podman
# BERTH=path runs another build (e.g. an older one, for a before/after) instead of the release.
if [ -z "${BERTH:-}" ]; then
  cargo build --release --locked -q
  BERTH=$PWD/target/x86_64-unknown-linux-gnu/release/berth
fi
work=$(mktemp -d /tmp/berth-pullbench.XXXXXX)
bench_snapshot
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  umount -R /run/berth-pullbench-docker 2>/dev/null || true
  if [ -n "${P:-}" ]; then $P system reset -f >/dev/null 2>&1 || true; fi
  bench_restore docker0 podman0 bpull0
  rm -rf "$work" /run/berth-pullbench /run/berth-pullbench-docker /run/berth-pullbench-containerd /run/berth-pullbench-podman
}
trap cleanup EXIT

# The image: a Debian minbase in three gzip layers (scripts/mkminbase.sh).
scripts/mkminbase.sh "$work"

# The registry.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' "$work/registry" "$port" >"$work/registry.yml"
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pids="$pids $!"
sleep 1
IMG=127.0.0.1:$port/bench/debian:1
skopeo copy -q --dest-tls-verify=false "oci:$work/oci:1" "docker://$IMG"

# berth, on roots of its own.
"$BERTH" daemon --data-root "$work/berth" --exec-root /run/berth-pullbench -H unix:///run/berth-pullbench/berth.sock \
  --config-file /nonexistent --bridge bpull0 --bip 10.227.0.1/24 >"$work/berthd.log" 2>&1 &
pids="$pids $!"
B="$BERTH -H unix:///run/berth-pullbench/berth.sock"
i=0; until $B version >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 100 ] || exit 1; sleep 0.1; done
set -- -n berth --prepare "$B rmi -f $IMG || true" "$B pull -q $IMG"
# docker: private containerd + dockerd (127.0.0.0/8 registries are plain HTTP for it).
if command -v dockerd >/dev/null && command -v containerd >/dev/null; then
  cdir=/run/berth-pullbench-containerd
  mkdir -p "$cdir"
  containerd --root "$work/containerd" --state "$cdir/state" --address "$cdir/containerd.sock" >"$work/containerd.log" 2>&1 &
  pids="$! $pids"
  i=0; until [ -S "$cdir/containerd.sock" ]; do i=$((i+1)); [ $i -lt 100 ] || break; sleep 0.1; done
  dockerd --data-root "$work/docker" --exec-root /run/berth-pullbench-docker --pidfile "$work/dockerd.pid" \
    -H unix:///run/berth-pullbench-docker.sock --containerd "$cdir/containerd.sock" \
    --iptables=false --ip6tables=false --bridge=none >"$work/dockerd.log" 2>&1 &
  pids="$! $pids"
  D="docker -H unix:///run/berth-pullbench-docker.sock"
  i=0; until $D info >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 150 ] || break; sleep 0.2; done
  set -- "$@" -n docker --prepare "$D rmi -f $IMG || true" "$D pull -q $IMG"
fi
if command -v podman >/dev/null; then
  P="podman --root $work/podman --runroot /run/berth-pullbench-podman --cgroup-manager=cgroupfs --events-backend=file"
  set -- "$@" -n podman --prepare "$P rmi -f $IMG || true" "$P pull -q --tls-verify=false $IMG"
fi
hyperfine --runs "$RUNS" --export-json "$work/pull.json" "$@" >/dev/null
python3 - "$work/pull.json" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))["results"]
med = {r["command"]: r["median"] for r in res}
base = med.get("docker")
print(f"{'engine':<10}{'median s':>10}{'x docker':>10}")
for name, m in med.items():
    ratio = f"{m / base:>10.2f}" if base else f"{'-':>10}"
    print(f"{name:<10}{m:>10.2f}{ratio}")
PY
