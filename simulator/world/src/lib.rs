//! Throwaway infrastructure for tests, benchmarks and the simulator: a PostgreSQL and a NATS
//! server of our own, per-test databases, the chaos verbs (kill, stop, start, restart), and
//! [`stack`], the whole system as processes (booking-service replicas and the course-stub).
//!
//! ```no_run
//! # async fn demo() -> Result<(), world::WorldError> {
//! let world = world::World::builder().fsync(false).start().await?;
//! let db = world.database().await?; // a fresh, empty database of this test's own
//! println!("{} {}", db.url(), world.nats_url());
//! world.kill_postgres().await?; // kill -9, then:
//! world.start_postgres().await?; // same port, same data
//! # Ok(()) }
//! ```
//!
//! Servers run from the system binaries (Debian packages `postgresql` and `nats-server`) on free
//! loopback ports, never on the standard ones. `DATABASE_URL` and `NATS_URL`, when set, replace the
//! local servers (unless the builder asks for local ones, as chaos tests must). Everything lives in
//! one temporary directory that is removed on drop, panics included; servers also die with our
//! process even when nothing is dropped (see `process.rs`).

mod binaries;
mod nats;
mod postgres;
pub mod process;
pub mod stack;

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sqlx::{Connection as _, Executor as _};
use tokio::sync::{Mutex, OnceCell};

pub use self::nats::NatsRole;
use self::nats::{NatsServer, NatsSetup};
use self::postgres::PgServer;

