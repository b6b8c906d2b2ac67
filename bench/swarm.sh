#!/bin/sh
# Swarm mode, berth against Docker's swarm in the same run, same machine, each on a 3-manager +
# 2-worker harness of daemons in network namespaces of their own (berth:
# scripts/swarm-cluster.sh on LAN 10.231.0.0/24; Docker: scripts/dockerd-cluster.sh, Debian's
# dockerd with its own containerd per node, on a separate LAN 10.232.0.0/24). Times, per engine:
# `service create --replicas 10` until 10/10 run; a rolling update of the 10 tasks (parallelism
# 2, monitor 100 ms, stop grace 1 s) until it completes; kill -9 of the daemon of the worker
# with more tasks, and of those tasks, until they run elsewhere; kill -9 of the leader's daemon
# until another manager answers `node ls` with a new leader; and the RSS of an idle manager
# node's processes (berth's daemon; dockerd and its containerd) before and in the swarm. Prints the
# medians over RUNS and docker/berth. Services use `--endpoint-mode dnsrr` and publish nothing
# on both engines (this kernel has no IPVS, which Docker's VIPs and routing mesh need).
# ENGINES="berth docker" (the default) picks what runs; BERTH=path skips the release build.
# Stops only what it started; the root namespace's sysctls are compared before and after, and
# any the run changed are put back.
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
ENGINES=${ENGINES:-berth docker}
. bench/lib.sh
case " $ENGINES " in *" docker "*) bench_need docker.io containerd runc busybox-static ;; *) bench_need busybox-static ;; esac
if [ -z "${BERTH:-}" ]; then
  cargo build --release --locked -q
  BERTH=$PWD/target/x86_64-unknown-linux-gnu/release/berth
fi
export BERTH
work=$(mktemp -d /tmp/berth-bench.XXXXXX)

# Root-namespace sysctls that move by themselves are left out of the comparison.
sysctls() {
  sysctl -a 2>/dev/null |
    grep -vE '^(fs\.(dentry-state|file-nr|inode-nr|inode-state|quota\.)|kernel\.ns_last_pid|kernel\.random\.|net\.netfilter\.nf_conntrack_count)'
}
sysctls >"$work/sysctl.before"
bnf=/proc/sys/net/bridge/bridge-nf-call-iptables
bnf_before=$(cat $bnf 2>/dev/null || echo absent)
cleanup() {
  scripts/swarm-cluster.sh down bswb >/dev/null 2>&1 || true
  scripts/dockerd-cluster.sh down dswb >/dev/null 2>&1 || true
  sysctls >"$work/sysctl.after"
  diff "$work/sysctl.before" "$work/sysctl.after" | sed -n 's/^< //p' | while IFS= read -r line; do
    key=${line%% = *}
    val=${line#* = }
    [ -w "/proc/sys/$(echo "$key" | tr . /)" ] || continue
    echo "sysctl $key changed during the run; restoring $val" >&2
    sysctl -q -w "$key=$val" >/dev/null 2>&1 || echo "could not restore $key" >&2
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
scripts/mkbusybox.sh "$work/busybox.tar"

now() { date +%s%N; }
ms() { echo $((($2 - $1) / 1000000)); }
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "-"; else print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
# wait_for 'COND': evaluates the shell condition every 20 ms until it holds (at most 180 s).
wait_for() {
  deadline=$(($(date +%s) + 180))
  until eval "$1"; do
    [ "$(date +%s)" -lt $deadline ] || { echo "$engine: timed out: $1" >&2; exit 1; }
    sleep 0.02
  done
}

# These use the engine under test: $name (its cluster's name) and $cluster (its script).
d() { i=$1; shift; DOCKER_HOST=unix:///run/$name/node$i.sock docker "$@"; }
# rss I: KiB resident in all of node I's processes (the daemon; for Docker also its containerd).
rss() {
  for p in $(ip netns pids "$name-n$1"); do awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null; done |
    awk '{s += $1} END {print s + 0}'
}
ready() { [ "$(d "$1" node ls --format '{{.Status}}' 2>/dev/null | grep -c Ready)" -eq 5 ]; }
running() { d "$1" service ls --filter name=bench --format '{{.Replicas}}' 2>/dev/null; }
leader_of() { d "$1" node ls --format '{{.Hostname}} {{.ManagerStatus}}' 2>/dev/null | awk '$2 == "Leader" {print $1}'; }
tasks() { d 1 service ps bench --filter desired-state=running --format "{{.Node}} {{.CurrentState}}" 2>/dev/null; }
# on_node I: running tasks on node I; moved I: running tasks on the other nodes.
on_node() { tasks | grep -c "^node$1 Running" || true; }
moved() { tasks | grep -v "^node$1 " | grep -c Running || true; }

# measure ENGINE LAN: bring the engine's cluster up, time RUNS rounds, leave the figures in
# $work/ENGINE.*, take the cluster down.
measure() {
  engine=$1
  lan=$2
  case $engine in
    berth) name=bswb cluster=scripts/swarm-cluster.sh ;;
    docker) name=dswb cluster=scripts/dockerd-cluster.sh ;;
  esac
  BUSYBOX_TAR=$work/busybox.tar $cluster up $name 5 "$lan"
  rss_before=$(rss 1)
  d 1 swarm init --advertise-addr "10.$lan.0.11" >/dev/null
  mt=$(d 1 swarm join-token -q manager)
  wt=$(d 1 swarm join-token -q worker)
  for i in 2 3; do d $i swarm join --token "$mt" --advertise-addr "10.$lan.0.1$i" "10.$lan.0.11:2377" >/dev/null; done
  for i in 4 5; do d $i swarm join --token "$wt" --advertise-addr "10.$lan.0.1$i" "10.$lan.0.11:2377" >/dev/null; done
  wait_for 'ready 1'
  sleep 5
  rss_idle=$(rss 1)
  echo "$rss_before $rss_idle" >"$work/$engine.rss"
  if [ "$engine" = docker ]; then
    echo "$(cat $bnf 2>/dev/null || echo absent)" >"$work/bnf.during"
  fi

  : >"$work/$engine.create"; : >"$work/$engine.failover"; : >"$work/$engine.resched"; : >"$work/$engine.update"
  r=1
  while [ $r -le "$RUNS" ]; do
    # 1. create until 10/10 running.
    t0=$(now)
    d 1 service create -d --no-resolve-image --endpoint-mode dnsrr --stop-grace-period 1s \
      --name bench --replicas 10 busybox sleep 100000 >/dev/null
    wait_for 'test "$(running 1)" = "10/10"'
    ms "$t0" "$(now)" >>"$work/$engine.create"

    # 2. rolling update of the 10 tasks.
    t0=$(now)
    d 1 service update -d --update-parallelism 2 --update-monitor 100ms --env-add "RUN=$r" bench >/dev/null
    wait_for 'test "$(d 1 service inspect bench --format "{{.UpdateStatus.State}}" 2>/dev/null)" = completed'
    ms "$t0" "$(now)" >>"$work/$engine.update"

    # 3. the worker with more tasks dies with them: until 10 run on the other nodes.
    v=4
    nv=$(on_node 4)
    [ "$(on_node 5)" -le "$nv" ] || { v=5; nv=$(on_node 5); }
    $cluster kill $name $v
    t0=$(now)
    wait_for 'test "$(moved $v)" -ge 10'
    if [ "$nv" -gt 0 ]; then
      ms "$t0" "$(now)" >>"$work/$engine.resched"
    else
      echo "$engine run $r: no task on a worker, rescheduling not timed" >&2
    fi
    $cluster start $name $v
    wait_for 'ready 1'
    d 1 service rm bench >/dev/null
    wait_for 'test -z "$(d 1 service ls -q)"'

    # 4. the leader's daemon dies: until another manager answers as leader.
    old=$(leader_of 1)
    [ -n "$old" ] || old=$(leader_of 2)
    oi=${old#node}
    probe=$((oi % 3 + 1))
    $cluster crash $name "$oi"
    t0=$(now)
    wait_for 'test -n "$(leader_of "$probe")" && test "$(leader_of "$probe")" != "$old"'
    ms "$t0" "$(now)" >>"$work/$engine.failover"
    $cluster start $name "$oi"
    wait_for 'ready "$probe"'
    # The restarted manager takes commands again once it knows the new leader.
    wait_for 'test -n "$(leader_of 1)"'
    echo "$engine run $r: create $(tail -n1 "$work/$engine.create") ms, update $(tail -n1 "$work/$engine.update") ms," \
      "resched $(tail -n1 "$work/$engine.resched") ms (node$v had $nv tasks), failover $(tail -n1 "$work/$engine.failover") ms" >&2
    r=$((r + 1))
  done
  $cluster down $name
}

lan=231
for e in $ENGINES; do
  case $e in
    berth | docker) measure "$e" $lan ;;
    *) echo "unknown engine $e (berth or docker)" >&2; exit 2 ;;
  esac
  lan=$((lan + 1))
