//! `sim`: the simulator's command line: run a scenario, replay a trace, compare two reports,
//! redraw a report, sweep capacity, or bring the stack up for manual use.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use simulator::capacity::{self, Sweep};
use simulator::report::{self, Report};
use simulator::run::{execute, RunOptions};
use simulator::scenario::Scenario;
use simulator::trace::Trace;

#[derive(Parser)]
#[command(name = "sim", about = "Park-golf booking simulator")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// Output folder (default: target/sim/<scenario>-seed<seed>, plus `-planted-<bug>` and
    /// `-no-fsync` for those variants, so a variant never overwrites the plain run's report).
    #[arg(long, conflicts_with = "out_root")]
    out: Option<PathBuf>,
    /// The folder of the plain run with seed 1 (`cargo xtask e2e` passes target/e2e); another
    /// seed or a variant writes next to it (target/e2e-seed7, target/e2e-planted-skip-row-lock).
    #[arg(long)]
    out_root: Option<PathBuf>,
    /// Turn fsync off (faster, not production-like).
    #[arg(long)]
    no_fsync: bool,
    /// Plant a known defect in the service (skip-row-lock, drop-outbox): the checker must catch it.
    #[arg(long)]
    planted_bug: Option<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario (built-in name or .toml path) and check every invariant.
    Run {
        /// Scenario name or path.
        #[arg(default_value = "e2e")]
        scenario: String,
        /// Seed of the catalogue, the workload and the faults.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Only expand and print the trace's hash (no run).
        #[arg(long)]
        trace_only: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Re-run a saved trace.jsonl.
    Replay {
        /// The trace.
        trace: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// List the built-in scenarios.
    List,
    /// Two reports side by side (report.json files or run folders).
    Compare {
        /// Baseline.
        a: PathBuf,
        /// Candidate.
        b: PathBuf,
        /// Fail when any operation's p99 grew by more than this many percent.
        #[arg(long)]
        max_p99_increase: Option<f64>,
        /// Fail when throughput fell by more than this many percent.
        #[arg(long)]
        max_throughput_drop: Option<f64>,
        /// Fail when any operation's failures plus no-answers grew by more than this many percent.
        #[arg(long)]
        max_errors_increase: Option<f64>,
        /// Fail when B holds fewer invariants than A.
        #[arg(long)]
        fail_on_invariants: bool,
    },
    /// Redraw a run folder's index.html (and summary.md) from its report.json.
    Render {
        /// A run folder or its report.json.
        report: PathBuf,
    },
    /// Sweep arrival rate × replicas; report the curve, the knee, the replicas for a target.
    Capacity {
        /// Scenario giving the workload mix.
        #[arg(long, default_value = "steady")]
        scenario: String,
        /// Offered rates, per second.
        #[arg(long, value_delimiter = ',', default_values_t = [100.0, 200.0, 400.0, 800.0])]
        rates: Vec<f64>,
        /// Replica counts.
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2])]
        replicas: Vec<usize>,
        /// Seconds of load per point.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// create p99 bound, ms.
        #[arg(long, default_value_t = 250.0)]
        p99_ms: f64,
        /// Rate to plan for.
        #[arg(long, default_value_t = 300.0)]
        target: f64,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output folder.
        #[arg(long, default_value = "target/capacity")]
        out: PathBuf,
    },
    /// Start the stack and keep it running until Ctrl-C.
    Up {
        /// booking-service replicas (two, as `e2e` runs).
        #[arg(long, default_value_t = 2)]
        replicas: usize,
        /// Seed of the stub's catalogue.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Send one NestJS-envelope request (or event) to a running stack and print the reply.
    Req {
        /// The subject, e.g. booking.create.
        subject: String,
        /// The request's data, as JSON.
        #[arg(default_value = "{}")]
        data: String,
        /// Emit it as an event (no reply), as course-service sends `booking.*.sync`.
        #[arg(long)]
        event: bool,
        /// NATS URL (default: NATS_URL, else the stack `cargo xtask up` started).
        #[arg(long)]
        server: Option<String>,
        /// How long to wait for the reply, ms.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sim: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_trace(
    trace: Trace,
    common: Common,
    reproduce: String,
) -> anyhow::Result<std::process::ExitCode> {
    let h = &trace.header;
    let out = common
        .out
        .clone()
        .unwrap_or_else(|| default_out(&common, &h.scenario.name, h.seed));
    let d = &h.derived;
    println!(
        "sim: scenario {} · seed {} · trace {}",
        h.scenario.name,
        h.seed,
        trace.hash()
    );
    println!(
        "sim: {} replica(s) · {} ops over {:.1} s at {:.0}/s{} ({} creates, {} of them in the rush, {} keyed; {} cancels, {} updates, {} reads) · {} slots, {} seats, {} hot · {} fault events",
        h.scenario.replicas,
        d.ops,
        h.scenario.duration_s,
        h.scenario.workload.rate,
        if h.scenario.workload.stages.is_empty() {
            String::new()
        } else {
            format!(
                " ramping in {} stage(s) to a peak of {:.0}/s",
                h.scenario.workload.stages.len(),
                h.scenario.workload.peak_rate()
            )
        },
        d.creates,
        d.rush,
        d.keyed,
        d.cancels,
        d.updates,
        d.reads,
        d.slots,
        d.seats,
        d.hot_slots,
        d.fault_events
    );
    let mut service_env = Vec::new();
    if let Some(bug) = &common.planted_bug {
        service_env.push(("PLANTED_BUG".to_owned(), bug.clone()));
    }
    let report = execute(
        &trace,
        &RunOptions {
            out: out.clone(),
            fsync: !common.no_fsync,
            progress: true,
            reproduce: reproduce.clone(),
            service_env,
        },
    )
    .await?;
    println!("{}", report.markdown());
    println!(
        "written to {0}/index.html, report.json, summary.md, trace.jsonl, history.jsonl",
        out.display()
    );
    if report.passed() {
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        eprintln!("sim: FAILED; reproduce with: {reproduce}");
        eprintln!(
            "sim: or replay the exact trace: cargo xtask sim replay {}/trace.jsonl",
            out.display()
        );
        Ok(std::process::ExitCode::FAILURE)
    }
}

/// Where a run writes when `--out` is not given: one folder per scenario, seed and variant.
fn default_out(common: &Common, scenario: &str, seed: u64) -> PathBuf {
    let mut name = match &common.out_root {
        Some(root) if seed == 1 => root.display().to_string(),
        Some(root) => format!("{}-seed{seed}", root.display()),
        None => format!("target/sim/{scenario}-seed{seed}"),
    };
    if let Some(bug) = &common.planted_bug {
        name.push_str(&format!("-planted-{bug}"));
    }
    if common.no_fsync {
        name.push_str("-no-fsync");
    }
    PathBuf::from(name)
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Cmd::Run {
            scenario,
            seed,
            trace_only,
            common,
        } => {
            let s = Scenario::load(&scenario)?;
            let trace = Trace::expand(&s, seed);
            if trace_only {
                println!("{}", trace.hash());
                return Ok(std::process::ExitCode::SUCCESS);
            }
            let mut reproduce = format!("cargo xtask sim run {scenario} --seed {seed}");
            if let Some(bug) = &common.planted_bug {
                reproduce.push_str(&format!(" --planted-bug {bug}"));
            }
            run_trace(trace, common, reproduce).await
        }
        Cmd::Replay { trace, common } => {
            let text = std::fs::read_to_string(&trace)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", trace.display()))?;
            let parsed = Trace::parse(&text)?;
            let reproduce = format!("cargo xtask sim replay {}", trace.display());
            let common = Common {
                out: common.out.or_else(|| {
                    Some(PathBuf::from(format!(
                        "target/sim/replay-{}-seed{}",
                        parsed.header.scenario.name, parsed.header.seed
                    )))
                }),
                ..common
            };
            run_trace(parsed, common, reproduce).await
        }
        Cmd::List => {
            for (name, _) in simulator::scenario::BUILT_IN {
                let s = Scenario::load(name)?;
                println!("{name:18} {}", s.description);
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Compare {
            a,
            b,
            max_p99_increase,
            max_throughput_drop,
            max_errors_increase,
            fail_on_invariants,
        } => {
            let (a, b) = (Report::load(&a)?, Report::load(&b)?);
            let gates = report::Gates {
                p99_increase_pct: max_p99_increase,
                throughput_drop_pct: max_throughput_drop,
                errors_increase_pct: max_errors_increase,
                invariants: fail_on_invariants,
            };
            let (table, regressions) = report::compare(&a, &b, &gates);
            println!("{table}");
            for r in &regressions {
                eprintln!("sim compare: REGRESSION: {}", r.0);
            }
            Ok(if regressions.is_empty() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            })
        }
        Cmd::Render { report } => {
            let r = Report::load(&report)?;
            let dir = if report.is_dir() {
                report
            } else {
                report
                    .parent()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("."))
            };
            simulator::charts::write(&r, &dir)?;
            println!("written to {}", dir.join("index.html").display());
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Capacity {
            scenario,
            rates,
            replicas,
            duration,
            p99_ms,
            target,
            seed,
            out,
        } => {
            let result = capacity::sweep(
                &Sweep {
                    base: Scenario::load(&scenario)?,
                    rates,
                    replicas,
                    duration_s: duration,
                    p99_ms,
                    target,
                    seed,
                    out: out.clone(),
                    fsync: true,
                },
                true,
            )
            .await?;
            println!("{}", capacity::markdown(&result));
            println!(
                "written to {}/index.html, capacity.json, capacity.md",
                out.display()
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Up { replicas, seed } => {
            simulator::manual::up(replicas, seed).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Req {
            subject,
            data,
            event,
            server,
            timeout_ms,
        } => {
            let data: serde_json::Value = serde_json::from_str(&data)
                .map_err(|e| anyhow::anyhow!("the data is not JSON ({e}): {data}"))?;
            let url = simulator::manual::nats_url(server)?;
            let timeout = std::time::Duration::from_millis(timeout_ms);
            Ok(
                if simulator::manual::request(&url, &subject, &data, event, timeout).await? {
                    std::process::ExitCode::SUCCESS
                } else {
                    std::process::ExitCode::FAILURE
                },
            )
        }
    }
}
