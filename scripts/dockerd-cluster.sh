#!/bin/sh
# Several Docker (Debian's dockerd) "hosts" on one machine, the twin of swarm-cluster.sh so that
# benches can time Docker's swarm on the same kind of harness: each dockerd runs in a network
# namespace of its own (plus its own UTS namespace for the hostname), joined to the others by one
# bridge "LAN" in a namespace of its own, with its own data root, exec root, socket, pidfile,
# cgroup parent and containerd (the one dockerd starts itself, under its exec root). dockerd
# keeps off iptables, so nothing touches the host's network or firewall.
#
#   scripts/dockerd-cluster.sh up NAME N [LAN_OCTET]   start N daemons (node1..nodeN)
#   scripts/dockerd-cluster.sh down NAME               stop them and remove everything
#   scripts/dockerd-cluster.sh env NAME I              print DOCKER_HOST for node I
#   scripts/dockerd-cluster.sh crash NAME I            kill -9 node I's dockerd
#   scripts/dockerd-cluster.sh kill NAME I             kill -9 node I's dockerd, containerd, shims, containers
#   scripts/dockerd-cluster.sh start NAME I            start node I's dockerd again on its roots
#
# Node I answers on unix:///run/NAME/nodeI.sock, has the LAN address 10.LAN.0.(10+I)/24 (LAN
# defaults to 232), its docker0 (inside its namespace) on 10.LAN.(100+I).1/24, data root
# /var/lib/NAME/nodeI, exec root /run/NAME/nodeI, cgroup parent /NAME-nodeI, and logs to
# /var/lib/NAME/nodeI.log. DOCKERD (default: dockerd) is the daemon, DOCKER (default: docker)
# the client. BUSYBOX_TAR (a tarball from scripts/mkbusybox.sh) is imported on every node as
# busybox:latest. Swarm services must not publish through the ingress mesh (no IPVS here).
#
# Things dockerd does outside its roots, which `down` undoes: containerd's shims put their
# sockets in /run/containerd/s (removed if the run made them, as are /run/containerd,
# /run/docker and /var/lib/containerd if the run made them), and the cgroup v1 `devices`
# controller is mounted if it was missing (unmounted again). The caller checks sysctls.
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
dockerd=${DOCKERD:-dockerd}
docker=${DOCKER:-docker}
run=/run/$name
lib=/var/lib/$name
lanns=$name-lan
# Host paths dockerd or its containerd may create outside their roots.
host_dirs="/run/containerd /run/containerd/s /run/docker /run/docker/plugins /var/lib/containerd"

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
  run_daemon "$i" "$lan"
}

run_daemon() {
  i=$1
  lan=$2
  ns=$name-n$i
  # nsenter joins the node's network namespace only (so the daemon's mounts stay visible to the
  # host's leak checks); unshare gives the node a hostname of its own, which names it in the
  # swarm. DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1: tasks use the imported image, never a pull.
  nohup nsenter --net="/run/netns/$ns" unshare --uts sh -c \
    "hostname node$i && exec env DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 $dockerd \
     --data-root $lib/node$i --exec-root $run/node$i -H unix://$run/node$i.sock \
     --pidfile $run/node$i/dockerd.pid --config-file $lib/daemon.json \
     --iptables=false --ip6tables=false --ip-masq=false --userland-proxy=false \
     --bip 10.$lan.$((100 + i)).1/24 \
     --default-address-pool base=10.$lan.$((200 + i)).0/24,size=26 \
     --cgroup-parent /$name-node$i --dns 127.0.0.1 --log-level warn \
     ${DOCKERD_FLAGS:-}" >>"$lib/node$i.log" 2>&1 &
  echo $! >"$run/node$i.pid"
}

wait_node() {
  tries=0
  until "$docker" -H "unix://$run/node$1.sock" version >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ $tries -lt 600 ] || { echo "node$1 did not come up; see $lib/node$1.log" >&2; exit 1; }
    sleep 0.05
  done
}

