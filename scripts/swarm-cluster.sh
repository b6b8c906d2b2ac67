#!/bin/sh
# Several berth "hosts" on one machine for swarm tests and benches: each daemon runs in a
# network namespace of its own (plus its own UTS namespace for the hostname), joined to the
# others by one bridge "LAN" that lives in a namespace of its own too, with its own data root,
# exec root, default bridge, cgroup parent and socket. Nothing touches the host's network.
#
#   scripts/swarm-cluster.sh up NAME N [LAN_OCTET]   start N daemons (node1..nodeN)
#   scripts/swarm-cluster.sh stop NAME               remove every container, TERM every daemon
#   scripts/swarm-cluster.sh check NAME              after stop: print what the daemons left
#   scripts/swarm-cluster.sh down NAME               stop, then remove everything by force
#   scripts/swarm-cluster.sh env NAME I              print DOCKER_HOST for node I
#   scripts/swarm-cluster.sh crash NAME I            kill -9 node I's daemon (its tasks live on)
#   scripts/swarm-cluster.sh kill NAME I             kill -9 node I's daemon, shims and containers
#   scripts/swarm-cluster.sh start NAME I            start node I's daemon again on its roots
#
# Node I answers on unix:///run/NAME/nodeI.sock, has the LAN address 10.LAN.0.(10+I)/24 (LAN
# defaults to 231), its default bridge NAMEbI on 10.LAN.(100+I).1/24, data root
# /var/lib/NAME/nodeI, exec root /run/NAME/nodeI, cgroup parent NAME-nodeI, and logs to
# /var/lib/NAME/nodeI.log. BERTH (default: berth on PATH) is the binary; BERTH_FLAGS are added
# to every daemon's flags; BUSYBOX_TAR (a tarball from scripts/mkbusybox.sh) is imported on
# every node as busybox:latest.
#
# `check` lists, one "nodeI: what" line each, what cleanly stopped daemons left behind: mounts
# under a node's roots, cgroups under its cgroup parent and processes in them or in its network
# namespace, links other than lo, eth0 and its default bridge, nftables tables other than
# berth's own and elements in berth's table other than the default bridge's (a stopped daemon
# keeps its bridge and table, as dockerd keeps docker0 and its chains: its containers may live
# on under their shims, and the next start rebuilds both), xfrm states and policies, and task
# files under swarm/files. `down` force-cleans whatever is left and prints a "removed: ..." line
# for each process, mount and cgroup it had to remove, so that a caller can tell a leak from
# the namespaces and roots the harness itself made.
set -eu

cmd=${1:-}
name=${2:-}
[ -n "$cmd" ] && [ -n "$name" ] || {
  echo "usage: $0 up NAME N [LAN_OCTET] | down NAME | env|crash|kill|start NAME I" >&2
  exit 2
}
case "$name" in
  *[!a-z0-9]* | ????????*) echo "NAME must be 1-7 lower-case letters or digits" >&2; exit 2 ;;
esac
berth=${BERTH:-berth}
run=/run/$name
lib=/var/lib/$name
lanns=$name-lan

start_node() {
  i=$1
  lan=$2
  ns=$name-n$i
  ip netns add "$ns"
  ip link add "${name}v$i" type veth peer name eth0 netns "$ns"
  ip link set "${name}v$i" netns "$lanns"
  ip -n "$lanns" link set "${name}v$i" master "${name}lan" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "10.$lan.0.$((10 + i))/24" dev eth0
  ip -n "$ns" link set eth0 up
  mkdir -p "$run/node$i" "$lib/node$i"
  echo "$lan" >"$run/lan"
  run_daemon "$i" "$lan"
}

run_daemon() {
  i=$1
  lan=$2
  ns=$name-n$i
  # nsenter joins the node's network namespace only (ip netns exec would also make a mount
  # namespace, hiding the daemon's mounts from the host's leak checks); unshare gives the node
  # a hostname of its own.
  # shellcheck disable=SC2086
  nohup nsenter --net="/run/netns/$ns" unshare --uts sh -c \
    "hostname node$i && exec $berth daemon --data-root $lib/node$i --exec-root $run/node$i \
     -H unix://$run/node$i.sock --bridge ${name}b$i --bip 10.$lan.$((100 + i)).1/24 \
     --default-address-pool base=10.$lan.$((200 + i)).0/24,size=26 \
     --cgroup-parent $name-node$i --dns 127.0.0.1 --config-file /nonexistent/berth.json \
     ${BERTH_FLAGS:-}" >>"$lib/node$i.log" 2>&1 &
  echo $! >"$run/node$i.pid"
}

