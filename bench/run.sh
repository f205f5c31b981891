#!/usr/bin/env bash
# busflow's benchmarks on one machine, each figure measured in the same run as its baseline:
#   1. simulator produce rate vs a bare rdkafka producer loop
#   2. pipeline throughput (-w 1, -w 2) vs an identity copy; added latency at 5k/20k/50k events/s
#   3. gateway fan-out: 1k/5k/10k SSE viewers at 20k updates/s (latency, RSS per viewer, CPU)
#   4. end to end: simulate -> pipeline -> gateway -> viewers at 20k events/s
#   5. the criterion per-event benches of simulator, pipeline and gateway
#
#   bench/run.sh            full run (about 25 minutes on 2 cores): writes BENCHMARKS.md and
#                           bench/plots/*.png from this run's figures
#   bench/run.sh --quick    a short run (under 3 minutes once built) that fails when a ratio falls
#                           below a generous floor (simulator < 25% or pipeline < 15% of its baseline,
#                           any viewport violation, viewers that could not connect); CI runs it
#
# Options: --out DIR (raw results, logs and load reports; default bench/out/<mode>).
# Needs: the README's setup (Rust). Builds nisshi on first use (scripts/dev-broker.sh install) and
# installs Debian's gnuplot for the plots when missing (full mode only).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

mode=full
out=
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) mode=quick ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
out=${out:-bench/out/$mode}
mkdir -p "$out"
out=$(cd "$out" && pwd)
results=$out/results.jsonl
: > "$results"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/busflow/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
start=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
step() { printf '\n==> [%4ss] bench: %s\n' "$(( $(date +%s) - start ))" "$*"; }

if [ "$mode" = quick ]; then
  sim_records=100000
  pipe_messages=100000 pipe_rates=5000 pipe_seconds=3
  fan_clients="200" fan_rate=2000 fan_vehicles=2000 fan_ramp=3 fan_measure=5
  e2e_rate=2000 e2e_clients=100 e2e_measure=8
  crit_args=(--warm-up-time 0.5 --measurement-time 1 --sample-size 10 --noplot)
else
  sim_records=1000000
  pipe_messages=300000 pipe_rates=5000,20000,50000 pipe_seconds=10
  fan_clients="1000 5000 10000" fan_rate=20000 fan_vehicles=20000 fan_ramp=20 fan_measure=30
  e2e_rate=20000 e2e_clients=1000 e2e_measure=40
  crit_args=(--noplot)
fi

# Every process this script starts, stopped by PID on any exit.
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do
    [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true
  done
  for p in "${pids[@]:-}"; do
    [ -n "$p" ] && wait "$p" 2>/dev/null || true
  done
  scripts/dev-broker.sh stop --state-dir "$out/broker" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_pid() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tick_hz=$(getconf CLK_TCK)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
  || echo $(( 20000 + RANDOM % 20000 )); }
wait_ready() { # url, seconds
  local deadline=$(( $(date +%s) + $2 ))
  until curl -fsS -o /dev/null "$1" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "bench: $1 not ready after $2 s" >&2; return 1; }
    sleep 0.2
  done
}
collect() { grep '^BENCH_RESULT ' "$1" | sed 's/^BENCH_RESULT //' >> "$results"; }
# perf from Debian's linux-perf, installed when missing; some machines refuse to sample.
perf_ok() {
  if ! command -v perf >/dev/null; then
    local sudo_cmd=; [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
    $sudo_cmd apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq linux-perf >/dev/null 2>&1 || true
  fi
  command -v perf >/dev/null && perf record -a -e cpu-clock -o /dev/null -- true >/dev/null 2>&1 \
    || { echo "bench: perf cannot sample here; BENCHMARKS.md will have CPU counters but no profile" >&2; return 1; }
}
# A perf profile as results records: per process, its top threads and its top symbols, each as
# a share of that process's own samples. perf reports by thread id; the map of thread ids to
# processes was taken while they ran.
profile_json() { # perf.data, tid map (lines "tid name")
  python3 - "$1" "$2" <<'PY'
import collections, json, re, subprocess, sys
data, tidmap = sys.argv[1], sys.argv[2]
owner = {}
for line in open(tidmap):
    tid, name = line.split()
    owner[tid] = name
def report(sort):
    return subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", sort,
                           "--percent-limit", "0.01"], capture_output=True, text=True, errors="replace").stdout
