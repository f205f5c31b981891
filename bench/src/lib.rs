//! Tools behind `bench/run.sh`: `bench-feed` writes derived positions at a fixed rate (the
//! gateway fan-out stage measures the gateway alone, so its input must not be limited by the
//! pipeline), and `bench-report` renders BENCHMARKS.md and its plots from the figures a run
//! wrote. The measuring programs themselves are the crates' own benches and examples plus
//! `busflow load`; they print `BENCH_RESULT {json}` lines that run.sh collects.

pub mod results;
