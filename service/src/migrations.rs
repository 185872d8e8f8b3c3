//! Migrations at start-up: one replica at a time (an advisory lock waited for by polling), on a
//! connection of their own without the pools' statement timeout, retried on a deadlock.

use anyhow::Context as _;

use crate::config;

/// The advisory lock that makes the replicas of one database migrate one at a time.
pub const MIGRATION_LOCK: i64 = 0x0062_6f6f_6b69_6e67; // "booking" in ASCII

/// Applies [`MIGRATOR`] on a connection of its own, one process at a time.
///
/// The lock is waited for by polling `pg_try_advisory_lock`, never by blocking in
/// `pg_advisory_lock` as sqlx's migrator does: a session blocked in a statement holds a snapshot,
/// and an index built concurrently by the process holding the lock waits for every older
/// snapshot, so the two would wait for each other until PostgreSQL's deadlock detector failed
/// one. When it failed the index build, sqlx returned without releasing its (re-entrant, counted)
/// lock, the connection went back to the pool, the retry took the lock a second time and released
/// it once: every other replica then waited for ever, silently (`replicas` seed 4). A failed
/// attempt here closes its connection, which ends the session and every lock it holds, and the
/// next attempt starts on a new one.
pub(crate) async fn apply_migrations(
    options: &sqlx::postgres::PgConnectOptions,
) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    const TRIES: u32 = 10;
    let mut tries = 0;
    loop {
        tries += 1;
        let mut conn = sqlx::PgConnection::connect_with(options)
            .await
            .context("connecting to PostgreSQL to migrate")?;
        take_migration_lock(&mut conn).await?;
        drop_invalid_indexes(&mut conn).await?;
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_locking(false);
        match migrator.run_direct(&mut conn).await {
            Ok(()) => {
                sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(MIGRATION_LOCK)
                    .execute(&mut conn)
                    .await
                    .context("releasing the migration lock")?;
                let _ = conn.close().await;
                return Ok(());
            }
            Err(e) if tries < TRIES && is_deadlock(&e) => {
                tracing::warn!(tries, error = %e, "a migration met a deadlock; trying again on a new connection");
                let _ = conn.close().await;
                tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(tries))).await;
            }
            Err(e) => return Err(anyhow::Error::new(e).context("applying migrations")),
        }
    }
}

/// Waits for [`MIGRATION_LOCK`] without holding a snapshot while waiting; says so every 10 s.
async fn take_migration_lock(conn: &mut sqlx::PgConnection) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut said = started;
    loop {
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .fetch_one(&mut *conn)
            .await
            .context("asking for the migration lock")?;
        if taken {
            return Ok(());
        }
        if said.elapsed() >= std::time::Duration::from_secs(10) {
            said = std::time::Instant::now();
            tracing::warn!(
                waited_s = started.elapsed().as_secs(),
                "waiting for another process's migrations (advisory lock {MIGRATION_LOCK:#x})"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Drops the indexes a failed concurrent build left INVALID (a process killed mid-build, say):
/// `CREATE INDEX CONCURRENTLY IF NOT EXISTS` would otherwise find the name taken and record the
/// migration as applied, and the table would go without its index for good. Dropped here, such
/// an index is built again by its migration, which is not recorded yet.
async fn drop_invalid_indexes(conn: &mut sqlx::PgConnection) -> anyhow::Result<()> {
    let invalid: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE NOT i.indisvalid AND n.nspname = current_schema()",
    )
    .fetch_all(&mut *conn)
    .await
    .context("looking for invalid indexes")?;
    for index in invalid {
        tracing::warn!(%index, "dropping an index a failed concurrent build left invalid");
        sqlx::query(&format!("DROP INDEX CONCURRENTLY IF EXISTS {index}"))
            .execute(&mut *conn)
            .await
            .with_context(|| format!("dropping the invalid index {index}"))?;
    }
    Ok(())
}

/// Whether a migration failed on PostgreSQL's deadlock detector (SQLSTATE 40P01).
fn is_deadlock(e: &sqlx::migrate::MigrateError) -> bool {
    match e {
        sqlx::migrate::MigrateError::Execute(sqlx::Error::Database(db))
        | sqlx::migrate::MigrateError::ExecuteMigration(sqlx::Error::Database(db), _) => {
            db.code().as_deref() == Some("40P01")
        }
        _ => false,
    }
}

/// The migrations, applied at start-up.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Applies the migrations to the database at `url` (tests use this to prepare templates).
pub async fn migrate(url: &str) -> anyhow::Result<()> {
    let options = url
        .parse::<sqlx::postgres::PgConnectOptions>()
        .with_context(|| format!("reading {}", config::redact(url)))?;
    apply_migrations(&options).await
}