total = collections.Counter()
threads = collections.defaultdict(collections.Counter)
for line in report("pid").splitlines():
    m = re.match(r"\s*([0-9.]+)%\s+(\d+):(\S*)", line)
    if m and m.group(2) in owner:
        name = owner[m.group(2)]
        total[name] += float(m.group(1))
        # Worker threads carry their index (timely:work-0); group them by kind.
        threads[name][re.sub(r"-\d+$", "-N", m.group(3))] += float(m.group(1))
syms = collections.defaultdict(collections.Counter)
for line in report("pid,dso,sym").splitlines():
    m = re.match(r"\s*([0-9.]+)%\s+(\d+):\S*\s+(.*\S)\s*$", line)
    if m and m.group(2) in owner:
        syms[owner[m.group(2)]][re.sub(r"\s+", " ", m.group(3))] += float(m.group(1))
for name in sorted(total):
    t = total[name]
    for by, rows in (("comm", threads[name]), ("dso", syms[name])):
        top = [[round(100 * p / t, 1), what] for what, p in rows.most_common() if 100 * p / t >= 1.5]
        print(json.dumps({"stage": "profile", "during": "4. end to end", "process": name, "by": by,
                          "share_of_samples": round(t, 1), "rows": top[:12]}))
PY
}

step "build (release)"
# Without the `sql` feature: no benchmark uses `busflow sql`, and DataFusion's release build would
# add many minutes to every run on 2 cores.
cargo build --release --locked -p busflow --no-default-features
cargo build --release --locked -p busflow-bench
cargo build --release --locked -p busflow-pipeline --example throughput
bin=$CARGO_TARGET_DIR/release
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain 2>/dev/null | grep -qv '^??' && echo "+changes" || true)

step "broker: nisshi (memory engine)"
scripts/dev-broker.sh install
broker_out=$(scripts/dev-broker.sh start --storage memory --state-dir "$out/broker")
echo "$broker_out"
brokers=$(echo "$broker_out" | grep -oE '127\.0\.0\.1:[0-9]+' | tail -1)
[ -n "$brokers" ] || { echo "bench: could not read the broker address" >&2; exit 1; }
export KAFKA_BROKERS=$brokers
broker_pid=$(cat "$out/broker/broker.pid")
# The broker's CPU over a stage: evidence of where a stage's time goes (broker or our process).
broker_mark() { bcpu0=$(cpu_ticks "$broker_pid"); bt0=$(date +%s.%N); }
broker_record() { # stage name
  printf '{"stage":"broker_cpu","during":"%s","cpu_s":%s,"wall_s":%s}\n' "$1" \
    "$(awk -v a="$bcpu0" -v b="$(cpu_ticks "$broker_pid")" -v hz="$tick_hz" 'BEGIN{print (b-a)/hz}')" \
    "$(awk -v a="$bt0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" >> "$results"
}

step "1/5 simulator produce vs bare producer ($sim_records records per run)"
cargo bench --locked -p busflow-simulator --bench produce --no-run 2>&1 | tail -1
broker_mark
BUSFLOW_BENCH_BROKERS=$brokers BUSFLOW_BENCH_RECORDS=$sim_records \
  cargo bench --locked -p busflow-simulator --bench produce 2>&1 | tee "$out/simulator.log"
broker_record "1. simulator produce (bare loop and simulator)"
collect "$out/simulator.log"

for w in 1 2; do
  step "2/5 pipeline -w $w vs identity copy ($pipe_messages messages), latency at $pipe_rates/s"
  broker_mark
  "$bin/examples/throughput" "$brokers" "$pipe_messages" "$w" "$pipe_rates" "$pipe_seconds" 2>&1 \
    | grep -v '^report:' | tee "$out/pipeline-w$w.log"
  broker_record "2. pipeline -w $w (backlog, identity copy, pipeline, fixed rates)"
  collect "$out/pipeline-w$w.log"
done

