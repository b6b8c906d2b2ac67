#!/bin/sh
# Runs the fuzz targets of fuzz/ (all, or those named as arguments) for SECS seconds each
# (default 60) with libFuzzer, on stable Rust: the targets are compiled with LLVM's
# SanitizerCoverage pass and libFuzzer's counters through stable -C flags (what cargo-fuzz does
# when no sanitizer is asked for), with debug assertions and overflow checks on. Not run in CI.
# New corpus entries go to fuzz/corpus/<target>/ (fuzz/seeds/<target>/ seeds it), crashing
# inputs (and slow ones) to fuzz/artifacts/<target>/; rerun one with
# fuzz/target/x86_64-unknown-linux-gnu/release/<target> <file>.
set -eu
cd "$(dirname "$0")/../fuzz"
SECS=${SECS:-60}
# tar_extract writes each input's files below $TMPDIR: a tmpfs keeps that cheap.
TMPDIR=${TMPDIR:-/dev/shm}
export TMPDIR
if [ $# -gt 0 ]; then
  targets=$*
else
  targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^berth-fuzz$')
fi
RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
--cfg fuzzing"
export RUSTFLAGS
# RUSTFLAGS replaces the project's crt-static flag (libFuzzer's C++ runtime links dynamically);
# with the target named, the flags stay off build scripts and proc macros.
nice cargo build --release --locked --bins --target x86_64-unknown-linux-gnu
bin=target/x86_64-unknown-linux-gnu/release
status=0
for t in $targets; do
  mkdir -p "corpus/$t" "artifacts/$t" "seeds/$t"
  echo "== $t ($SECS s)"
  # One input running over UNIT_SECS (default 10) is a finding too (a timeout artifact), not
  # a hang of the whole run.
  if ! nice "$bin/$t" -max_total_time="$SECS" -timeout="${UNIT_SECS:-10}" -artifact_prefix="artifacts/$t/" \
    -print_final_stats=1 "corpus/$t" "seeds/$t" 2>"artifacts/$t/log"; then
    status=1
    echo "$t: crash, see fuzz/artifacts/$t/ (log: fuzz/artifacts/$t/log)"
  fi
  grep -E '^(#[0-9]+ *DONE|stat::number_of_executed_units|stat::new_units_added)' "artifacts/$t/log" || true
done
rm -rf "$TMPDIR"/berth-fuzz-tar-*
exit $status
