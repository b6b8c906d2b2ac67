#!/bin/sh
# Density, one run, same machine: start N `sleep` containers (no network) one after another with
# berth, docker and podman; print the time to start them all (median of ROUNDS), the memory of
# each engine's per-container monitor (berth shim, containerd-shim-runc-v2, conmon) and of the
# idle daemons. RSS counts every resident page a process maps; PSS shares pages out among the
# processes that map them. Starts what it compares against and stops only what it started.
set -eu
cd "$(dirname "$0")/.."
N=${N:-50}
ROUNDS=${ROUNDS:-3}
. bench/lib.sh
bench_need docker.io podman python3
# BERTH=path runs another build (e.g. an older one, for a before/after) instead of the release.
if [ -z "${BERTH:-}" ]; then
  cargo build --release --locked -q
  BERTH=$PWD/target/x86_64-unknown-linux-gnu/release/berth
fi
work=$(mktemp -d /tmp/berth-density.XXXXXX)
pids=""
bench_snapshot
P=""
cleanup() {
  if [ -n "$P" ]; then $P rm -f -a >/dev/null 2>&1 || true; $P system reset -f >/dev/null 2>&1 || true; fi
  for p in $pids; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  pkill -f "containerd-shim.*-address /run/berth-density-containerd" 2>/dev/null || true
  umount -R /run/berth-density-docker 2>/dev/null || true
  bench_restore docker0 podman0 bdens0
  rm -rf "$work" /run/berth-density /run/berth-density-docker /run/berth-density-containerd /run/berth-density-podman
  if [ -n "$P" ]; then bench_restore_podman_cache; fi
}
trap cleanup EXIT
scripts/mkbusybox.sh "$work/busybox.tar"

# Memory of processes, summed: "RSS_KB PSS_KB COUNT" for the pids on stdin (deduplicated).
mem() {
  python3 -c '
import sys
pids = sorted(set(int(p) for p in sys.stdin.read().split() if p.isdigit() and int(p) > 0))
rss = pss = 0
for p in pids:
    try:
        for line in open(f"/proc/{p}/smaps_rollup"):
            k, v = line.split(":", 1) if ":" in line else (line, "")
            if k == "Rss": rss += int(v.split()[0])
            if k == "Pss": pss += int(v.split()[0])
    except OSError:
        pass
print(rss, pss, len(pids))'
}
parents() { for p in "$@"; do ps -o ppid= -p "$p" 2>/dev/null; done; }

# One engine: ROUNDS x (start N detached sleeps, time it, remove them); the last round's
# monitors are measured before removal. $1 name, $2 CLI, $3 extra run flags, $4 daemon pids,
# $5 extra flags for `rm -f`.
results=$work/results
bench() {
  name=$1 cli=$2 flags=$3 daemons=$4 rmflags=${5:-}
  idle=$(echo "$daemons" | mem)
  r=1
  while [ $r -le "$ROUNDS" ]; do
    t0=$(date +%s.%N)
    i=1
    while [ $i -le "$N" ]; do
      $cli run -d $flags --network none busybox sleep 600 >/dev/null
      i=$((i + 1))
    done
    t1=$(date +%s.%N)
    echo "$name start $(awk "BEGIN{print $t1 - $t0}")" >>"$results"
    if [ $r -eq "$ROUNDS" ]; then
      sleep 3 # monitors settle (berth's shim gives memory back after a second idle)
      ids=$($cli ps -q)
      inits=$(for id in $ids; do $cli inspect -f '{{.State.Pid}}' "$id"; done)
      echo "$name monitors $(parents $inits | mem)" >>"$results"
      echo "$name daemon-idle $idle" >>"$results"
      echo "$name daemon-busy $(echo "$daemons" | mem)" >>"$results"
    fi
    $cli rm -f $rmflags $($cli ps -aq) >/dev/null
    r=$((r + 1))
  done
}

"$BERTH" daemon --data-root "$work/berth" --exec-root /run/berth-density -H unix:///run/berth-density/berth.sock \
  --config-file /nonexistent --bridge bdens0 --bip 10.230.0.1/24 >"$work/berthd.log" 2>&1 &
