//! Renders BENCHMARKS.md (and its plots, with gnuplot) from one `bench/run.sh` run, or checks a
//! quick run's ratios against generous floors. Every number in the output comes from the run's
//! files; nothing is typed in by hand.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use busflow_bench::results::{CriterionBench, Results, criterion, num};
use clap::{Parser, Subcommand};
use serde_json::Value;

#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Write the markdown report and the plots.
    Render {
        /// The run's results.jsonl.
        #[arg(long, env = "BENCH_RESULTS")]
        results: PathBuf,
        /// criterion's output directory (`$CARGO_TARGET_DIR/criterion`).
        #[arg(long, env = "BENCH_CRITERION_DIR")]
        criterion: Option<PathBuf>,
        /// Markdown file to write.
        #[arg(long, env = "BENCH_MARKDOWN", default_value = "BENCHMARKS.md")]
        out: PathBuf,
        /// Directory for the PNG plots (linked relative to the markdown file).
        #[arg(long, env = "BENCH_PLOTS", default_value = "bench/plots")]
        plots: PathBuf,
        /// What was run: `full` or `quick`.
        #[arg(long, env = "BENCH_MODE", default_value = "full")]
        mode: String,
    },
    /// Fail when a ratio is below its floor (quick mode in CI).
    Check {
        /// The run's results.jsonl.
        #[arg(long, env = "BENCH_RESULTS")]
        results: PathBuf,
        /// Lowest acceptable simulator/bare-producer ratio.
        #[arg(long, env = "BENCH_FLOOR_SIMULATOR", default_value_t = 0.25)]
        simulator_floor: f64,
        /// Lowest acceptable pipeline/identity-copy ratio (every worker count).
        #[arg(long, env = "BENCH_FLOOR_PIPELINE", default_value_t = 0.15)]
        pipeline_floor: f64,
    },
}

fn main() -> Result<()> {
    match Args::parse().cmd {
        Cmd::Render { results, criterion: crit, out, plots, mode } => {
            let r = Results::read(&results)?;
            let benches = match crit {
                Some(dir) => criterion(&dir)?,
                None => Vec::new(),
            };
            let rel = relative(&plots, out.parent().unwrap_or(Path::new(".")));
            let plotted = plot(&r, &plots)?;
            let md = render(&r, &benches, &mode, &rel, &plotted)?;
            std::fs::write(&out, md).with_context(|| format!("writing {}", out.display()))?;
            eprintln!("bench-report: wrote {}", out.display());
            Ok(())
        }
        Cmd::Check { results, simulator_floor, pipeline_floor } => {
            check(&Results::read(&results)?, simulator_floor, pipeline_floor)
        }
    }
}

fn check(r: &Results, sim_floor: f64, pipe_floor: f64) -> Result<()> {
    let mut failures = Vec::new();
    let mut seen = 0;
    for rec in r.of("simulator", Some("produce")) {
        seen += 1;
        let ratio = num(rec, "ratio");
        println!(
            "simulator/bare producer: {:.1}% (floor {:.0}%)",
            ratio * 100.0,
            sim_floor * 100.0
        );
        if ratio.is_nan() || ratio < sim_floor {
            failures.push(format!("simulator at {:.1}% of the bare producer", ratio * 100.0));
        }
    }
    for rec in r.of("pipeline", Some("throughput")) {
        seen += 1;
        let ratio = num(rec, "ratio");
        let w = num(rec, "workers");
        println!(
            "pipeline -w {w}/identity copy: {:.1}% (floor {:.0}%)",
            ratio * 100.0,
            pipe_floor * 100.0
        );
        if ratio.is_nan() || ratio < pipe_floor {
            failures.push(format!("pipeline -w {w} at {:.1}% of the identity copy", ratio * 100.0));
        }
    }
    for rec in r.of("fanout", None).chain(r.of("e2e", None)) {
        let load = r.load_report(rec)?;
        let stage = rec.get("stage").and_then(Value::as_str).unwrap_or("?");
        let (clients, connected) = (num(&load, "clients"), num(&load, "connected"));
        let (events, violations) = (num(&load, "events"), num(&load, "violations"));
        println!(
            "{stage}: {connected}/{clients} viewers, {events} events, {violations} violations"
        );
        if connected < clients || events.is_nan() || events <= 0.0 || violations != 0.0 {
            failures.push(format!(
                "{stage}: {connected}/{clients} connected, {events} events, {violations} violations"
            ));
        }
    }
    if seen == 0 {
        bail!("no simulator or pipeline ratios in the results: the run did not measure anything");
    }
    if failures.is_empty() {
        println!("all ratios above their floors");
        Ok(())
    } else {
        bail!("below the floor: {}", failures.join("; "))
    }
}

