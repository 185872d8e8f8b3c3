//! What the bench reads from the running service between points: its outbox backlog, its own
//! histograms (creates per committed batch, a create's time in the replica and writing), its peak
//! memory, and PostgreSQL's statement execution time by kind (`pg_stat_statements`); and the
//! machine's busy CPU time, to put a CPU cost on each create.

use std::time::{Duration, Instant};

use crate::Bench;

/// (sum, count) of three of the service's histograms at one moment.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSums {
    /// Creates per committed batch.
    pub batched: (f64, f64),
    /// A create's time in the replica, seconds.
    pub in_replica: (f64, f64),
    /// A create's time being written, seconds.
    pub writing: (f64, f64),
}

impl ServiceSums {
    /// Means over what happened between `self` and `later`: creates per batch, and ms in the
    /// replica and writing per create.
    pub fn means_until(&self, later: &ServiceSums) -> (Option<f64>, Option<f64>, Option<f64>) {
        let mean = |a: (f64, f64), b: (f64, f64), scale: f64| {
            (b.1 > a.1).then(|| (b.0 - a.0) / (b.1 - a.1) * scale)
        };
        (
            mean(self.batched, later.batched, 1.0),
            mean(self.in_replica, later.in_replica, 1000.0),
            mean(self.writing, later.writing, 1000.0),
        )
    }
}

/// PostgreSQL's statement execution time in one database over a run (`pg_stat_statements`), ms:
/// the relay's statements (those on `outbox_events` that write no new row: claims, SENT marks,
/// retries) and the rest (the requests' own, creates' writes among them), and how many ran.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct DbTime {
    /// The requests' statements (every statement but the relay's).
    pub requests_ms: f64,
    /// The outbox relay's statements.
    pub relay_ms: f64,
    /// Statements executed.
    pub statements: f64,
}

impl DbTime {
    /// Every statement's execution, ms.
    pub fn all_ms(&self) -> f64 {
        self.requests_ms + self.relay_ms
    }
}

/// Forgets every database's statement statistics, so that [`db_time`] counts from now. An error
/// (`pg_stat_statements` not loaded) stops the bench: without the reset, a run's figures would
/// silently carry every earlier run's statements.
pub async fn reset_db_time(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    sqlx::query("SELECT pg_stat_statements_reset()")
        .execute(pool)
        .await?;
    Ok(())
}

/// What the statements of `pool`'s database executed since the last [`reset_db_time`].
pub async fn db_time(pool: &sqlx::PgPool) -> Option<DbTime> {
    let rows: Vec<(String, f64, i64)> = sqlx::query_as(
        "SELECT query, total_exec_time, calls FROM pg_stat_statements \
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(pool)
    .await
    .ok()?;
    let mut t = DbTime::default();
    for (query, ms, calls) in rows {
        if query.contains("pg_stat_statements") {
            continue;
        }
        t.statements += calls as f64;
        if query.contains("outbox_events") && !query.contains("INSERT INTO") {
            t.relay_ms += ms;
        } else {
            t.requests_ms += ms;
        }
    }
    Some(t)
}

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

    /// The service's own histograms so far, from `/metrics` (`None` if the endpoint does not
    /// answer): creates per committed batch, and a create's time in the replica and writing.
    pub async fn service_sums(&self) -> Option<ServiceSums> {
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
        let pair = |name: &str| {
            Some((
                value(&format!("{name}_sum"))?,
                value(&format!("{name}_count"))?,
            ))
        };
        Some(ServiceSums {
            batched: pair("create_batch_size")?,
            in_replica: pair("create_seconds")?,
            writing: pair("create_write_seconds")?,
        })
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
