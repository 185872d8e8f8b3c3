//! A run's report: `report.json` (everything, for `sim compare` and tools), `summary.md` (for
//! people and CI logs); [`crate::charts`] draws the self-contained `index.html` from it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::checker::Verdict;
use crate::scrape::Sample;

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
}

impl Latency {
    /// From a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |v: u64| v as f64 / 1000.0;
        Self {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// One operation kind over the whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpStats {
    /// Operations.
    pub count: u64,
    /// Succeeded.
    pub ok: u64,
    /// Answered with an error.
    pub fail: u64,
    /// No answer in the end (timed out on every attempt).
    pub unknown: u64,
    /// Not sent (the booking it refers to was never made).
    pub skipped: u64,
    /// Attempts beyond the first.
    pub retries: u64,
    /// Failures by wire code.
    pub codes: BTreeMap<String, u64>,
    /// From the scheduled time to the final answer.
    pub latency: Latency,
    /// Latency histogram: (upper bound ms, count) on a log scale.
    pub histogram: Vec<(f64, u64)>,
}

/// One bucket of the run's timeline ([`Report::bucket_s`] long: a second, or less for short runs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Start of the bucket in seconds, from the start of the load.
    pub t_s: f64,
    /// Operations scheduled in this bucket.
    #[serde(default)]
    pub offered: u64,
    /// Completed operations.
    pub done: u64,
    /// Of which succeeded.
    pub ok: u64,
    /// Of which the service refused by a rule (`BUS_*`, `AUT_*`): a correct no.
    #[serde(default)]
    pub refused: u64,
    /// Of which failed otherwise (`SYS_*`, no responders, an unreadable reply).
    #[serde(default)]
    pub errors: u64,
    /// Of which got no answer at all.
    #[serde(default)]
    pub unknown: u64,
    /// Per operation kind: count and latency of what completed in this bucket.
    pub ops: BTreeMap<String, (u64, Latency)>,
}

/// A periodic look at the database and course-stub.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// Time, ms.
    pub t_ms: u64,
    /// Pending outbox rows (None: database unreachable).
    pub backlog: Option<i64>,
    /// Σ |course-stub − bookings| over slots (None: not measured).
    pub drift: Option<i64>,
}

/// Scraped service metrics at one time, summed over replicas.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsAt {
    /// Time, ms.
    pub t_ms: u64,
    /// Replicas that answered.
    pub replicas: usize,
    /// Values.
    pub values: Sample,
}

/// A fault from start to end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultSpan {
    /// Kind name.
    pub kind: String,
    /// Start, ms.
    pub start_ms: u64,
    /// End, ms (= start for one-shot faults).
    pub end_ms: u64,
}

/// Something that happened to the stack (fault applied, replica exited or restarted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Happening {
    /// Time, ms.
    pub t_ms: u64,
    /// What.
    pub what: String,
}

/// A threshold and whether it held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What was bounded.
    pub name: String,
    /// The bound.
    pub bound: f64,
    /// The measured value.
    pub actual: f64,
    /// Within the bound.
    pub held: bool,
}

/// Everything about one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Scenario description.
    pub description: String,
    /// Seed.
    pub seed: u64,
    /// SHA-256 of the trace.
    pub trace_hash: String,
    /// Replicas.
    pub replicas: usize,
    /// The command that reproduces this run.
    pub reproduce: String,
    /// Offered arrival rate (steady part), per second.
    pub offered_rate: f64,
    /// Seconds from the first scheduled operation to the last answer.
    pub load_s: f64,
    /// Completed operations per second over `load_s`.
    pub throughput: f64,
    /// Per operation kind.
    pub ops: BTreeMap<String, OpStats>,
    /// The timeline's bucket length in seconds: 1, or less when the load is short.
    #[serde(default = "one_second")]
    pub bucket_s: f64,
    /// The load over time, bucket by bucket.
    pub timeline: Vec<Bucket>,
    /// Backlog and drift over time.
    pub probes: Vec<Probe>,
    /// Service metrics over time.
    pub metrics: Vec<MetricsAt>,
    /// Faults.
    pub faults: Vec<FaultSpan>,
    /// What happened to the stack.
    pub happenings: Vec<Happening>,
    /// Seconds after the load and the faults ended until course-service matched (None: never).
    pub convergence_s: Option<f64>,
    /// Verdicts I1–I7, and C1 (the wire tap).
    pub invariants: Vec<Verdict>,
    /// Messages the wire tap checked, per subject.
    #[serde(default)]
    pub wire: BTreeMap<String, u64>,
    /// The scenario's thresholds.
    pub thresholds: Vec<Check>,
    /// What the run was asked for: mix, shares, timeouts, catalogue, stages, fsync.
    #[serde(default)]
    pub parameters: Vec<(String, String)>,
    /// Where it ran: cores, PostgreSQL and NATS versions.
    #[serde(default)]
    pub host: Vec<(String, String)>,
}