/// `to` relative to `from` when `to` lies under it; else `to` as given.
fn relative(to: &Path, from: &Path) -> String {
    // The parent of a bare `BENCHMARKS.md` is the empty path, which `absolute` refuses; the
    // report then linked the plots by the absolute path of the clone it ran in.
    let from = if from.as_os_str().is_empty() { Path::new(".") } else { from };
    let to_abs = std::path::absolute(to).unwrap_or_else(|_| to.to_path_buf());
    let from_abs = std::path::absolute(from).unwrap_or_else(|_| from.to_path_buf());
    to_abs.strip_prefix(&from_abs).unwrap_or(to).display().to_string()
}

fn fmt_rate(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

fn fmt_ms(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn pct(v: f64) -> String {
    if v.is_nan() { "–".into() } else { format!("{:.0}%", v * 100.0) }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown CPU");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem_kb: f64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rustc = Command::new("rustc")
        .arg("-V")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "| CPU | {model} |\n| cores available | {cores} |\n| memory | {:.1} GiB |\n| kernel | {} |\n| compiler | {rustc} |\n| broker | nisshi 0.8.1, memory engine, on loopback on the same machine |\n",
        mem_kb / 1024.0 / 1024.0,
        kernel.trim()
    )
}

fn render(
    r: &Results,
    benches: &[CriterionBench],
    mode: &str,
    plots_rel: &str,
    plotted: &[(&'static str, &'static str)],
) -> Result<String> {
    let mut md = String::new();
    let meta = r.of("run", None).next().cloned().unwrap_or(Value::Null);
    let commit = meta.get("commit").and_then(Value::as_str).unwrap_or("unknown");
    let date = meta.get("date").and_then(Value::as_str).unwrap_or("unknown");
    let wall = num(&meta, "wall_s");
    writeln!(md, "# Benchmarks\n")?;
    writeln!(
        md,
        "Generated by `bench/run.sh{}` on {date} at commit `{commit}`; do not edit by hand, run the script again. \
         Every figure below was measured in that one run (the whole run took {:.0} minutes). \
         Targets are the ones the simulator (#3), pipeline (#4) and gateway (#5) issues state.\n",
        if mode == "quick" { " --quick" } else { "" },
        wall / 60.0
    )?;
    writeln!(
        md,
        "## Machine\n\n| | |\n|---|---|\n{}| load average (1/5/15 min) at start, at end | {} ; {} |\n",
        machine(),
        meta.get("loadavg_start").and_then(Value::as_str).unwrap_or("?"),
        meta.get("loadavg_end").and_then(Value::as_str).unwrap_or("?")
    )?;
    writeln!(
        md,
        "Everything (broker, the program measured, its load generator) shares these cores, so each \
         figure includes the cost of the others running beside it, as a single-machine deployment would.\n"
    )?;

    // 1. Simulator.
    writeln!(md, "## 1. Simulator produce rate vs a bare rdkafka producer\n")?;
    writeln!(
        md,
        "`cargo bench -p busflow-simulator --bench produce`: the same records (real simulator payloads) \
         sent by a bare single-thread `ThreadedProducer` loop over pre-built records, then generated and \
         sent by the simulator (100,000 vehicles, as fast as the broker accepts), alternating twice on \
         fresh topics. Target: simulator >= 90% of the bare loop.\n"
    )?;
    writeln!(
        md,
        "| records/run | payload | bare loop | simulator | ratio | target |\n|---|---|---|---|---|---|"
    )?;
    for rec in r.of("simulator", Some("produce")) {
        let ratio = num(rec, "ratio");
        writeln!(
            md,
            "| {} | {:.0} B | {}/s | {}/s | {} | 90% {} |",
            num(rec, "records"),
            num(rec, "payload_bytes"),
            fmt_rate(num(rec, "baseline_per_s")),
            fmt_rate(num(rec, "per_s")),
            pct(ratio),
            if ratio >= 0.9 { "met" } else { "**not met**" }
        )?;
    }

    // 2. Pipeline.
    writeln!(md, "\n## 2. Pipeline throughput and added latency\n")?;
    writeln!(
        md,
        "`pipeline/examples/throughput.rs` per worker count: a backlog of raw reports from 500 buses on \
         Cairns shapes, copied by an identity consumer->producer (same client settings), then processed \
         by the pipeline (timed from start to every offset committed, so startup is included); then \
         reports sent at fixed rates, 'added latency' = positions record timestamp - raw `ts` (send \
         time). Targets: -w 2 >= 80% of the identity copy; p99 <= 50 ms at 20,000 events/s.\n"
    )?;
    writeln!(
        md,
        "| workers | messages | identity copy | pipeline | ratio | target |\n|---|---|---|---|---|---|"
    )?;
    for rec in r.of("pipeline", Some("throughput")) {
        let w = num(rec, "workers");
        let ratio = num(rec, "ratio");
        writeln!(
            md,
            "| {w} | {} | {}/s | {}/s | {} | {} |",
            num(rec, "messages"),
            fmt_rate(num(rec, "baseline_per_s")),
            fmt_rate(num(rec, "per_s")),
            pct(ratio),
            if w == 2.0 { if ratio >= 0.8 { "80% met" } else { "80% **not met**" } } else { "–" }
        )?;
    }
    writeln!(
        md,
        "\n| workers | rate asked | offered | samples | p50 ms | p90 ms | p99 ms | max ms | target p99 |\n|---|---|---|---|---|---|---|---|---|"
    )?;
    for rec in r.of("pipeline", Some("latency")) {
        let rate = num(rec, "rate");
        let p99 = num(rec, "p99_ms");
        writeln!(
            md,
            "| {} | {}/s | {}/s | {} | {} | {} | {} | {} | {} |",
            num(rec, "workers"),
            fmt_rate(rate),
            fmt_rate(num(rec, "offered_per_s")),
            num(rec, "samples"),
            fmt_ms(num(rec, "p50_ms")),
            fmt_ms(num(rec, "p90_ms")),
            fmt_ms(p99),
            fmt_ms(num(rec, "max_ms")),
            if rate == 20_000.0 {
                if p99 <= 50.0 { "50 ms met" } else { "50 ms **not met**" }
            } else {
                "–"
            }
        )?;
    }

    // 3. Fan-out.
    writeln!(md, "\n## 3. Gateway fan-out\n")?;
    writeln!(
        md,
        "A release `busflow gateway` process fed from the broker by `bench-feed` (derived positions of \
         vehicles driving Cairns shapes, at a fixed rate), and `busflow load` (one process) opening SSE \
         viewers with random 3 km district viewports over the network's area, ramped, then measured. \
         Latency = viewer arrival - the record's `processed_ts` (set by the feeder just before producing), \
         so it includes the broker hop. Gateway RSS per viewer = (RSS with viewers connected - RSS \
         before they connected) / connected viewers; CPU = gateway CPU seconds / wall seconds over the \
         measured window. Targets: 10,000 viewers at 20,000 updates/s with p99 <= 100 ms, <= 16 KB per \
         viewer, no viewport violations.\n"
    )?;
    writeln!(
        md,
        "| viewers | connected | feed rate | events/s delivered | p50 ms | p90 ms | p99 ms | max ms | RSS/viewer | gateway CPU | violations | errors, disconnects |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    )?;
    for rec in r.of("fanout", None) {
        let load = r.load_report(rec)?;
        let connected = num(&load, "connected");
        let rss = (num(rec, "rss_loaded_kb") - num(rec, "rss_idle_kb")) / connected.max(1.0);
        writeln!(
            md,
            "| {} | {} | {}/s | {} | {} | {} | {} | {} | {:.1} KB | {:.0}% | {} | {} |",
            num(&load, "clients"),
            connected,
            fmt_rate(num(rec, "feed_per_s")),
            fmt_rate(num(&load, "events_per_s")),
            fmt_ms(num(&load, "produce_latency.p50_ms")),
            fmt_ms(num(&load, "produce_latency.p90_ms")),
            fmt_ms(num(&load, "produce_latency.p99_ms")),
            fmt_ms(num(&load, "produce_latency.max_ms")),
            rss,
            100.0 * num(rec, "gateway_cpu_s") / num(rec, "window_s"),
            num(&load, "violations"),
            reasons(&load)
        )?;
    }

    // 4. End to end.
    writeln!(md, "\n## 4. End to end\n")?;
    writeln!(
        md,
        "`busflow simulate --no-faults` (fleet sized for the rate, `--rate` capped; no injected clock skew or delays, so the latency is the system's own) -> nisshi -> `busflow pipeline -w 2` \
         -> nisshi -> `busflow gateway` -> `busflow load` SSE viewers, each a separate release process on \
         this machine. Latency = viewer arrival - the report's `ts` (the simulator's clock at emission, \
         anchored at the wall clock).\n"
    )?;
    writeln!(
        md,
        "| events/s asked | viewers | connected | events/s delivered | p50 ms | p90 ms | p99 ms | max ms | violations | errors, disconnects |\n|---|---|---|---|---|---|---|---|---|---|"
    )?;
    for rec in r.of("e2e", None) {
        let load = r.load_report(rec)?;
        writeln!(
            md,
            "| {}/s | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            fmt_rate(num(rec, "rate")),
            num(&load, "clients"),
            num(&load, "connected"),
            fmt_rate(num(&load, "events_per_s")),
            fmt_ms(num(&load, "event_latency.p50_ms")),
            fmt_ms(num(&load, "event_latency.p90_ms")),
            fmt_ms(num(&load, "event_latency.p99_ms")),
            fmt_ms(num(&load, "event_latency.max_ms")),
            num(&load, "violations"),
            reasons(&load)
        )?;
    }

    // 5. Criterion.
    writeln!(md, "\n## 5. Per-event benches (criterion)\n")?;
    writeln!(
        md,
        "`cargo bench` of the criterion benches in `simulator/benches`, `pipeline/benches` and \
         `gateway/benches`{}. Targets: generation >= 2,000,000 events/s per core (simulator \
         `generate`); the pipeline's per-event path <= 5 µs (pipeline `per_event`).\n",
        if mode == "quick" { " with short warm-up and measurement times (quick mode)" } else { "" }
    )?;
    writeln!(
        md,
        "| bench | mean per iteration | 95% CI | per element | elements/s |\n|---|---|---|---|---|"
    )?;
    for b in benches {
        let per = b.elements.map(|e| b.mean_ns / e);
        writeln!(
            md,
            "| `{}` | {} | {} – {} | {} | {} |",
            b.id,
            fmt_ns(b.mean_ns),
            fmt_ns(b.ci_ns.0),
            fmt_ns(b.ci_ns.1),
            per.map(fmt_ns).unwrap_or_else(|| "–".into()),
            per.map(|p| fmt_rate(1e9 / p)).unwrap_or_else(|| "–".into())
        )?;
    }

    writeln!(md, "\n## Where the time goes\n")?;
    writeln!(
        md,
        "The broker's own CPU time during each stage (from `/proc/PID/stat`), as a share of one core. \
         On two cores, a broker near or above 100% is the stage's ceiling whatever our processes do.\n"
    )?;
    writeln!(md, "| stage | broker CPU s | wall s | broker load |\n|---|---|---|---|")?;
    for rec in r.of("broker_cpu", None) {
        let (cpu, wall) = (num(rec, "cpu_s"), num(rec, "wall_s"));
        writeln!(
            md,
            "| {} | {cpu:.1} | {wall:.1} | {:.0}% of a core |",
            rec.get("during").and_then(Value::as_str).unwrap_or("?"),
            100.0 * cpu / wall
        )?;
    }

    let cpu: Vec<&Value> = r.of("process_cpu", None).collect();
    if !cpu.is_empty() {
        writeln!(
            md,
            "\nEach process's CPU time over a window of the end-to-end stage, as a share of one core \
             (the machine has {} cores in all):\n",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        )?;
        writeln!(md, "| process | CPU s | wall s | load |\n|---|---|---|---|")?;
        let mut cpu = cpu;
        cpu.sort_by(|a, b| num(b, "cpu_s").total_cmp(&num(a, "cpu_s")));
        for rec in cpu {
            let (c, w) = (num(rec, "cpu_s"), num(rec, "wall_s"));
            writeln!(
                md,
                "| {} | {c:.1} | {w:.1} | {:.0}% of a core |",
                rec.get("process").and_then(Value::as_str).unwrap_or("?"),
                100.0 * c / w
            )?;
        }
    }
    let profiles: Vec<&Value> = r.of("profile", None).collect();
    if !profiles.is_empty() {
        writeln!(
            md,
            "\nA `perf record -a -e cpu-clock` sample profile of the machine over the same window, \
             split by process (`bench/out/full/e2e.perf`; rows of 1.5% or more of the process's own \
             samples). By thread name first (`rdk:*` are librdkafka's threads, `timely:*` the pipeline's workers, \
             `tokio-*` the gateway's runtime; numbered threads are grouped as `-N`), then by library and symbol.\n"
        )?;
        for process in ["simulate", "pipeline", "gateway", "broker", "load"] {
            for by in ["comm", "dso"] {
                let Some(rec) = profiles.iter().find(|p| {
                    p.get("process").and_then(Value::as_str) == Some(process)
                        && p.get("by").and_then(Value::as_str) == Some(by)
                }) else {
                    continue;
                };
                let rows = rec.get("rows").and_then(Value::as_array).cloned().unwrap_or_default();
                if rows.is_empty() {
                    continue;
                }
                let what = if by == "comm" { "thread" } else { "library and symbol" };
                writeln!(
                    md,
                    "**{process}** ({:.0}% of the machine's samples, idle included), by {what}:\n\n| share | {what} |\n|---|---|",
                    num(rec, "share_of_samples")
                )?;
                for row in rows {
                    let pct = row.get(0).and_then(Value::as_f64).unwrap_or(f64::NAN);
                    let name = row.get(1).and_then(Value::as_str).unwrap_or("?");
                    writeln!(
                        md,
                        "| {pct:.1}% | `{}` |",
                        name.replace('|', "\\|").replace('`', "'")
                    )?;
                }
                writeln!(md)?;
            }
        }
    }

    if !plotted.is_empty() {
        writeln!(md, "\n## Plots\n")?;
        for (file, title) in plotted {
            writeln!(md, "![{title}]({plots_rel}/{file})\n")?;
        }
    }
    Ok(md)
}

fn reasons(load: &Value) -> String {
    let mut parts = Vec::new();
    for key in ["errors", "disconnects"] {
        if let Some(map) = load.get(key).and_then(Value::as_object) {
            for (k, v) in map {
                parts.push(format!("{k}: {}", v.as_u64().unwrap_or(0)));
            }
        }
    }
    if parts.is_empty() { "none".into() } else { parts.join(", ") }
}

fn fmt_ns(ns: f64) -> String {
    if ns.is_nan() {
        "–".into()
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// Writes the plot data and renders PNGs with gnuplot; returns the plots made (file, title).
/// Without gnuplot the report says so instead of showing stale images.
fn plot(r: &Results, dir: &Path) -> Result<Vec<(&'static str, &'static str)>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut scripts = Vec::new();

    // Pipeline latency vs offered rate, per worker count.
    let mut lat = String::from("# workers offered_per_s p50_ms p99_ms\n");
    for rec in r.of("pipeline", Some("latency")) {
        writeln!(
            lat,
            "{} {} {} {}",
            num(rec, "workers"),
            num(rec, "offered_per_s"),
            num(rec, "p50_ms"),
            num(rec, "p99_ms")
        )?;
    }
    if lat.lines().count() > 1 {
        std::fs::write(dir.join("pipeline-latency.dat"), &lat)?;
        scripts.push((
            "pipeline-latency.png",
            "Pipeline added latency vs offered rate",
            "set title 'Pipeline added latency vs offered rate'\n\
             set xlabel 'offered events/s'\nset ylabel 'ms'\nset logscale y\nset key top left\n\
             plot 'pipeline-latency.dat' using ($1==1?$2:1/0):3 with linespoints title '-w 1 p50', \
             '' using ($1==1?$2:1/0):4 with linespoints title '-w 1 p99', \
             '' using ($1==2?$2:1/0):3 with linespoints title '-w 2 p50', \
             '' using ($1==2?$2:1/0):4 with linespoints title '-w 2 p99'\n"
                .to_string(),
        ));
    }

    // Fan-out: p99 latency and RSS per viewer vs viewers.
    let mut fan = String::from("# viewers p50_ms p99_ms rss_kb_per_viewer\n");
    for rec in r.of("fanout", None) {
        let load = r.load_report(rec)?;
        let connected = num(&load, "connected");
        writeln!(
            fan,
            "{} {} {} {}",
            connected,
            num(&load, "produce_latency.p50_ms"),
            num(&load, "produce_latency.p99_ms"),
            (num(rec, "rss_loaded_kb") - num(rec, "rss_idle_kb")) / connected.max(1.0)
        )?;
    }
    if fan.lines().count() > 1 {
        std::fs::write(dir.join("fanout.dat"), &fan)?;
        scripts.push((
            "fanout.png",
            "Gateway fan-out: latency and memory vs viewers",
            "set title 'Gateway fan-out: latency and memory vs viewers'\n\
             set xlabel 'connected SSE viewers'\nset ylabel 'delivery latency, ms'\n\
             set y2label 'gateway RSS per viewer, KB'\nset ytics nomirror\nset y2tics\nset key top left\n\
             plot 'fanout.dat' using 1:2 with linespoints title 'p50 latency', \
             '' using 1:3 with linespoints title 'p99 latency', \
             '' using 1:4 axes x1y2 with linespoints title 'RSS per viewer'\n"
                .to_string(),
        ));
    }

    let mut made = Vec::new();
    for (png, title, body) in scripts {
        let script =
            format!("set terminal pngcairo size 900,500\nset output '{png}'\nset grid\n{body}");
        let gp = dir.join(png.replace(".png", ".gp"));
        std::fs::write(&gp, &script)?;
        let status = Command::new("gnuplot")
            .arg(gp.file_name().unwrap_or_default())
            .current_dir(dir)
            .status();
        match status {
            Ok(s) if s.success() => made.push((png, title)),
            Ok(s) => eprintln!("bench-report: gnuplot failed on {} ({s}); no plot", gp.display()),
            Err(e) => eprintln!("bench-report: gnuplot not available ({e}); no plots"),
        }
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_linked_relative_to_the_report() {
        let out = Path::new("BENCHMARKS.md");
        assert_eq!(relative(Path::new("bench/plots"), out.parent().unwrap()), "bench/plots");
        assert_eq!(relative(Path::new("/tmp/o/plots"), Path::new("/tmp/o")), "plots");
    }
}
