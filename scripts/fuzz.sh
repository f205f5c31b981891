#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz, libFuzzer) of busflow's decoders and parsers: builds the
# targets in fuzz/ and runs each in turn for a fixed time, one process on one core.
#
#   scripts/fuzz.sh [--seconds N] [--target NAME]... [--minimize] [--list]
#
#   --seconds N    run time per target (default 60)
#   --target NAME  only this target (repeatable; default all, see --list)
#   --minimize     afterwards, merge what the runs found into fuzz/corpus/NAME and minimise it
#                  like `cargo fuzz cmin` (for committing a grown corpus)
#   --list         print the targets and exit
#
# New inputs go to a work corpus outside the checkout ($BUSFLOW_FUZZ_WORK, default
# ~/.cache/busflow/fuzz-work, corpus/NAME), shared by every run; the committed corpus
# fuzz/corpus/NAME is only read. Each run's logs go to a directory of its own under the work dir
# (run.XXXXXX), removed when every target ran clean and kept, with its path printed, otherwise. A
# crash stops the run with a non-zero exit, naming the input that reproduces it (under
# fuzz/artifacts/, which git ignores) and the command to replay it. Installs cargo-fuzz when
# missing. Stable Rust: RUSTC_BOOTSTRAP=1 lets cargo fuzz use the nightly-only sanitizer flags.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=60
TARGETS=()
MINIMIZE=0
WORK="${BUSFLOW_FUZZ_WORK:-$HOME/.cache/busflow/fuzz-work}"
# Its own build directory: the coverage and debug-assertion flags would otherwise invalidate the
# main build cache every time.
export CARGO_TARGET_DIR="${BUSFLOW_FUZZ_TARGET_DIR:-$HOME/.cache/busflow/fuzz-target}"
export RUSTC_BOOTSTRAP=1
# No AddressSanitizer: every busflow crate denies unsafe code, and ASan would halve the executions
# per second; debug assertions turn integer overflow into a finding instead.
FUZZ_FLAGS=(--sanitizer none --debug-assertions)

log() { printf 'fuzz: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

all_targets() { sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^busflow-fuzz$'; }

# libFuzzer options per target, beyond the common ones.
target_opts() {
  case "$1" in
    raw_position | processor | gateway_ws) echo "-dict=fuzz/dict/json.dict" ;;
    gtfs_rt) echo "" ;;
    gateway_query) echo "-dict=fuzz/dict/query.dict" ;;
    # Whole (small) feeds: room for a few more rows than the seeds have.
    gtfs_load) echo "-dict=fuzz/dict/gtfs.dict -max_len=16384" ;;
    *) die "no options for target $1" ;;
  esac
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) SECONDS_PER_TARGET="$2"; shift 2 ;;
    --target) TARGETS+=("$2"); shift 2 ;;
    --minimize) MINIMIZE=1; shift ;;
    --list) all_targets; exit 0 ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[[ "$SECONDS_PER_TARGET" =~ ^[1-9][0-9]*$ ]] || die "--seconds needs a positive whole number"
