#!/bin/sh
# Soak, run by hand (bounded, not in CI): CYCLES create/start/exec/stop/rm cycles spread over
# CLIENTS parallel clients, each container on a user network with a published port, against a
# private berth daemon on its own roots. Counts mounts, cgroups, veths, nft map elements,
# processes, run dirs, containers, the daemon's fds and its RSS before and after (once a warm-up
# cycle per client has made what is made once, e.g. the network's DNS server). Target: nothing
# leaked, daemon RSS growth < 5 MiB. Exits 1 if the target is missed or a cycle failed.
set -eu
cd "$(dirname "$0")/.."
CYCLES=${CYCLES:-10000}
CLIENTS=${CLIENTS:-16}
. bench/lib.sh
bench_need python3
# BERTH=path runs another build (e.g. a debug one, to try the script) instead of the release.
if [ -z "${BERTH:-}" ]; then
  cargo build --release --locked -q
  BERTH=$PWD/target/x86_64-unknown-linux-gnu/release/berth
fi
work=$(mktemp -d /tmp/berth-soak.XXXXXX)
EXEC=/run/berth-soak
BRIDGE=bsoak0
CGROUP=berth-soak
daemon=""
bench_snapshot
cleanup() {
  if [ -n "$daemon" ]; then
    $B ps -aq 2>/dev/null | xargs -r $B rm -f >/dev/null 2>&1 || true
    $B network rm soaknet >/dev/null 2>&1 || true
    kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
  fi
  bench_restore "$BRIDGE"
  for d in /sys/fs/cgroup/*/"$CGROUP"; do rmdir "$d" 2>/dev/null || true; done
  rm -rf "$work" "$EXEC"
}
trap cleanup EXIT
scripts/mkbusybox.sh "$work/busybox.tar"

"$BERTH" daemon --data-root "$work/data" --exec-root "$EXEC" -H "unix://$EXEC/berth.sock" \
  --config-file /nonexistent --cgroup-parent "$CGROUP" --bridge "$BRIDGE" --bip 10.231.0.1/24 \
  --dns 127.0.0.1 >"$work/berthd.log" 2>&1 &
daemon=$!
B="$BERTH -H unix://$EXEC/berth.sock"
i=0; until $B version >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 100 ] || { cat "$work/berthd.log"; exit 1; }; sleep 0.1; done
$B import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null
net=$($B network create --subnet 10.231.1.0/24 soaknet)
userbr=br-$(echo "$net" | cut -c1-12)

# One cycle: a container that exits on SIGTERM at once (the shell's trap interrupts `wait`).
cycle() {
  c=$1
  $B create --name "$c" --network soaknet -p 127.0.0.1::80 busybox \
      sh -c 'trap "exit 0" TERM; sleep 600 & wait' >/dev/null &&
    $B start "$c" >/dev/null &&
    [ "$($B exec "$c" echo ok)" = ok ] &&
    $B stop -t 5 "$c" >/dev/null &&
    $B rm "$c" >/dev/null
}

# client K N: N cycles; prints the number that failed (a failed cycle's container is removed).
client() {
  k=$1 n=$2 j=0 failed=0
  while [ $j -lt "$n" ]; do
    if ! cycle "soak-$k-$j" 2>>"$work/errors"; then
      failed=$((failed + 1))
      $B rm -f "soak-$k-$j" >/dev/null 2>&1 || true
    fi
    j=$((j + 1))
  done
  echo "$failed" >"$work/failed.$k"
}

# What could leak, one "name value" per line.
counts() {
  python3 - "$work" "$EXEC" "$CGROUP" "$BRIDGE" "$userbr" "$daemon" <<'EOF'
import json, os, subprocess, sys
work, exec_root, cgroup, bridge, userbr, daemon = sys.argv[1:]
mine = (work, exec_root)
mounts = sum(1 for l in open("/proc/self/mountinfo") if any(m in l for m in mine))
cgroups = 0
procs_in_cgroups = set()
for ctl in os.listdir("/sys/fs/cgroup"):
    top = os.path.join("/sys/fs/cgroup", ctl, cgroup)
    for d, subdirs, files in os.walk(top):
        if d != top:
            cgroups += 1
        if "cgroup.procs" in files:
            procs_in_cgroups.update(open(os.path.join(d, "cgroup.procs")).read().split())
def links_on(br):
    out = subprocess.run(["ip", "-o", "link", "show", "master", br], capture_output=True, text=True).stdout
    return len([l for l in out.splitlines() if l.strip()])
veths = links_on(bridge) + links_on(userbr)
elements = 0
for m in ("ports", "hostports"):
    out = subprocess.run(["nft", "-j", "list", "map", "ip", "berth_" + bridge, m], capture_output=True, text=True).stdout
    for o in json.loads(out or '{"nftables": []}')["nftables"]:
        elements += len(o.get("map", {}).get("elem", []))
# Processes of this daemon (itself, its children such as the shim zygote, and shims, found by
# the files they hold on its roots) and of containers (in its cgroups).
berth_procs = 0
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        stat = open(f"/proc/{p}/stat").read()
        ppid = stat.rsplit(")", 1)[1].split()[1]
        cmd = open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace")
        held = []
        for fd in os.listdir(f"/proc/{p}/fd"):
            try:
                held.append(os.readlink(f"/proc/{p}/fd/{fd}"))
            except OSError:
                pass
    except OSError:
        continue
    if int(p) in (os.getpid(), os.getppid()):
        continue
    if p == daemon or ppid == daemon or any(m in cmd for m in mine) or any(
        t.startswith(m) for t in held for m in mine
    ):
        berth_procs += 1
fds = len(os.listdir(f"/proc/{daemon}/fd"))
rss = next(int(l.split()[1]) for l in open(f"/proc/{daemon}/status") if l.startswith("VmRSS"))
def entries(p):
    try:
        return len([e for e in os.listdir(p) if not e.startswith(".")])
    except OSError:
        return 0
print("mounts", mounts)
print("cgroups", cgroups)
print("veths", veths)
print("nft_elements", elements)
print("berth_processes", berth_procs)
print("container_processes", len(procs_in_cgroups))
print("run_dirs", entries(os.path.join(exec_root, "c")))
print("runtime_states", entries(os.path.join(exec_root, "runtime")))
print("container_records", entries(os.path.join(work, "data", "containers")))
print("daemon_fds", fds)
print("daemon_rss_kib", rss)
EOF
}

# Settle: what goes asynchronously (veths with their namespaces, trash) has gone.
settle() { sleep 3; }

# Warm-up: WARMUP cycles per client, in parallel as in the run, so that what the daemon keeps
# at a bounded size (the ring of the last 1024 events, malloc's per-thread arenas, the blocking
# thread pool) is full before the first count.
WARMUP=${WARMUP:-10}
k=0
clients=""
while [ $k -lt "$CLIENTS" ]; do
  client "w$k" "$WARMUP" &
  clients="$clients $!"
  k=$((k + 1))
done
for p in $clients; do wait "$p" || true; done
rm -f "$work"/failed.*
settle
counts >"$work/before"
# The daemon's RSS every 10 s during the run (KiB), to tell growth from a plateau.
( while kill -0 "$daemon" 2>/dev/null; do
    awk '/^VmRSS/ {print $2}' "/proc/$daemon/status" 2>/dev/null
    sleep 10 >/dev/null
  done ) >"$work/rss" &
sampler=$!

echo "soak: $CYCLES cycles over $CLIENTS clients"
t0=$(date +%s)
k=0
clients=""
while [ $k -lt "$CLIENTS" ]; do
  n=$((CYCLES / CLIENTS))
  [ $k -lt $((CYCLES % CLIENTS)) ] && n=$((n + 1))
  client "$k" "$n" &
  clients="$clients $!"
  k=$((k + 1))
done
for p in $clients; do wait "$p" || true; done
t1=$(date +%s)
kill "$sampler" 2>/dev/null || true
settle
counts >"$work/after"
echo "daemon RSS (KiB) every 10 s during the run: $(tr '\n' ' ' <"$work/rss")"
failed=$(cat "$work"/failed.* | awk '{s+=$1} END {print s+0}')

echo "elapsed: $((t1 - t0)) s ($(awk -v c="$CYCLES" -v t=$((t1 - t0)) 'BEGIN {printf "%.1f", (t > 0 ? c / t : 0)}') cycles/s), failed cycles: $failed"
[ "$failed" -eq 0 ] || { echo "first errors:"; head -5 "$work/errors"; }
printf '%-22s %10s %10s\n' what before after
ok=1
paste -d' ' "$work/before" "$work/after" | while read -r name b _ a; do
  printf '%-22s %10s %10s\n' "$name" "$b" "$a"
done
while read -r name b; do
  a=$(awk -v n="$name" '$1 == n {print $2}' "$work/after")
  case $name in
    daemon_rss_kib)
      if [ $((a - b)) -ge 5120 ]; then echo "FAIL: daemon RSS grew by $((a - b)) KiB"; ok=0; fi ;;
    daemon_fds|berth_processes)
      if [ "$a" -gt "$b" ]; then echo "FAIL: $name $b -> $a"; ok=0; fi ;;
    *)
      if [ "$a" -ne "$b" ]; then echo "FAIL: $name $b -> $a"; ok=0; fi ;;
  esac
done <"$work/before"
[ "$failed" -eq 0 ] || ok=0
if [ $ok -eq 1 ]; then echo "PASS: nothing leaked, daemon RSS growth under 5 MiB"; else exit 1; fi