/// Why a world could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// A program the world needs is not installed.
    #[error("{program} not found: install the Debian package `{package}` (apt-get install {package}), or {instead}")]
    MissingBinary {
        /// What is missing.
        program: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
        /// The other way out.
        instead: &'static str,
    },
    /// A server did not start.
    #[error("{server} failed to start:\n{log}")]
    Startup {
        /// Which server.
        server: &'static str,
        /// The end of its log.
        log: String,
    },
    /// A chaos verb was aimed at a server given by URL, which this world does not own.
    #[error("{0} comes from {1}; the world cannot stop or restart a server it did not start")]
    External(&'static str, &'static str),
    /// A server was asked for that this world was built without.
    #[error("this world was built without {0}")]
    Absent(&'static str),
    /// Anything else (I/O, SQL), with context.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Where a world's PostgreSQL comes from.
#[derive(Debug)]
enum Pg {
    Local(Box<PgServer>),
    External(String),
}

/// Where a world's NATS comes from.
#[derive(Debug)]
enum Nats {
    Local(NatsServer),
    External(String),
}

/// Configures a [`World`].
#[derive(Debug, Clone)]
pub struct WorldBuilder {
    /// Keep fsync on (production-like, default) or turn it off (fast tests).
    fsync: bool,
    /// Start PostgreSQL (default) or not.
    postgres: bool,
    /// Start NATS (default) or not.
    nats: bool,
    /// Honour `DATABASE_URL` and `NATS_URL` (default) or always start local servers.
    use_env: bool,
    /// Start NATS with JetStream (default) or as a plain core server.
    jetstream: bool,
    /// NATS `max_payload`, when not the default 1 MiB.
    max_payload: Option<u32>,
    /// NATS with a user and permissions per [`NatsRole`].
    secured: bool,
}

impl Default for WorldBuilder {
    fn default() -> Self {
        Self {
            fsync: true,
            postgres: true,
            nats: true,
            use_env: true,
            jetstream: true,
            max_payload: None,
            secured: false,
        }
    }
}

impl WorldBuilder {
    /// Keeps fsync and synchronous commit on (`true`, the default) or turns them off for speed.
    pub fn fsync(mut self, on: bool) -> Self {
        self.fsync = on;
        self
    }

    /// Leaves PostgreSQL out.
    pub fn without_postgres(mut self) -> Self {
        self.postgres = false;
        self
    }

    /// Leaves NATS out.
    pub fn without_nats(mut self) -> Self {
        self.nats = false;
        self
    }

    /// Starts NATS without JetStream (`false`), as some deployments run it; implies local servers.
    pub fn jetstream(mut self, on: bool) -> Self {
        self.jetstream = on;
        if !on {
            self.use_env = false;
        }
        self
    }

    /// Caps NATS's `max_payload` (bytes); implies local servers.
    pub fn nats_max_payload(mut self, bytes: u32) -> Self {
        self.max_payload = Some(bytes);
        self.use_env = false;
        self
    }

    /// Secures NATS as production does: anonymous clients are refused and each [`NatsRole`] has
    /// its own user with only the subjects it needs; [`World::nats_connect`] logs in as a role.
    /// Implies local servers.
    pub fn secured_nats(mut self) -> Self {
        self.secured = true;
        self.use_env = false;
        self
    }

    /// Ignores `DATABASE_URL` and `NATS_URL`: chaos runs need servers they can kill.
    pub fn local_only(mut self) -> Self {
        self.use_env = false;
        self
    }

    /// Starts the servers.
    pub async fn start(self) -> Result<World, WorldError> {
        sweep_stale_dirs();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir()
            .context("creating the world's directory")?;
        // The PostgreSQL account (when we run as root) must reach its data directory inside.
        set_mode(dir.path(), 0o755)?;

        let env = |name: &str| {
            self.use_env
                .then(|| std::env::var(name).ok())
                .flatten()
                .filter(|v| !v.is_empty())
        };
        let pg = if !self.postgres {
            None
        } else if let Some(url) = env("DATABASE_URL") {
            Some(Pg::External(url))
        } else {
            let mut server = PgServer::init(binaries::postgres()?, dir.path(), self.fsync)?;
            server.start(true).await?;
            Some(Pg::Local(Box::new(server)))
        };
        let nats = if !self.nats {
            None
        } else if let Some(url) = env("NATS_URL") {
            Some(Nats::External(url))
        } else {
            let setup = NatsSetup {
                jetstream: self.jetstream,
                max_payload: self.max_payload,
                secured: self.secured,
            };
            let mut server = NatsServer::new(binaries::nats()?, dir.path(), setup)?;
            server.start(true).await?;
            Some(Nats::Local(server))
        };
        tracing::info!(dir = %dir.path().display(), "world started");
        Ok(World {
            pg_admin_url: pg.as_ref().map(|pg| match pg {
                Pg::Local(server) => server.url("postgres"),
                Pg::External(url) => url.clone(),
            }),
            nats_url: nats.as_ref().map(|nats| match nats {
                Nats::Local(server) => server.url(),
                Nats::External(url) => url.clone(),
            }),
            nats_roles: match &nats {
                Some(Nats::Local(server)) => NatsRole::ALL
                    .iter()
                    .filter_map(|&role| Some((role, server.credentials(role)?)))
                    .collect(),
                _ => Vec::new(),
            },
            pg: pg.map(Mutex::new),
            nats: nats.map(Mutex::new),
            templates: Mutex::new(HashSet::new()),
            dir,
        })
    }
}

/// A running set of servers; dropping it stops them and deletes their files.
#[derive(Debug)]
pub struct World {
    /// PostgreSQL, local or external.
    pg: Option<Mutex<Pg>>,
    /// NATS, local or external.
    nats: Option<Mutex<Nats>>,
    /// The admin URL (database `postgres`), fixed for the world's life.
    pg_admin_url: Option<String>,
    /// The NATS URL, fixed for the world's life.
    nats_url: Option<String>,
    /// On a secured NATS: each role's `(user, password)`.
    nats_roles: Vec<(NatsRole, (String, String))>,
    /// Template databases already prepared.
    templates: Mutex<HashSet<String>>,
    /// Every file of the world; dropped last.
    dir: tempfile::TempDir,
}

const DIR_PREFIX: &str = "booking-world-";

impl World {
    /// A builder with the defaults: both servers, fsync on, environment URLs honoured.
    pub fn builder() -> WorldBuilder {
        WorldBuilder::default()
    }

    /// The world shared by every test of this process: fsync off, environment URLs honoured.
    /// It is never dropped; its servers die with the process (parent-death signal) and its
    /// directory is swept by the next world that starts.
    pub async fn shared() -> Result<&'static World, WorldError> {
        static SHARED: OnceCell<World> = OnceCell::const_new();
        SHARED
            .get_or_try_init(|| World::builder().fsync(false).start())
            .await
    }

    /// The world's directory (logs, data).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The admin URL of PostgreSQL (database `postgres`).
    pub fn postgres_url(&self) -> Result<&str, WorldError> {
        self.pg_admin_url
            .as_deref()
            .ok_or(WorldError::Absent("PostgreSQL"))
    }

    /// The NATS URL.
    pub fn nats_url(&self) -> &str {
        self.nats_url.as_deref().unwrap_or("")
    }

    /// Connection options for `role`: its credentials when NATS is secured, none otherwise.
    pub fn nats_options(&self, role: NatsRole) -> async_nats::ConnectOptions {
        match self.nats_credentials(role) {
            Some((user, password)) => async_nats::ConnectOptions::new()
                .user_and_password(user.to_owned(), password.to_owned()),
            None => async_nats::ConnectOptions::new(),
        }
    }

    /// Connects to NATS as `role`.
    pub async fn nats_connect(
        &self,
        role: NatsRole,
    ) -> Result<async_nats::Client, async_nats::ConnectError> {
        self.nats_options(role).connect(self.nats_url()).await
    }

    /// `(user, password)` of `role` when NATS is secured.
    pub fn nats_credentials(&self, role: NatsRole) -> Option<(&str, &str)> {
        self.nats_roles
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, (user, password))| (user.as_str(), password.as_str()))
    }

    /// Pids of the servers this world runs: PostgreSQL's postmaster, then NATS.
    pub async fn pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        if let Some(pg) = &self.pg {
            if let Pg::Local(server) = &*pg.lock().await {
                pids.extend(server.pid());
            }
        }
        if let Some(nats) = &self.nats {
            if let Nats::Local(server) = &*nats.lock().await {
                pids.extend(server.pid());
            }
        }
        pids
    }

    /// The local PostgreSQL port, if the world runs its own server.
    pub async fn postgres_port(&self) -> Option<u16> {
        match &*self.pg.as_ref()?.lock().await {
            Pg::Local(server) => Some(server.port()),
            Pg::External(_) => None,
        }
    }

    async fn with_pg<T>(
        &self,
        f: impl AsyncFnOnce(&mut PgServer) -> Result<T, WorldError>,
    ) -> Result<T, WorldError> {
        let mut guard = self
            .pg
            .as_ref()
            .ok_or(WorldError::Absent("PostgreSQL"))?
            .lock()
            .await;
        match &mut *guard {
            Pg::Local(server) => f(server).await,
            Pg::External(_) => Err(WorldError::External("PostgreSQL", "DATABASE_URL")),
        }
    }

    async fn with_nats<T>(
        &self,
        f: impl AsyncFnOnce(&mut NatsServer) -> Result<T, WorldError>,
    ) -> Result<T, WorldError> {
        let mut guard = self
            .nats
            .as_ref()
            .ok_or(WorldError::Absent("NATS"))?
            .lock()
            .await;
        match &mut *guard {
            Nats::Local(server) => f(server).await,
            Nats::External(_) => Err(WorldError::External("NATS", "NATS_URL")),
        }
    }

    /// `kill -9` PostgreSQL and all its backends.
    pub async fn kill_postgres(&self) -> Result<(), WorldError> {
        self.with_pg(async |pg| pg.kill()).await
    }

    /// Stops PostgreSQL cleanly.
    pub async fn stop_postgres(&self) -> Result<(), WorldError> {
        self.with_pg(async |pg| pg.stop().await).await
    }

    /// Starts PostgreSQL again on the same port and data (no-op when running).
    pub async fn start_postgres(&self) -> Result<(), WorldError> {
        self.with_pg(async |pg| pg.start(false).await).await
    }

    /// Stops PostgreSQL cleanly and starts it again.
    pub async fn restart_postgres(&self) -> Result<(), WorldError> {
        self.with_pg(async |pg| {
            pg.stop().await?;
            pg.start(false).await
        })
        .await
    }

    /// `kill -9` NATS.
    pub async fn kill_nats(&self) -> Result<(), WorldError> {
        self.with_nats(async |nats| nats.kill()).await
    }

    /// Stops NATS cleanly.
    pub async fn stop_nats(&self) -> Result<(), WorldError> {
        self.with_nats(async |nats| nats.stop().await).await
    }

    /// Starts NATS again on the same port and JetStream store (no-op when running).
    pub async fn start_nats(&self) -> Result<(), WorldError> {
        self.with_nats(async |nats| nats.start(false).await).await
    }

    /// Stops NATS cleanly and starts it again.
    pub async fn restart_nats(&self) -> Result<(), WorldError> {
        self.with_nats(async |nats| {
            nats.stop().await?;
            nats.start(false).await
        })
        .await
    }

    async fn admin(&self) -> Result<sqlx::PgConnection, WorldError> {
        let url = self.postgres_url()?;
        Ok(sqlx::PgConnection::connect(url)
            .await
            .with_context(|| format!("connecting to {url}"))?)
    }

    /// A fresh, empty database of the caller's own.
    pub async fn database(&self) -> Result<TestDatabase, WorldError> {
        self.create_database(None).await
    }

    /// A fresh database cloned from the template `template`, which `setup` fills (with migrations,
    /// typically) the first time it is asked for. Cloning is much faster than migrating each time.
    pub async fn database_from<F, Fut>(
        &self,
        template: &str,
        setup: F,
    ) -> Result<TestDatabase, WorldError>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        check_identifier(template)?;
        {
            let mut prepared = self.templates.lock().await;
            if !prepared.contains(template) {
                let mut admin = self.admin().await?;
                admin
                    .execute(
                        format!("DROP DATABASE IF EXISTS \"{template}\" WITH (FORCE)").as_str(),
                    )
                    .await
                    .context("dropping an old template")?;
                admin
                    .execute(format!("CREATE DATABASE \"{template}\"").as_str())
                    .await
                    .context("creating a template database")?;
                let _ = admin.close().await;
                setup(self.url_of(template)?)
                    .await
                    .with_context(|| format!("filling template {template}"))?;
                prepared.insert(template.to_owned());
            }
        }
        self.create_database(Some(template)).await
    }

    fn url_of(&self, database: &str) -> Result<String, WorldError> {
        let admin = self.postgres_url()?;
        let mut url = url_with_database(admin, database);
        if url.is_empty() {
            url = format!("{admin}/{database}");
        }
        Ok(url)
    }

    async fn create_database(&self, template: Option<&str>) -> Result<TestDatabase, WorldError> {
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let sql = match template {
            Some(t) => format!("CREATE DATABASE \"{name}\" TEMPLATE \"{t}\""),
            None => format!("CREATE DATABASE \"{name}\""),
        };
        let mut admin = self.admin().await?;
        // Two clones of one template at the same instant can collide on the template's lock.
        let mut tries = 0;
        loop {
            match admin.execute(sql.as_str()).await {
                Ok(_) => break,
                Err(e)
                    if tries < 20 && e.to_string().contains("is being accessed by other users") =>
                {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(25 * tries)).await;
                }
                Err(e) => {
                    return Err(anyhow::Error::from(e)
                        .context("creating a test database")
                        .into())
                }
            }
        }
        let _ = admin.close().await;
        let external = matches!(
            self.pg
                .as_ref()
                .map(|pg| pg.try_lock().map(|g| matches!(*g, Pg::External(_)))),
            Some(Ok(true))
        );
        Ok(TestDatabase {
            url: self.url_of(&name)?,
            admin_url: external.then(|| self.pg_admin_url.clone()).flatten(),
            name,
        })
    }
}