fn one_second() -> f64 {
    1.0
}

impl Report {
    /// Every invariant and threshold held.
    pub fn passed(&self) -> bool {
        self.invariants.iter().all(|v| v.held) && self.thresholds.iter().all(|c| c.held)
    }

    /// Reads a `report.json`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let path = if path.is_dir() {
            path.join("report.json")
        } else {
            path.to_path_buf()
        };
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    }

    /// Writes `report.json` and `summary.md` into `dir` (`charts::write` adds the page).
    pub fn write_data(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(self)?)?;
        std::fs::write(dir.join("summary.md"), self.markdown())?;
        Ok(())
    }

    /// The Markdown summary.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# {} · seed {}\n\n{}\n\n{} replica(s) · offered {:.0}/s · {} operations in {:.2} s · **{:.0} ops/s** · trace `{}`\n",
            self.scenario,
            self.seed,
            self.description,
            self.replicas,
            self.offered_rate,
            self.ops.values().map(|o| o.count).sum::<u64>(),
            self.load_s,
            self.throughput,
            &self.trace_hash[..self.trace_hash.len().min(16)]
        );
        out.push_str("| operation | count | ok | fail | unknown | skipped | retries | codes | p50 ms | p90 | p99 | p99.9 | max |\n");
        out.push_str("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|\n");
        for (name, o) in &self.ops {
            let codes = if o.codes.is_empty() {
                "-".to_owned()
            } else {
                o.codes
                    .iter()
                    .map(|(c, n)| format!("{c}×{n}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let l = &o.latency;
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} | {} | {codes} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                o.count, o.ok, o.fail, o.unknown, o.skipped, o.retries, l.p50, l.p90, l.p99, l.p999, l.max
            );
        }
        out.push('\n');
        match self.convergence_s {
            Some(s) => {
                let _ = writeln!(
                    out,
                    "course-service converged {s:.2} s after the load and faults ended.\n"
                );
            }
            None => out.push_str("course-service **did not converge**.\n\n"),
        }
        if !self.faults.is_empty() {
            out.push_str("Faults: ");
            let spans: Vec<String> = self
                .faults
                .iter()
                .map(|f| {
                    format!(
                        "{} {:.1}–{:.1} s",
                        f.kind,
                        f.start_ms as f64 / 1000.0,
                        f.end_ms as f64 / 1000.0
                    )
                })
                .collect();
            out.push_str(&spans.join(", "));
            out.push_str("\n\n");
        }
        for v in &self.invariants {
            let _ = write!(
                out,
                "- {} {}: **{}** ({} checked",
                v.id,
                v.name,
                if v.held { "held" } else { "VIOLATED" },
                v.checked
            );
            if v.violations > 0 {
                let _ = write!(
                    out,
                    ", {} violations: {}",
                    v.violations,
                    v.witnesses.join("; ")
                );
            }
            out.push_str(")\n");
            if !v.notes.is_empty() {
                let _ = writeln!(out, "  - noted: {}", v.notes.join("; "));
            }
        }
        for c in &self.thresholds {
            let _ = writeln!(
                out,
                "- threshold {}: {:.2} against {:.2}: **{}**",
                c.name,
                c.actual,
                c.bound,
                if c.held { "ok" } else { "BREACHED" }
            );
        }
        if !self.passed() {
            let _ = writeln!(out, "\nReproduce: `{}`", self.reproduce);
        }
        out
    }
}

mod compare;
pub use compare::{compare, Gates, Regression};

#[cfg(test)]
pub(crate) mod tests;