for clients in $fan_clients; do
  step "3/5 gateway fan-out: $clients SSE viewers at $fan_rate updates/s"
  tag="bench.fan$clients.$(date +%s)"
  port=$(free_port)
  "$bin/busflow" gateway --brokers "$brokers" --http-addr "127.0.0.1:$port" \
    --topic-raw "$tag.raw" --topic-positions "$tag.positions" --topic-rejected "$tag.rejected" \
    --topic-latest "$tag.latest" --max-connections $((clients + 100)) \
    --max-connections-per-ip $((clients + 100)) --max-vehicles-per-stream 100000 \
    > "$out/gateway-$clients.log" 2>&1 &
  gw=$!; pids+=("$gw")
  wait_ready "http://127.0.0.1:$port/readyz" 60
  "$bin/bench-feed" --brokers "$brokers" --topic "$tag.positions" --rate "$fan_rate" \
    --vehicles "$fan_vehicles" --seconds $((fan_ramp + fan_measure + 15)) > "$out/feed-$clients.log" 2>&1 &
  feed=$!; pids+=("$feed")
  sleep 5 # every vehicle reported once or more: the state is full before viewers arrive
  rss_idle=$(rss_kb "$gw")
  broker_mark
  "$bin/busflow" load --gateway "127.0.0.1:$port" --clients "$clients" --transport sse \
    --viewport-km 3 --ramp "${fan_ramp}s" --duration "${fan_measure}s" --no-progress \
    --report "$out/fanout-$clients.json" > "$out/load-$clients.log" 2>&1 &
  load=$!; pids+=("$load")
  # CPU over the measured window (after the ramp, before the viewers close); RSS in its middle.
  half=$(( fan_measure / 2 > 1 ? fan_measure / 2 : 1 ))
  sleep $((fan_ramp + 1))
  cpu0=$(cpu_ticks "$gw"); t0=$(date +%s.%N)
  sleep "$half"
  rss_loaded=$(rss_kb "$gw")
  sleep $(( fan_measure - half - 2 > 1 ? fan_measure - half - 2 : 1 ))
  cpu1=$(cpu_ticks "$gw"); t1=$(date +%s.%N)
  wait "$load" || { echo "bench: busflow load failed (see $out/load-$clients.log)" >&2; exit 1; }
  broker_record "3. fan-out, $clients viewers"
  wait "$feed" || true
  collect "$out/feed-$clients.log"
  feed_per_s=$(grep '^BENCH_RESULT' "$out/feed-$clients.log" | grep -oE '"per_s":[0-9.e+]+' | cut -d: -f2 || echo null)
  stop_pid "$gw"
  cat "$out/load-$clients.log" | tail -25
  printf '{"stage":"fanout","clients":%s,"load_report":"fanout-%s.json","rss_idle_kb":%s,"rss_loaded_kb":%s,"gateway_cpu_s":%s,"window_s":%s,"feed_per_s":%s}\n' \
    "$clients" "$clients" "$rss_idle" "$rss_loaded" \
    "$(awk -v a="$cpu0" -v b="$cpu1" -v hz="$tick_hz" 'BEGIN{print (b-a)/hz}')" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" "${feed_per_s:-null}" >> "$results"
done

step "4/5 end to end at $e2e_rate events/s, $e2e_clients viewers"
tag="bench.e2e.$(date +%s)"
topics=(--topic-raw "$tag.raw" --topic-positions "$tag.positions" --topic-rejected "$tag.rejected" --topic-latest "$tag.latest")
port=$(free_port)
"$bin/busflow" pipeline --brokers "$brokers" -w 2 --group-id "$tag" "${topics[@]}" > "$out/e2e-pipeline.log" 2>&1 &
pipe=$!; pids+=("$pipe")
"$bin/busflow" gateway --brokers "$brokers" --http-addr "127.0.0.1:$port" "${topics[@]}" \
  --max-connections $((e2e_clients + 100)) --max-connections-per-ip $((e2e_clients + 100)) \
  > "$out/e2e-gateway.log" 2>&1 &
gw=$!; pids+=("$gw")
wait_ready "http://127.0.0.1:$port/readyz" 60
"$bin/busflow" simulate --brokers "$brokers" "${topics[@]}" --vehicles "$e2e_rate" --hz 1 --no-faults \
  --date 2026-11-24 --start 08:00 \
  --rate "$e2e_rate" --duration "$((e2e_measure + 25))s" --no-progress > "$out/e2e-simulate.log" 2>&1 &
sim=$!; pids+=("$sim")
sleep 10 # the fleet is built and the pipeline has its first positions out
broker_mark
"$bin/busflow" load --gateway "127.0.0.1:$port" --clients "$e2e_clients" --transport sse \
  --viewport-km 3 --ramp 5s --duration "${e2e_measure}s" --no-progress \
  --report "$out/e2e.json" > "$out/e2e-load.log" 2>&1 &
