#!/bin/sh
# Engine API latency, one run, same machine: berth against dockerd (Debian's docker.io, a
# private containerd + dockerd started as bench/start.sh starts them). Times, by curl's
# time_total over each engine's unix socket (RUNS requests each, median):
#   GET /containers/json?all=1 with 1, 100 and 1,000 containers (COUNTS),
#   GET /containers/{id}/json,
#   POST /exec/{id}/start of `true`, start to exit (the exec created untimed before),
#   GET /containers/{id}/logs of a LOG_MB MiB log (json-file).
# Prints the medians in ms and berth/dockerd. Targets (issue 11): each ratio at most 0.2,
# exec under 5 ms. Starts what it compares against and stops only what it started.
# BERTH=path runs another build (e.g. /usr/local/bin/berth) instead of building the release;
# RUNS, COUNTS and LOG_MB scale the run down (RUNS=5 COUNTS="1 10" LOG_MB=5 for a quick try).
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-20}
COUNTS=${COUNTS:-1 100 1000}
LOG_MB=${LOG_MB:-100}
. bench/lib.sh
bench_need curl python3 docker.io
if [ -z "${BERTH:-}" ]; then
  cargo build --release --locked -q
  BERTH=$PWD/target/x86_64-unknown-linux-gnu/release/berth
fi
work=$(mktemp -d /tmp/berth-api.XXXXXX)
BSOCK=/run/berth-bench-api/berth.sock
DSOCK=/run/berth-bench-api-docker.sock
cdir=/run/berth-bench-api-containerd
started_daemon=""
started_dockerd=""
started_containerd=""
bench_snapshot
cleanup() {
  for p in $started_daemon $started_dockerd $started_containerd; do
    kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
  done
  if [ -n "$started_containerd" ]; then
    # containerd-shims of the benchmark's containers, if any survived.
    pkill -f "containerd-shim.*-address $cdir" 2>/dev/null || true
  fi
  umount -R /run/berth-bench-api-docker 2>/dev/null || true
  bench_restore docker0 bapi0
  rm -rf "$work" /run/berth-bench-api /run/berth-bench-api-docker "$cdir"
}
trap cleanup EXIT
scripts/mkbusybox.sh "$work/busybox.tar"

# A private berth daemon.
"$BERTH" daemon --data-root "$work/berth-data" --exec-root /run/berth-bench-api -H "unix://$BSOCK" \
  --config-file /nonexistent --bridge bapi0 --bip 10.227.0.1/24 >"$work/berthd.log" 2>&1 &
started_daemon=$!
B="$BERTH -H unix://$BSOCK"
i=0; until $B version >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 100 ] || { cat "$work/berthd.log"; exit 1; }; sleep 0.1; done
$B import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null

# dockerd: its own containerd, roots, socket and no bridge, no iptables. Without dockerd (e.g.
# BENCH_SKIP_INSTALL=1 on a host without docker.io) only berth is timed.
D=""
if command -v dockerd >/dev/null && command -v containerd >/dev/null; then
  mkdir -p "$cdir" "$work/docker"
  containerd --root "$work/docker/containerd" --state "$cdir/state" --address "$cdir/containerd.sock" \
    >"$work/containerd.log" 2>&1 &
  started_containerd=$!
  i=0; until [ -S "$cdir/containerd.sock" ]; do i=$((i+1)); [ $i -lt 100 ] || break; sleep 0.1; done
  dockerd --data-root "$work/docker/data" --exec-root /run/berth-bench-api-docker --pidfile "$work/dockerd.pid" \
    -H "unix://$DSOCK" --containerd "$cdir/containerd.sock" --bridge none \
    --iptables=false --ip6tables=false >"$work/dockerd.log" 2>&1 &
  started_dockerd=$!
  D="docker -H unix://$DSOCK"
  i=0; until $D info >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 150 ] || { cat "$work/dockerd.log"; exit 1; }; sleep 0.2; done
  $D import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null
else
  echo "note: no dockerd here; timing berth only"
fi

