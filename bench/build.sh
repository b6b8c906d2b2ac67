#!/bin/sh
# Dockerfile builds, one run, same machine: the same multi-step Dockerfile built by berth and by
# docker's classic builder (DOCKER_BUILDKIT=0), cold (--no-cache) and fully cached; prints
# medians and ratios, and the cold builds against the sum of the RUN steps' own run time.
# Starts its own berth daemon and a private containerd + dockerd, and stops only what it started.
set -eu
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10}
. bench/lib.sh
bench_need hyperfine python3 docker.io
# BERTH=path runs another build (e.g. an older one, for a before/after) instead of the release.
if [ -z "${BERTH:-}" ]; then
  cargo build --release --locked -q
  BERTH=$PWD/target/x86_64-unknown-linux-gnu/release/berth
fi
work=$(mktemp -d /tmp/berth-buildbench.XXXXXX)
started_daemon=""
started_dockerd=""
started_containerd=""
bench_snapshot
cleanup() {
  for p in $started_dockerd $started_daemon $started_containerd; do
    kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
  done
  umount -R /run/berth-buildbench-docker 2>/dev/null || true
  bench_restore docker0 bbuild0
  rm -rf "$work" /run/berth-buildbench /run/berth-buildbench-docker /run/berth-buildbench-containerd
}
trap cleanup EXIT

scripts/mkbusybox.sh "$work/busybox.tar"

# The build: seven steps, three of them RUN with a known own run time; the RUN commands use
# paths relative to WORKDIR so that the host's sh can time them alone in a copy of the tree.
ctx="$work/ctx"
mkdir -p "$ctx/src" "$work/host"
for i in 1 2 3 4 5 6 7 8; do echo "file $i" >"$ctx/src/f$i.txt"; done
cp -r "$ctx/src" "$work/host/src"
step1="sleep 0.2 && echo one > one"
step2="sleep 0.2 && cp -r src copy"
step3="sleep 0.2 && cat src/* > all.txt"
cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM busybox
ENV APP=/w
WORKDIR /w
COPY src /w/src
RUN $step1
RUN $step2
RUN $step3
CMD ["cat", "/w/one"]
DOCKERFILE

# A private berth daemon.
"$BERTH" daemon --data-root "$work/berth-data" --exec-root /run/berth-buildbench \
  -H unix:///run/berth-buildbench/berth.sock --config-file /nonexistent --bridge bbuild0 \
  --bip 10.226.0.1/24 >"$work/berthd.log" 2>&1 &
started_daemon=$!
B="$BERTH -H unix:///run/berth-buildbench/berth.sock"
i=0; until $B version >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 100 ] || { cat "$work/berthd.log"; exit 1; }; sleep 0.1; done
$B import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null
$B build -q -t bench "$ctx" >/dev/null

set -- \
  -n berth-cold "$B build -q --no-cache $ctx" \
  -n berth-cached "$B build -q -t bench $ctx"
# The RUN steps' own run time: the same commands run by the host's sh in a copy of the tree.
set -- "$@" -n step1 "sh -c 'cd $work/host && $step1'" \
  -n step2 "sh -c 'cd $work/host && rm -rf copy && $step2'" \
  -n step3 "sh -c 'cd $work/host && $step3'"

if command -v dockerd >/dev/null && command -v containerd >/dev/null; then
  cdir=/run/berth-buildbench-containerd
  mkdir -p "$cdir" "$work/docker"
  containerd --root "$work/docker/containerd" --state "$cdir/state" --address "$cdir/containerd.sock" \
    >"$work/containerd.log" 2>&1 &
  started_containerd=$!
  i=0; until [ -S "$cdir/containerd.sock" ]; do i=$((i+1)); [ $i -lt 100 ] || break; sleep 0.1; done
  dockerd --data-root "$work/docker/data" --exec-root /run/berth-buildbench-docker \
    --pidfile "$work/dockerd.pid" -H unix:///run/berth-buildbench-docker.sock \
    --containerd "$cdir/containerd.sock" --iptables=false --ip6tables=false --bip 10.225.0.1/24 \
    >"$work/dockerd.log" 2>&1 &
  started_dockerd=$!
  D="env DOCKER_BUILDKIT=0 docker -H unix:///run/berth-buildbench-docker.sock"
  i=0; until $D info >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 150 ] || break; sleep 0.2; done
  if $D import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null 2>&1; then
    $D build -q -t bench "$ctx" >/dev/null
    set -- "$@" -n docker-cold "$D build -q --no-cache $ctx" \
      -n docker-cached "$D build -q -t bench $ctx"
  else
    echo "note: dockerd did not come up; see $work/dockerd.log"
  fi
fi

hyperfine -N --warmup 2 --runs "$RUNS" --export-json "$work/build.json" "$@" >/dev/null
python3 - "$work/build.json" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))["results"]
med = {r["command"]: r["median"] * 1000 for r in res}
steps = sum(v for k, v in med.items() if k.startswith("step"))
print(f"{'build':<15}{'median ms':>10}")
for name, m in med.items():
    if not name.startswith("step"):
        print(f"{name:<15}{m:>10.2f}")
print(f"{'RUN steps sum':<15}{steps:>10.2f}")
print()
print(f"berth cold / RUN steps:        {med['berth-cold'] / steps:.2f}  (target <= 1.2)")
print(f"berth cached:                  {med['berth-cached']:.2f} ms  (target < 100 ms)")
if "docker-cached" in med:
    print(f"berth cached / docker cached:  {med['berth-cached'] / med['docker-cached']:.2f}  (target <= 0.5)")
    print(f"berth cold / docker cold:      {med['berth-cold'] / med['docker-cold']:.2f}")
PY
