#!/bin/sh
# Swarm mode, one run, same machine, on the multi-node harness (scripts/swarm-cluster.sh: 3
# managers + 2 workers, each daemon in namespaces of its own): `service create --replicas 10`
# until 10/10 run; kill -9 of the leader's daemon until another manager answers `node ls` as
# leader; kill -9 of a worker's daemon and its tasks until its tasks run elsewhere; a rolling
# update of 10 tasks (parallelism 2, monitor 100 ms) until it completes; the added RSS of an
# idle manager. Prints medians over RUNS. Docker's swarm is not timed here (see RESULTS.md).
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
if [ -z "${BERTH:-}" ]; then
  cargo build --release --locked -q
  BERTH=$PWD/target/x86_64-unknown-linux-gnu/release/berth
fi
export BERTH
name=bswb
work=$(mktemp -d /tmp/berth-bench.XXXXXX)
cleanup() {
  scripts/swarm-cluster.sh down $name >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
scripts/mkbusybox.sh "$work/busybox.tar"
BUSYBOX_TAR=$work/busybox.tar scripts/swarm-cluster.sh up $name 5

d() { i=$1; shift; DOCKER_HOST=unix:///run/$name/node$i.sock docker "$@"; }
now() { date +%s%N; }
ms() { echo $((($2 - $1) / 1000000)); }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$(cat /run/$name/node$1.pid)/status"; }
ready() { [ "$(d "$1" node ls --format '{{.Status}}' 2>/dev/null | grep -c Ready)" -eq 5 ]; }
# wait_for 'COND': evaluates the shell condition every 20 ms until it holds (at most 60 s).
wait_for() { n=0; until eval "$1"; do n=$((n + 1)); [ $n -lt 3000 ] || { echo "timed out: $1" >&2; exit 1; }; sleep 0.02; done; }

rss_before=$(rss 1)
d 1 swarm init --advertise-addr 10.231.0.11 >/dev/null
mt=$(d 1 swarm join-token -q manager)
wt=$(d 1 swarm join-token -q worker)
for i in 2 3; do d $i swarm join --token "$mt" --advertise-addr 10.231.0.1$i 10.231.0.11:2377 >/dev/null; done
for i in 4 5; do d $i swarm join --token "$wt" --advertise-addr 10.231.0.1$i 10.231.0.11:2377 >/dev/null; done
wait_for 'ready 1'
sleep 5
rss_idle=$(rss 1)

running() { d "$1" service ls --filter name=bench --format '{{.Replicas}}' 2>/dev/null; }
leader_of() { d "$1" node ls --format '{{.Hostname}} {{.ManagerStatus}}' 2>/dev/null | awk '$2 == "Leader" {print $1}'; }

: >"$work/create"; : >"$work/failover"; : >"$work/resched"; : >"$work/update"
r=1
while [ $r -le "$RUNS" ]; do
  # 1. create until 10/10 running.
  t0=$(now)
  d 1 service create -d --no-resolve-image --name bench --replicas 10 busybox sleep 100000 >/dev/null
  wait_for 'test "$(running 1)" = "10/10"'
  ms "$t0" "$(now)" >>"$work/create"

  # 2. rolling update of the 10 tasks.
  t0=$(now)
  d 1 service update -d --update-parallelism 2 --update-monitor 100ms --env-add "RUN=$r" bench >/dev/null
  wait_for 'test "$(d 1 service inspect bench --format "{{.UpdateStatus.State}}")" = completed'
  ms "$t0" "$(now)" >>"$work/update"

  # 3. a worker dies with its tasks: until 10 run on the other nodes.
  scripts/swarm-cluster.sh kill $name 4
  t0=$(now)
  wait_for 'test "$(d 1 service ps bench --filter desired-state=running --format "{{.Node}} {{.CurrentState}}" | grep -v node4 | grep -c Running)" -ge 10'
  ms "$t0" "$(now)" >>"$work/resched"
  scripts/swarm-cluster.sh start $name 4
  wait_for 'ready 1'
  d 1 service rm bench >/dev/null
  wait_for 'test -z "$(d 1 service ls -q)"'

  # 4. the leader's daemon dies: until another manager answers as leader.
  old=$(leader_of 1)
  [ -n "$old" ] || old=$(leader_of 2)
  oi=${old#node}
  probe=$((oi % 3 + 1))
  scripts/swarm-cluster.sh crash $name "$oi"
  t0=$(now)
  wait_for 'test -n "$(leader_of "$probe")" && test "$(leader_of "$probe")" != "$old"'
  ms "$t0" "$(now)" >>"$work/failover"
  scripts/swarm-cluster.sh start $name "$oi"
  wait_for 'ready "$probe"'
  # The restarted manager takes commands again once it knows the new leader.
  wait_for 'test -n "$(leader_of 1)"'
  r=$((r + 1))
done

echo "runs: $RUNS (3 managers + 2 workers, each daemon in its own namespaces; $(nproc) cores)"
echo "service create --replicas 10 until 10/10 running: $(median <"$work/create") ms (target <= 1000)"
echo "rolling update of 10 tasks (parallelism 2, monitor 100ms) until completed: $(median <"$work/update") ms"
echo "worker daemon + tasks killed until its tasks run elsewhere: $(median <"$work/resched") ms (target <= 6000; Docker >= ~20000)"
echo "leader daemon killed until a new leader answers node ls: $(median <"$work/failover") ms (target <= 2000; Docker 10000-19000)"
echo "idle manager RSS: $((rss_before / 1024)) MiB before init, $((rss_idle / 1024)) MiB in the swarm: +$(((rss_idle - rss_before) / 1024)) MiB (target <= 15)"
