#!/bin/sh
# berth's swarm data plane: TCP throughput and latency container → container on one node's
# bridge, across two nodes on an attachable overlay (VXLAN), through a service VIP (nftables
# DNAT in the client's namespace) and through the routing mesh (DNAT on the node that takes
# the connection, no SNAT), on the multi-node harness (scripts/swarm-cluster.sh, LAN
# 10.233.0.0/24, each daemon in its own network namespace; no traffic leaves them).
#
# The load tool is crates/berth/examples/netload.rs, built static and bind-mounted into busybox
# containers: `stream` (MB/s over one connection for STREAM_SECS), `rr` (RR_COUNT round trips
# of RR_SIZE bytes on one connection: median and p99 µs) and `connrr` (CONN_COUNT new
# connections, each connect + 1 byte + its echo + close: median µs; the path DNAT acts on).
# Paths, client → server:
#   bridge   two containers on a user bridge network on node1
#   lan      node1's namespace → node2's namespace over the harness LAN (no VXLAN; reference)
#   overlay  a container on node1 → the task on node2 by its overlay address
#   vip      the same container → the service's VIP (its only task on node2)
#   ingress  node1's namespace → the mesh service's task on node2 by its ingress address (no
#            DNAT: what the mesh path costs without the mesh)
#   mesh     node1's namespace → node1's LAN address:published port, the only task on node2
#   meshloc  the same, with the task on node1
# Each measurement is taken RUNS times (default 5), the paths interleaved within a run; the
# script prints medians, overlay/bridge throughput and the latency VIP and mesh add over the
# overlay (connrr). BERTH=path skips the release build of berth; NETLOAD=path that of netload.
# Everything it starts goes with the cluster (trap), and its temporary directory with it.
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
STREAM_SECS=${STREAM_SECS:-5}
RR_COUNT=${RR_COUNT:-5000}
RR_SIZE=${RR_SIZE:-64}
CONN_COUNT=${CONN_COUNT:-1000}
name=obench
lan=233
. bench/lib.sh
bench_need busybox-static
if [ -z "${BERTH:-}" ]; then
  CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} cargo build --release --locked -q -p berth
  BERTH=$PWD/target/x86_64-unknown-linux-gnu/release/berth