bd=$!
pids="$pids $bd"
B="$BERTH -H unix:///run/berth-density/berth.sock"
i=0; until $B version >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 100 ] || exit 1; sleep 0.1; done
$B import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null
sleep 1
# The daemon and its shim zygote.
bench berth "$B" "" "$bd $(pgrep -P "$bd" | tr '\n' ' ')"
kill "$bd"; wait "$bd" 2>/dev/null || true

if command -v dockerd >/dev/null && command -v containerd >/dev/null; then
  cdir=/run/berth-density-containerd
  mkdir -p "$cdir"
  containerd --root "$work/containerd" --state "$cdir/state" --address "$cdir/containerd.sock" >"$work/containerd.log" 2>&1 &
  cd_pid=$!
  pids="$cd_pid $pids"
  i=0; until [ -S "$cdir/containerd.sock" ]; do i=$((i+1)); [ $i -lt 100 ] || break; sleep 0.1; done
  dockerd --data-root "$work/docker" --exec-root /run/berth-density-docker --pidfile "$work/dockerd.pid" \
    -H unix:///run/berth-density-docker.sock --containerd "$cdir/containerd.sock" \
    --iptables=false --ip6tables=false --bridge=none >"$work/dockerd.log" 2>&1 &
  dd_pid=$!
  pids="$dd_pid $pids"
  D="docker -H unix:///run/berth-density-docker.sock"
  i=0; until $D info >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 150 ] || break; sleep 0.2; done
  $D import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null
  sleep 1
  bench docker "$D" "" "$dd_pid $cd_pid"
fi
if command -v podman >/dev/null; then
  P="podman --root $work/podman --runroot /run/berth-density-podman --cgroup-manager=cgroupfs --events-backend=file"
  if mountpoint -q /sys/fs/cgroup/unified; then
    # crun refuses hybrid cgroup hosts whose cgroup2 has a controller: every podman command
    # runs in a private mount namespace without the cgroup2 mount (the host's stay as they are).
    printf '#!/bin/sh\numount /sys/fs/cgroup/unified 2>/dev/null\nexec %s "$@"\n' "$P" >"$work/podman-wrap"
    chmod +x "$work/podman-wrap"
    P="unshare -m --propagation private $work/podman-wrap"
  fi
  $P import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null
  # podman's rm -f stops with SIGTERM and a 10 s timeout unless told otherwise.
  bench podman "$P" "--ulimit nofile=1024:1024 --ulimit nproc=1024:1024" "" "-t 0"
fi

python3 - "$results" "$N" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
n = int(sys.argv[2])
engines = list(dict.fromkeys(r[0] for r in rows))
def get(e, k):
    return [r[2:] for r in rows if r[0] == e and r[1] == k]
start = {e: statistics.median(float(v[0]) for v in get(e, "start")) for e in engines}
print(f"{n} containers, `run -d --network none busybox sleep`, medians of the rounds")
print(f"{'engine':<8}{'start all s':>12}{'x docker':>9}{'monitor RSS KiB':>17}{'PSS KiB':>9}"
      f"{'daemon idle RSS MiB':>21}{'PSS':>7}{'with N RSS MiB':>16}")
for e in engines:
    mon = get(e, "monitors")[-1]
    idle = get(e, "daemon-idle")[-1]
    busy = get(e, "daemon-busy")[-1]
    cnt = max(int(mon[2]), 1)
    ratio = f"{start[e] / start['docker']:>9.2f}" if "docker" in start else f"{'-':>9}"
    print(f"{e:<8}{start[e]:>12.2f}{ratio}{int(mon[0]) / cnt:>17.0f}{int(mon[1]) / cnt:>9.0f}"
          f"{int(idle[0]) / 1024:>21.1f}{int(idle[1]) / 1024:>7.1f}{int(busy[0]) / 1024:>16.1f}")
    print(f"{'':<8}({cnt} monitor processes for {n} containers)")
PY