# t SOCK METHOD PATH [BODY]: one request, prints curl's time_total in ms.
t() {
  if [ -n "${4:-}" ]; then
    curl -s -o /dev/null -w '%{time_total}\n' --unix-socket "$1" -X "$2" \
      -H 'Content-Type: application/json' --data-binary "$4" "http://api$3"
  else
    curl -s -o /dev/null -w '%{time_total}\n' --unix-socket "$1" -X "$2" "http://api$3"
  fi | awk '{printf "%.3f\n", $1 * 1000}'
}

# median: of the numbers on stdin.
median() {
  sort -n | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}

# repeat SOCK METHOD PATH [BODY]: RUNS timed requests after one warm-up, prints the median
# (0 for the dockerd socket when there is no dockerd).
repeat() {
  if [ "$1" = "$DSOCK" ] && [ -z "$D" ]; then echo 0; return; fi
  t "$@" >/dev/null
  n=0
  while [ $n -lt "$RUNS" ]; do t "$@"; n=$((n + 1)); done | median
}

# exec_true SOCK CONTAINER: RUNS execs of `true`, each created untimed, its start timed.
exec_true() {
  if [ "$1" = "$DSOCK" ] && [ -z "$D" ]; then echo 0; return; fi
  n=0
  while [ $n -lt "$RUNS" ]; do
    id=$(curl -s --unix-socket "$1" -X POST -H 'Content-Type: application/json' \
      --data-binary '{"Cmd":["true"],"AttachStdout":true,"AttachStderr":true}' \
      "http://api/containers/$2/exec" | sed 's/.*"Id":"\([0-9a-f]*\)".*/\1/')
    t "$1" POST "/exec/$id/start" '{"Detach":false,"Tty":false}'
    n=$((n + 1))
  done | median
}

results="$work/results"
# row NAME BERTH_MS DOCKERD_MS
row() { echo "$1 $2 $3" >>"$results"; }

have=0
for n in $COUNTS; do
  # Containers created, not started: listing reads their records and states.
  while [ $have -lt "$n" ]; do
    $B create --network none busybox true >/dev/null
    if [ -n "$D" ]; then $D create --network none busybox true >/dev/null; fi
    have=$((have + 1))
  done
  row "list-$n" "$(repeat $BSOCK GET '/containers/json?all=1')" "$(repeat $DSOCK GET '/containers/json?all=1')"
done

$B run -d --name api-run --network none busybox sleep 3600 >/dev/null
if [ -n "$D" ]; then $D run -d --name api-run --network none busybox sleep 3600 >/dev/null; fi
row inspect "$(repeat $BSOCK GET /containers/api-run/json)" "$(repeat $DSOCK GET /containers/api-run/json)"
row exec-true "$(exec_true $BSOCK api-run)" "$(exec_true $DSOCK api-run)"

# A LOG_MB MiB json-file log: 80-byte lines.
line=0123456789012345678901234567890123456789012345678901234567890123456789012345678
$B run --name api-log --network none busybox sh -c "yes $line | head -c $((LOG_MB * 1048576))" >/dev/null
if [ -n "$D" ]; then
  $D run --name api-log --network none busybox sh -c "yes $line | head -c $((LOG_MB * 1048576))" >/dev/null
fi
row "logs-${LOG_MB}MiB" "$(repeat $BSOCK GET '/containers/api-log/logs?stdout=1&stderr=1')" \
  "$(repeat $DSOCK GET '/containers/api-log/logs?stdout=1&stderr=1')"

$B ps -aq | xargs -r $B rm -f >/dev/null
if [ -n "$D" ]; then $D ps -aq | xargs -r $D rm -f >/dev/null; fi

echo "RUNS=$RUNS, medians in ms (curl time_total over the unix socket)"
awk '{r = ($3 > 0) ? sprintf("%6.2f", $2 / $3) : "   n/a"; printf "%-16s berth %9.3f  dockerd %9.3f  berth/dockerd %s\n", $1, $2, $3, r}' "$results"