fi
export BERTH
work=$(mktemp -d /tmp/berth-obench.XXXXXX)
cleanup() {
  scripts/swarm-cluster.sh down $name >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
chmod 755 "$work"
mkdir "$work/bin"
if [ -n "${NETLOAD:-}" ]; then
  cp "$NETLOAD" "$work/bin/netload"
else
  # std only, so rustc alone builds it (cargo would also build the berth package's
  # dev-dependencies for an example); static, as the busybox image has no libc.
  rustc --edition 2021 -O -C target-feature=+crt-static --target x86_64-unknown-linux-gnu \
    crates/berth/examples/netload.rs -o "$work/bin/netload"
fi
scripts/mkbusybox.sh "$work/busybox.tar"
export DOCKER_CONFIG=$work/docker-config

d() { i=$1; shift; DOCKER_HOST=unix:///run/$name/node$i.sock docker "$@"; }
on_node() { i=$1; shift; ip netns exec "$name-n$i" "$@"; }
nl=/nl/netload
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "-"; else print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
# field KEY: the value of KEY=... in netload's output line on stdin.
field() { tr ' ' '\n' | sed -n "s/^$1=//p"; }
# wait_for 'COND' WHAT: evaluates the condition every 100 ms until it holds (at most 60 s).
wait_for() {
  deadline=$(($(date +%s) + 60))
  until eval "$1" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt $deadline ] || { echo "timed out waiting for $2" >&2; exit 1; }
    sleep 0.1
  done
}
# running SERVICE NODE: the service's one running task is on NODE.
running() {
  d 1 service ps "$1" --filter desired-state=running --format '{{.Node}} {{.CurrentState}}' |
    grep -q "^$2 Running"
}

BUSYBOX_TAR=$work/busybox.tar scripts/swarm-cluster.sh up $name 2 $lan
n1=10.$lan.0.11
n2=10.$lan.0.12
d 1 swarm init --advertise-addr $n1 >/dev/null
d 2 swarm join --token "$(d 1 swarm join-token -q worker)" --advertise-addr $n2 $n1:2377 >/dev/null
wait_for 'test "$(d 1 node ls --format "{{.Status}}" | grep -c Ready)" -eq 2' "two ready nodes"

mnt="type=bind,src=$work/bin,dst=/nl,readonly"
# bridge: server and client on a user bridge network of node1.
d 1 network create obr >/dev/null
d 1 run -d --name bsrv --network obr --mount "$mnt" busybox $nl serve 9000 >/dev/null
d 1 run -d --name bcli --network obr --mount "$mnt" busybox sleep 1000000 >/dev/null
bsrv=$(d 1 inspect bsrv --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}')

# overlay and VIP: the server service's only task on node2; the client attached on node1.
d 1 network create -d overlay --attachable oov >/dev/null
d 1 service create -d --no-resolve-image --name srv --network oov --replicas 1 \
  --constraint node.hostname==node2 --mount "$mnt" busybox $nl serve 9000 >/dev/null
# mesh: the same server published on 9001 of every node.
d 1 service create -d --no-resolve-image --name mesh --replicas 1 -p 9001:9000 \
  --constraint node.hostname==node2 --mount "$mnt" busybox $nl serve 9000 >/dev/null
d 1 run -d --name ocli --network oov --mount "$mnt" busybox sleep 1000000 >/dev/null
wait_for 'running srv node2' "srv on node2"
wait_for 'running mesh node2' "mesh on node2"
# one_task SERVICE NODE: the id of the service's one container on NODE (a task that failed
# early may still be on its way out).
one_task() {
  svc=$1 node=$2
  wait_for 'test "$(d $node ps -q --filter label=com.docker.swarm.service.name=$svc | wc -l)" -eq 1' "one $svc container on node$node"
  d "$node" ps -q --filter label=com.docker.swarm.service.name="$svc"
}
task=$(one_task srv 2)
# Every task the two services had so far (a failed one shows its error).
d 1 service ps srv mesh --no-trunc --format '{{.Name}} {{.Node}} {{.DesiredState}} {{.CurrentState}} {{.Error}}' >&2
osrv=$(d 2 inspect "$task" --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}')
vip=$(d 1 service inspect srv --format '{{range .Endpoint.VirtualIPs}}{{.Addr}}{{end}}')
vip=${vip%/*}
mtask=$(one_task mesh 2)
isrv=$(d 2 inspect "$mtask" --format '{{(index .NetworkSettings.Networks "ingress").IPAddress}}')
# lan: a server in node2's own namespace (gone with the namespace at cleanup).
on_node 2 "$work/bin/netload" serve 9100 >/dev/null 2>&1 &

# client PATH: sets cmd (how that path's client runs netload) and target (ADDR:PORT).
client() {
  case $1 in
    bridge) cmd="d 1 exec bcli $nl" target=$bsrv:9000 ;;
    lan) cmd="on_node 1 $work/bin/netload" target=$n2:9100 ;;
    overlay) cmd="d 1 exec ocli $nl" target=$osrv:9000 ;;
    vip) cmd="d 1 exec ocli $nl" target=$vip:9000 ;;
    ingress) cmd="on_node 1 $work/bin/netload" target=$isrv:9000 ;;
    mesh | meshloc) cmd="on_node 1 $work/bin/netload" target=$n1:9001 ;;
  esac
}
# probe PATH: one request over that path gets its answer.
probe() {
  client "$1"
  $cmd connrr "$target" 1 >/dev/null 2>&1
}
# measure PATH MODE ARGS...: one netload run; appends its figures to $work/PATH.MODE*.
measure() {
  p=$1
  m=$2
  shift 2
  client "$p"
  out=$($cmd "$m" "$target" "$@" 2>&1) || { echo "$p $m failed: $out" >&2; exit 1; }
  case $m in
    stream) echo "$out" | field mbps >>"$work/$p.stream" ;;
    rr | connrr)
      echo "$out" | field median_us >>"$work/$p.$m"
      echo "$out" | field p99_us >>"$work/$p.${m}99"
      ;;
  esac
  echo "  $p $m: $out" >&2
}
paths="bridge lan overlay vip ingress mesh"
for p in $paths; do
  wait_for 'probe $p' "$p to answer"
done
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

run_paths() {
  r=1
  while [ $r -le "$RUNS" ]; do
    echo "run $r ($*)" >&2
    for p in "$@"; do
      case $p in bridge | lan | overlay) measure "$p" stream "$STREAM_SECS" ;; esac
    done
    for p in "$@"; do measure "$p" rr "$RR_COUNT" "$RR_SIZE"; done
    for p in "$@"; do measure "$p" connrr "$CONN_COUNT"; done
    r=$((r + 1))
  done
}
run_paths $paths

# meshloc: the mesh service's task moved to node1 (the node that takes the connections).
d 1 service update -d --constraint-rm node.hostname==node2 --constraint-add node.hostname==node1 mesh >/dev/null
wait_for 'running mesh node1' "mesh on node1"
wait_for 'test -z "$(d 2 ps -q --filter label=com.docker.swarm.service.name=mesh)"' "mesh task gone from node2"
wait_for 'probe meshloc' "meshloc to answer"
run_paths meshloc
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

med() { if [ -s "$work/$1" ]; then median <"$work/$1"; else echo -; fi; }
diffus() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "-" || b == "-") print "-"; else printf "%+.0f", a - b}'; }
echo "runs: $RUNS; stream $STREAM_SECS s; rr $RR_COUNT × $RR_SIZE B on one connection; connrr $CONN_COUNT new connections; $(nproc) cores; load $load_before before, $load_after after"
echo "berth: $("$BERTH" --version 2>/dev/null | head -n1) ($(git rev-parse --short HEAD 2>/dev/null || echo -)); $(uname -r)"
echo "| path | stream MB/s | rr median µs | rr p99 µs | connrr median µs | connrr p99 µs | connrr − overlay µs |"
echo "|---|---|---|---|---|---|---|"
oc=$(med overlay.connrr)
for p in bridge lan overlay vip ingress mesh meshloc; do
  echo "| $p | $(med $p.stream) | $(med $p.rr) | $(med $p.rr99) | $(med $p.connrr) | $(med $p.connrr99) | $(diffus "$(med $p.connrr)" "$oc") |"
done
bs=$(med bridge.stream)
os=$(med overlay.stream)
echo "overlay/bridge throughput: $(awk -v o="$os" -v b="$bs" 'BEGIN {printf "%.2f", o / b}') (target ≥ 0.8)"
echo "added connrr median: vip $(diffus "$(med vip.connrr)" "$oc") µs, mesh $(diffus "$(med mesh.connrr)" "$oc") µs over the overlay (target ≤ 50); mesh $(diffus "$(med mesh.connrr)" "$(med ingress.connrr)") µs over the same client straight to the task"
for p in bridge lan overlay vip ingress mesh meshloc; do
  echo "$p runs: stream $(paste -sd, "$work/$p.stream" 2>/dev/null || echo -) | rr $(paste -sd, "$work/$p.rr") | connrr $(paste -sd, "$work/$p.connrr")"
done