done

# row LABEL FILE: the medians of both engines and docker/berth.
row() {
  b=-
  k=-
  [ ! -s "$work/berth.$2" ] || b=$(median <"$work/berth.$2")
  [ ! -s "$work/docker.$2" ] || k=$(median <"$work/docker.$2")
  ratio=$(awk -v b="$b" -v k="$k" 'BEGIN {if (b + 0 > 0 && k + 0 > 0) printf "%.1f", k / b; else print "-"}')
  echo "| $1 | $b | $k | $ratio |"
}
rss_row() {
  for e in berth docker; do
    if [ -f "$work/$e.rss" ]; then
      read -r before idle <"$work/$e.rss"
      printf ' %s → %s MiB (+%s) |' $((before / 1024)) $((idle / 1024)) $(((idle - before) / 1024))
    else
      printf ' - |'
    fi
  done
  echo
}
echo "runs: $RUNS; 3 managers + 2 workers per engine, each daemon in its own network namespace; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "berth: $("$BERTH" --version 2>/dev/null | head -n1); docker: $(dockerd --version 2>/dev/null || echo -)"
echo "| median, ms | berth | docker | docker/berth |"
echo "|---|---|---|---|"
row "service create --replicas 10 until 10/10 running" create
row "rolling update of 10 tasks (parallelism 2, monitor 100 ms, stop grace 1 s) until completed" update
row "worker daemon + tasks killed until its tasks run elsewhere" resched
row "leader daemon killed until a new leader answers node ls" failover
printf '| idle manager node RSS, before init → 5 s into the swarm |'
rss_row
for e in berth docker; do
  [ -f "$work/$e.create" ] && echo "$e runs (create update resched failover): $(paste -sd, "$work/$e.create") | $(paste -sd, "$work/$e.update") | $(paste -sd, "$work/$e.resched") | $(paste -sd, "$work/$e.failover")"
done
echo "root namespace $bnf: $bnf_before before, $(cat "$work/bnf.during" 2>/dev/null || echo -) with dockerd's swarm up, $(cat $bnf 2>/dev/null || echo absent) after"