wait_node() {
  tries=0
  until "$berth" -H "unix://$run/node$1.sock" version >/dev/null 2>&1; do
    tries=$((tries + 1))
    # 60 s: a loaded machine (parallel builds) can be slow to start a daemon.
    [ $tries -lt 1200 ] || {
      echo "node$1 did not come up; the end of $lib/node$1.log:" >&2
      tail -n 40 "$lib/node$1.log" >&2
      exit 1
    }
    sleep 0.05
  done
}

# Every container removed through its daemon, then every daemon stopped with TERM (all at
# once, then waited for); one that is still there after 10 s is killed and reported.
stop_all() {
  n=$(cat "$run/nodes" 2>/dev/null || echo 0)
  i=1
  while [ $i -le "$n" ]; do
    sock=unix://$run/node$i.sock
    if ids=$("$berth" -H "$sock" ps -aq 2>/dev/null) && [ -n "$ids" ]; then
      # shellcheck disable=SC2086
      "$berth" -H "$sock" rm -f -v $ids >/dev/null 2>&1 || true
    fi
    # The pid is nsenter's, which exec'd unshare, which exec'd sh, which exec'd berth.
    [ -f "$run/node$i.pid" ] && kill -TERM "$(cat "$run/node$i.pid")" 2>/dev/null || true
    i=$((i + 1))
  done
  i=1
  while [ $i -le "$n" ]; do
    if [ -f "$run/node$i.pid" ]; then
      pid=$(cat "$run/node$i.pid")
      t=0
      while kill -0 "$pid" 2>/dev/null && [ $t -lt 100 ]; do sleep 0.1; t=$((t + 1)); done
      if kill -0 "$pid" 2>/dev/null; then
        echo "removed: node$i daemon $pid, still running 10 s after TERM"
        kill -KILL "$pid" 2>/dev/null || true
      fi
      rm -f "$run/node$i.pid"
    fi
    i=$((i + 1))
  done
}

