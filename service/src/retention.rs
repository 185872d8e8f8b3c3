//! Retention: delivered outbox rows and expired idempotency keys are deleted on a schedule, in
//! bounded batches, so neither table grows for ever. Each pass is logged and counted.

use std::sync::Arc;

use tokio::sync::watch;

use crate::app::App;

/// Rows deleted per statement: short transactions, no long lock on a large table.
const BATCH: i64 = 5_000;

/// Prunes every `PRUNE_INTERVAL_SECS` until `shutdown`.
pub(crate) async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(app.config.prune_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        match prune(&app).await {
            Ok((0, 0)) => {}
            Ok((sent, keys)) => {
                tracing::info!(sent, keys, "pruned delivered outbox rows and expired keys")
            }
            Err(e) => tracing::warn!(error = %e, "pruning failed; retried at the next interval"),
        }
    }
}

/// One pass: deletes SENT rows older than the retention and expired keys; returns both counts.
pub(crate) async fn prune(app: &App) -> Result<(u64, u64), sqlx::Error> {
    let sent = delete_in_batches(
        app,
        "DELETE FROM outbox_events WHERE id IN (SELECT id FROM outbox_events \
         WHERE status = 'SENT' AND processed_at < now() - $1 LIMIT $2)",
        app.config.outbox_keep_sent,
    )
    .await?;
    let keys = delete_in_batches(
        app,
        "DELETE FROM idempotency_keys WHERE ctid IN (SELECT ctid FROM idempotency_keys \
         WHERE expires_at < now() - $1 LIMIT $2)",
        std::time::Duration::ZERO,
    )
    .await?;
    app.metrics.pruned_outbox_rows.inc_by(sent);
    app.metrics.pruned_idempotency_keys.inc_by(keys);
    Ok((sent, keys))
}

/// Runs `sql` (a DELETE of at most `$2` rows older than `$1`) until a batch comes back short;
/// returns the rows deleted.
async fn delete_in_batches(
    app: &App,
    sql: &'static str,
    older_than: std::time::Duration,
) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    loop {
        let done = sqlx::query(sql)
            .bind(older_than)
            .bind(BATCH)
            .execute(&app.pool)
            .await?
            .rows_affected();
        deleted += done;
        if done < BATCH as u64 {
            return Ok(deleted);
        }
    }
}
