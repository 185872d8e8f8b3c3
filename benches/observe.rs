//! What the bench reads from the running service between points: its outbox backlog, its own
//! count of creates per committed batch, and its peak memory.

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
