//! What the bench reads from the running service between points: its outbox backlog, its own
//! count of creates per committed batch, and its peak memory; and the machine's busy CPU time, to
//! put a CPU cost on each create.

use std::time::{Duration, Instant};

use crate::Bench;

impl Bench {
    /// The relay's backlog when a point ends: rows not yet sent (PENDING), and how long the relay
    /// then took to send them all (ms; `None` if not within 30 s).
    pub async fn outbox_backlog(&self) -> anyhow::Result<(i64, Option<f64>)> {
        let pending = || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM outbox_events WHERE status = 'PENDING'",
            )
            .fetch_one(&self.pool)
            .await
        };
        let at_end = pending().await?;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if pending().await? == 0 {
                return Ok((at_end, Some(started.elapsed().as_secs_f64() * 1000.0)));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok((at_end, None))
    }

    /// The service's own count of creates committed in batches so far: (creates, batches), from
    /// its `create_batch_size` histogram on `/metrics`; `None` if the endpoint does not answer.
    pub async fn batched_so_far(&self) -> Option<(f64, f64)> {
        let addr = self.stack.http_addrs().first()?;
        let text = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
        };
        Some((
            value("create_batch_size_sum")?,
            value("create_batch_size_count")?,
        ))
    }

    /// The service process's peak resident memory (VmHWM), MiB.
    pub async fn service_peak_memory_mib(&self) -> Option<f64> {
        let pid = self.stack.service_pid(0).await?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    }
}

/// CPU time the whole machine has spent busy so far (every core, every process: user, system,
/// interrupts, steal), in ms, from `/proc/stat`; `None` where that is not readable. The bench
/// runs alone on its machine, so the busy time across a run divided by its bookings is what one
/// booking costs the whole stack, load generator included, however fast the machine is that day.
pub fn machine_busy_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    // /proc/stat counts in USER_HZ, 100 per second on Linux whatever the kernel's own tick.
    Some(busy as f64 * 10.0)
}

/// Who spent a run's CPU: the processes the bench names (booking-service, nats-server, PostgreSQL's
/// processes, each by its process name; the bench itself as load generator) and the rest of the
/// machine.
pub const CPU_PARTS: [&str; 5] = [
    "booking-service",
    "nats-server",
    "postgres",
    "load generator",
    "other",
];

/// CPU time (user + system, ms) each of [`CPU_PARTS`] but "other" has spent so far, summed over
/// its processes' `/proc/<pid>/stat`, each with its reaped children's (a PostgreSQL backend that
/// exits between two readings is then still counted, in the postmaster's); the machine's
/// [`machine_busy_ms`] minus these is "other".
pub fn process_busy_ms() -> [f64; 4] {
    let own = std::process::id().to_string();
    let mut sums = [0.0; 4];
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return sums;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces or parentheses, so split at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        // The first three parts are named as the processes call themselves.
        let comm = &stat[open + 1..close];
        let part = if pid == own {
            3
        } else {
            match CPU_PARTS[..3].iter().position(|&name| name == comm) {
                Some(part) => part,
                None => continue,
            }
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // After the comm: state is field 0, then utime, stime, cutime, cstime at 11 to 14 (fields
        // 14 to 17 of proc(5)).
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(0)
        };
        sums[part] += (11..=14).map(ticks).sum::<u64>() as f64 * 10.0;
    }
    sums
}