# kill_node_procs I: everything of node I: what runs in its network namespace (dockerd,
# containerd, shims) and its containers (by cgroup).
kill_node_procs() {
  ip netns pids "$name-n$1" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
  for d in /sys/fs/cgroup/*/"$name-node$1" /sys/fs/cgroup/"$name-node$1"; do
    [ -d "$d" ] || continue
    find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
  done
}

case "$cmd" in
  up)
    n=${3:?N nodes}
    lan=${4:-232}
    mkdir -p "$run" "$lib"
    for p in $host_dirs; do [ -e "$p" ] && echo "$p"; done >"$run/host-dirs"
    ls /run/containerd/s 2>/dev/null >"$run/shim-sockets" || true
    if [ ! -e /sys/fs/cgroup/devices/devices.list ] && grep -q devices /proc/cgroups; then
      mkdir -p /sys/fs/cgroup/devices
      mount -t cgroup -o devices cgroup /sys/fs/cgroup/devices
      echo yes >"$run/mounted-devices"
    fi
    echo '{}' >"$lib/daemon.json"
    ip netns add "$lanns"
    ip -n "$lanns" link add "${name}lan" type bridge
    ip -n "$lanns" link set "${name}lan" up
    echo "$lan" >"$run/lan"
    echo "$n" >"$run/nodes"
    i=1
    while [ $i -le "$n" ]; do
      start_node $i "$lan"
      i=$((i + 1))
    done
    i=1
    while [ $i -le "$n" ]; do
      wait_node $i
      if [ -n "${BUSYBOX_TAR:-}" ]; then
        "$docker" -H "unix://$run/node$i.sock" import --change 'CMD ["sh"]' "$BUSYBOX_TAR" busybox:latest >/dev/null
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
      kill_node_procs "$i"
    fi
    ;;
  start)
    i=${3:?I}
    run_daemon "$i" "$(cat "$run/lan")"
    wait_node "$i"
    ;;
  down)
    n=$(cat "$run/nodes" 2>/dev/null || echo 0)
    i=1
    while [ $i -le "$n" ]; do
      # Containers first (while the daemon can still clean up after them), then the daemon
      # (its containerd follows it).
      sock=unix://$run/node$i.sock
      if ids=$(timeout 20 "$docker" -H "$sock" ps -aq 2>/dev/null) && [ -n "$ids" ]; then
        # shellcheck disable=SC2086
        timeout 30 "$docker" -H "$sock" rm -f -v $ids >/dev/null 2>&1 || true
      fi
      if [ -f "$run/node$i.pid" ]; then
        pid=$(cat "$run/node$i.pid")
        # The pid is nsenter's, which exec'd unshare, sh, env and then dockerd.
        kill -TERM "$pid" 2>/dev/null || true
        t=0
        while kill -0 "$pid" 2>/dev/null && [ $t -lt 150 ]; do sleep 0.1; t=$((t + 1)); done
        kill -KILL "$pid" 2>/dev/null || true
      fi
      i=$((i + 1))
    done
    # Whatever a killed daemon left: containerd and shims, containers, mounts, cgroups.
    i=1
    while [ $i -le "$n" ]; do
      kill_node_procs $i
      i=$((i + 1))
    done
    sleep 0.3
    grep -E " ($run|$lib)/" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do
      umount -l "$m" 2>/dev/null || true
    done
    for d in /sys/fs/cgroup/*/"$name"-node* /sys/fs/cgroup/"$name"-node*; do
      [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    i=1
    while [ $i -le "$n" ]; do
      ip netns delete "$name-n$i" 2>/dev/null || true
      i=$((i + 1))
    done
    ip netns delete "$lanns" 2>/dev/null || true
    if [ -f "$run/shim-sockets" ]; then
      for s in $(ls /run/containerd/s 2>/dev/null); do
        grep -qx "$s" "$run/shim-sockets" || rm -f "/run/containerd/s/$s"
      done
    fi
    if [ -f "$run/host-dirs" ]; then
      # Deepest first, and only when the run made them and left them empty.
      for p in /run/containerd/s /run/containerd /run/docker/plugins /run/docker /var/lib/containerd; do
        [ -e "$p" ] && ! grep -qx "$p" "$run/host-dirs" && rmdir "$p" 2>/dev/null || true
      done
    fi
    if [ -f "$run/mounted-devices" ]; then
      umount /sys/fs/cgroup/devices 2>/dev/null || true
    fi
    rm -rf "$run" "$lib"
    ;;
  *)
    echo "unknown command $cmd" >&2
    exit 2
    ;;
esac