# The processes of node I: in its network namespace (daemon, shims) or its cgroups.
node_pids() {
  {
    ip netns pids "$name-n$1" 2>/dev/null || true
    for d in /sys/fs/cgroup/*/"$name-node$1" /sys/fs/cgroup/"$name-node$1"; do
      [ -d "$d" ] || continue
      find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null || true
    done
  } | sort -un
}

# What node I's stopped daemon left (see the top of this file), one line each.
check_node() {
  i=$1
  ns=$name-n$i
  br=${name}b$i
  lan=$(cat "$run/lan")
  for p in $(node_pids "$i"); do
    echo "node$i: process $p $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null || true)"
  done
  grep -E " ($run/node$i|$lib/node$i)/" /proc/mounts | awk -v n="node$i" '{print n ": mount " $2}' || true
  for d in /sys/fs/cgroup/*/"$name-node$i" /sys/fs/cgroup/"$name-node$i"; do
    [ -d "$d" ] || continue
    find "$d" -mindepth 1 -type d | sed "s|^|node$i: cgroup |"
  done
  ip -n "$ns" -o -d link show 2>/dev/null | awk -F': ' -v n="node$i" -v br="$br" '{
    l = $2; sub(/@.*/, "", l)
    if (l != "lo" && l != "eth0" && l != br) print n ": link " $0
  }'
  tables=$(ip netns exec "$ns" nft list tables 2>/dev/null || true)
  echo "$tables" | grep -vxE "table ip6? berth_$br|" | sed "s/^/node$i: nft /" || true
  # Elements of berth's table: only the default bridge's (its name, the pair of it, its subnet).
  for fam in ip ip6; do
    echo "$tables" | grep -qx "table $fam berth_$br" || continue
    ip netns exec "$ns" nft list table "$fam" "berth_$br" 2>/dev/null | awk -v fam="$fam" '
      /^[[:space:]]*(set|map) / { what = $2 }
      /elements = \{/ { on = 1; sub(/.*elements = \{/, "") }
      on {
        done = sub(/\}.*/, "")
        k = split($0, parts, ",")
        for (j = 1; j <= k; j++) {
          e = parts[j]; gsub(/^[[:space:]]+|[[:space:]]+$/, "", e)
          if (e != "") print fam " " what ": " e
        }
        if (done) on = 0
      }' |
      grep -vxE "$fam (bridges: \"?$br\"?|same: \"?$br\"? \. \"?$br\"?|(masq_nets|nets): 10\.$lan\.$((100 + i))\.0/24)" |
      sed "s/^/node$i: nft element /" || true
  done
  ip -n "$ns" xfrm state 2>/dev/null | grep -E "^src " | sed "s/^/node$i: xfrm state /" || true
  ip -n "$ns" xfrm policy 2>/dev/null | grep -E "^src " | sed "s/^/node$i: xfrm policy /" || true
  ls -A "$run/node$i/swarm/files" 2>/dev/null | sed "s|^|node$i: swarm/files/|" || true
}

case "$cmd" in
  up)
    n=${3:?N nodes}
    lan=${4:-231}
    mkdir -p "$run" "$lib"
    ip netns add "$lanns"
    ip -n "$lanns" link add "${name}lan" type bridge
    ip -n "$lanns" link set "${name}lan" up
    i=1
    while [ $i -le "$n" ]; do
      start_node $i "$lan"
      i=$((i + 1))
    done
    echo "$n" >"$run/nodes"
    i=1
    while [ $i -le "$n" ]; do
      wait_node $i
      if [ -n "${BUSYBOX_TAR:-}" ]; then
        "$berth" -H "unix://$run/node$i.sock" import --change 'CMD ["sh"]' "$BUSYBOX_TAR" busybox:latest >/dev/null
      fi
      i=$((i + 1))
    done
    ;;
  env)
    echo "DOCKER_HOST=unix://$run/node${3:?I}.sock"
    ;;
  crash | kill)
    i=${3:?I}
    kill -KILL "$(cat "$run/node$i.pid")" 2>/dev/null || true
    if [ "$cmd" = kill ]; then
      # The node's own processes (daemon, shims) live in its network namespace; its
      # containers in its cgroups.
      ip netns pids "$name-n$i" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
      for d in /sys/fs/cgroup/*/"$name-node$i" /sys/fs/cgroup/"$name-node$i"; do
        [ -d "$d" ] || continue
        find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
      done
    fi
    ;;
  start)
    i=${3:?I}
    run_daemon "$i" "$(cat "$run/lan")"
    wait_node "$i"
    ;;
  stop)
    stop_all
    ;;
  check)
    n=$(cat "$run/nodes" 2>/dev/null || echo 0)
    i=1
    while [ $i -le "$n" ]; do
      check_node $i
      i=$((i + 1))
    done
    ;;
  down)
    stop_all
    n=$(cat "$run/nodes" 2>/dev/null || echo 0)
    # Whatever is left: processes in a node's network namespace (shims) and in its cgroups
    # (containers), then mounts and cgroups.
    i=1
    while [ $i -le "$n" ]; do
      for p in $(node_pids $i); do
        echo "removed: node$i process $p $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null || true)"
        kill -KILL "$p" 2>/dev/null || true
      done
      i=$((i + 1))
    done
    sleep 0.2
    grep -E " ($run|$lib)/" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do
      echo "removed: mount $m"
      umount -l "$m" 2>/dev/null || true
    done
    for d in /sys/fs/cgroup/*/"$name"-node* /sys/fs/cgroup/"$name"-node*; do
      [ -d "$d" ] || continue
      find "$d" -mindepth 1 -type d | sed 's/^/removed: cgroup /'
      find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    i=1
    while [ $i -le "$n" ]; do
      ip netns delete "$name-n$i" 2>/dev/null || true
      i=$((i + 1))
    done
    ip netns delete "$lanns" 2>/dev/null || true
    rm -rf "$run" "$lib"
    ;;
  *)
    echo "unknown command $cmd" >&2
    exit 2
    ;;
esac