if [[ ${#TARGETS[@]} -eq 0 ]]; then mapfile -t TARGETS < <(all_targets); fi
for t in "${TARGETS[@]}"; do
  all_targets | grep -qx "$t" || die "unknown target $t (targets: $(all_targets | tr '\n' ' '))"
done

if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz (once per machine)"
  (cd "${TMPDIR:-/tmp}" && cargo install cargo-fuzz --locked)
fi

log "building ${#TARGETS[@]} target(s) in $CARGO_TARGET_DIR"
start=$(date +%s)
cargo fuzz build "${FUZZ_FLAGS[@]}"
log "built in $(( $(date +%s) - start )) s"
BIN_DIR="$CARGO_TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/release"

mkdir -p "$WORK"
# This run's logs and merge directory: two runs at once (a CI clone and a local run) once wrote
# the same $WORK/NAME.log. The work corpus stays shared on purpose: libFuzzer names every input
# by the SHA-1 of its bytes, so concurrent runs writing one directory at worst write the same
# file twice, and it re-reads the directory for other processes' inputs by design (-reload).
RUN_DIR="$(mktemp -d "$WORK/run.XXXXXX")"
# The GTFS loader target writes its feed files here; removed on the way out.
BUSFLOW_FUZZ_DIR="$(mktemp -d "${BUSFLOW_FUZZ_SHM:-/dev/shm}/busflow-fuzz.XXXXXX" 2>/dev/null \
  || mktemp -d)"
export BUSFLOW_FUZZ_DIR
FUZZ_PID=""
cleanup() {
  local rc=$?
  if [[ -n "$FUZZ_PID" ]] && kill -0 "$FUZZ_PID" 2>/dev/null; then kill "$FUZZ_PID" || true; fi
  rm -rf "$BUSFLOW_FUZZ_DIR"
  # A clean run's figures are in the lines printed above; a failed run's logs are the evidence.
  if [[ $rc -eq 0 ]]; then rm -rf "$RUN_DIR"; else log "logs kept in $RUN_DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs one target's binary directly (not `cargo fuzz run`, whose Debug printout of a crash
# rebuilds everything under another profile); prints its last status line every 10 s.
# Returns libFuzzer's status.
run_target() {
  local t="$1" corpus="$WORK/corpus/$1" log="$RUN_DIR/$1.log" opts
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  read -r -a opts <<<"$(target_opts "$t")"
  log "$t: ${SECONDS_PER_TARGET} s on fuzz/corpus/$t (log: $log)"
  # The work corpus first: libFuzzer writes new inputs to the first directory only.
  "$BIN_DIR/$t" "$corpus" "fuzz/corpus/$t" -artifact_prefix="fuzz/artifacts/$t/" \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 "${opts[@]}" >"$log" 2>&1 &
  FUZZ_PID=$!
  # Polled every second so a run ends when libFuzzer does (a 10 s sleep added up to 9 s to every
  # target of the CI smoke run); the status line still every 10 s.
  local ticks=0 status
  while kill -0 "$FUZZ_PID" 2>/dev/null; do
    sleep 1
    if (( ++ticks % 10 != 0 )); then continue; fi
    status="$(grep -a -E '^#[0-9]+' "$log" | tail -n 1 || true)"
    if [[ -n "$status" ]]; then log "$t: $status"; fi
  done
  local rc=0
  wait "$FUZZ_PID" || rc=$?
  FUZZ_PID=""
  return "$rc"
}

failed=()
for t in "${TARGETS[@]}"; do
  if run_target "$t"; then
    final="$(grep -a -E '^#[0-9]+' "$RUN_DIR/$t.log" | tail -n 1 || true)"
    log "$t: no crash; $final"
    grep -a -E '^stat::(number_of_executed_units|peak_rss_mb)' "$RUN_DIR/$t.log" \
      | sed "s/^/fuzz: $t: /" >&2 || true
  else
    rc=$?
    tail -n 40 "$RUN_DIR/$t.log" >&2
    crash="$(grep -a -o 'Test unit written to [^ ]*' "$RUN_DIR/$t.log" | tail -n 1 | cut -d' ' -f5)"
    log "$t: FAILED (exit $rc); input: ${crash:-none written, see $RUN_DIR/$t.log}"
    if [[ -n "$crash" ]]; then
      log "$t: replay: RUSTC_BOOTSTRAP=1 cargo fuzz run ${FUZZ_FLAGS[*]} $t $crash"
      log "$t:     or: $BIN_DIR/$t $crash"
    fi
    failed+=("$t")
  fi
done

if [[ $MINIMIZE -eq 1 ]]; then
  for t in "${TARGETS[@]}"; do
    # What `cargo fuzz cmin` does: merge the committed and the work corpus into a fresh
    # directory keeping only inputs that add coverage, then replace the committed one.
    before=$(find "fuzz/corpus/$t" -type f | wc -l)
    merged="$RUN_DIR/cmin/$t"
    rm -rf "$merged" && mkdir -p "$merged"
    read -r -a opts <<<"$(target_opts "$t")"
    "$BIN_DIR/$t" -merge=1 "$merged" "fuzz/corpus/$t" "$WORK/corpus/$t" "${opts[@]}" \
      >"$RUN_DIR/$t.cmin.log" 2>&1 || { tail -n 20 "$RUN_DIR/$t.cmin.log" >&2; die "merge of $t failed"; }
    find "fuzz/corpus/$t" -type f -delete
    cp "$merged"/* "fuzz/corpus/$t/"
    log "$t: corpus $before -> $(find "fuzz/corpus/$t" -type f | wc -l) files" \
      "($(du -sh "fuzz/corpus/$t" | cut -f1))"
  done
fi

if [[ ${#failed[@]} -gt 0 ]]; then die "crashes in: ${failed[*]}"; fi
log "all ${#TARGETS[@]} target(s) ran ${SECONDS_PER_TARGET} s each without a crash"