/// One database of one test.
#[derive(Debug)]
pub struct TestDatabase {
    /// Its name, `test_<uuid>`.
    name: String,
    /// Its URL.
    url: String,
    /// Set for databases on an external server, which are dropped with this value.
    admin_url: Option<String>,
}

impl TestDatabase {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL to connect to it.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // A local server's databases vanish with the world; an external server keeps what we do
        // not drop, so drop it here, on a thread of its own because Drop cannot await.
        let Some(admin) = self.admin_url.take() else {
            return;
        };
        let name = std::mem::take(&mut self.name);
        let _ = std::thread::Builder::new().spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = conn
                        .execute(
                            format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str(),
                        )
                        .await;
                }
            });
        });
    }
}

/// Replaces the database path of a `postgres://` URL, keeping its query string.
fn url_with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let Some(scheme_end) = base.find("://") else {
        return String::new();
    };
    let authority_end = base[scheme_end + 3..]
        .find('/')
        .map(|i| scheme_end + 3 + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{database}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

fn check_identifier(name: &str) -> Result<(), WorldError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(
            anyhow::anyhow!("template name {name:?} must be 1-63 characters of [A-Za-z0-9_]")
                .into(),
        )
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), WorldError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))?;
    Ok(())
}

/// A free loopback port (the OS picks it; the server binds it right after).
fn free_port() -> Result<u16, WorldError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener
        .local_addr()
        .context("reading the free port")?
        .port())
}

/// The last `lines` lines of a log file.
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Removes the directories of worlds whose process is gone (a shared world is never dropped).
fn sweep_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if pid != std::process::id() && !PathBuf::from(format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced_and_the_query_kept() {
        assert_eq!(
            url_with_database("postgres://u:p@h:5/postgres?sslmode=disable", "t1"),
            "postgres://u:p@h:5/t1?sslmode=disable"
        );
        assert_eq!(
            url_with_database("postgres://h:5", "t1"),
            "postgres://h:5/t1"
        );
    }

    #[test]
    fn template_names_are_plain_identifiers() {
        assert!(check_identifier("booking_v1").is_ok());
        assert!(check_identifier("x\"; DROP").is_err());
        assert!(check_identifier("").is_err());
    }
}