load=$!; pids+=("$load")
# Where each process's time goes while the whole chain runs: CPU per process from /proc, and
# (full mode, when perf works here) a cpu-clock sample profile of each, by thread and by symbol.
sleep 8 # past the viewers' ramp
declare -A e2e_pid=([simulate]=$sim [pipeline]=$pipe [gateway]=$gw [broker]=$broker_pid [load]=$load)
declare -A c0
for name in "${!e2e_pid[@]}"; do c0[$name]=$(cpu_ticks "${e2e_pid[$name]}"); done
pt0=$(date +%s.%N)
profile_s=$(( e2e_measure / 2 > 3 ? e2e_measure / 2 : 3 ))
if [ "$mode" = full ] && perf_ok; then
  # System-wide, then split by process: attaching to the processes' many threads one by one
  # failed here, and the machine runs nothing else meanwhile.
  perf record -a -e cpu-clock -F 499 -o "$out/e2e.perf" -- sleep "$profile_s" \
    > "$out/perf-record.log" 2>&1 || echo "bench: perf record failed (see $out/perf-record.log)" >&2
  for name in "${!e2e_pid[@]}"; do
    for t in /proc/"${e2e_pid[$name]}"/task/*; do echo "${t##*/} $name"; done
  done > "$out/e2e.tids"
else
  sleep "$profile_s"
fi
pwall=$(awk -v a="$pt0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')
for name in "${!e2e_pid[@]}"; do
  printf '{"stage":"process_cpu","during":"4. end to end","process":"%s","cpu_s":%s,"wall_s":%s}\n' "$name" \
    "$(awk -v a="${c0[$name]}" -v b="$(cpu_ticks "${e2e_pid[$name]}")" -v hz="$tick_hz" 'BEGIN{print (b-a)/hz}')" \
    "$pwall" >> "$results"
done
wait "$load" || { echo "bench: busflow load failed (see $out/e2e-load.log)" >&2; exit 1; }
broker_record "4. end to end"
if [ -s "$out/e2e.perf" ]; then
  profile_json "$out/e2e.perf" "$out/e2e.tids" >> "$results" \
    || echo "bench: could not read the profile $out/e2e.perf" >&2
fi
tail -25 "$out/e2e-load.log"
stop_pid "$sim"; stop_pid "$gw"; stop_pid "$pipe"
printf '{"stage":"e2e","rate":%s,"load_report":"e2e.json"}\n' "$e2e_rate" >> "$results"

step "5/5 criterion benches"
rm -rf "$CARGO_TARGET_DIR/criterion"
cargo bench --locked -p busflow-simulator --bench generate -- "${crit_args[@]}" 2>&1 | tee "$out/criterion.log"
cargo bench --locked -p busflow-pipeline --bench per_event -- "${crit_args[@]}" 2>&1 | tee -a "$out/criterion.log"
cargo bench --locked -p busflow-gateway --bench matching -- "${crit_args[@]}" 2>&1 | tee -a "$out/criterion.log"

printf '{"stage":"run","mode":"%s","commit":"%s%s","date":"%s","wall_s":%s,"loadavg_start":"%s","loadavg_end":"%s"}\n' \
  "$mode" "$commit" "$dirty" "$(date -u +%Y-%m-%dT%H:%MZ)" "$(( $(date +%s) - start ))" \
  "$load_start" "$(cut -d' ' -f1-3 /proc/loadavg)" >> "$results"

if [ "$mode" = quick ]; then
  step "check ratios against their floors"
  "$bin/bench-report" check --results "$results"
  "$bin/bench-report" render --results "$results" --criterion "$CARGO_TARGET_DIR/criterion" \
    --mode quick --out "$out/BENCHMARKS.md" --plots "$out/plots"
else
  step "render BENCHMARKS.md and plots"
  if ! command -v gnuplot >/dev/null; then
    sudo_cmd=; [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
    $sudo_cmd apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq gnuplot-nox >/dev/null \
      || echo "bench: could not install gnuplot; BENCHMARKS.md will have no plots" >&2
  fi
  "$bin/bench-report" render --results "$results" --criterion "$CARGO_TARGET_DIR/criterion" \
    --mode full --out BENCHMARKS.md --plots bench/plots
fi
step "done: results in $out"
