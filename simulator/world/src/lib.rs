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
mod builder;
#[cfg(feature = "containers")]
pub mod containers;
mod databases;
mod nats;
pub mod network;
mod pgwire;
mod postgres;
pub mod process;
pub mod proxy;
pub mod stack;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tokio::sync::{Mutex, OnceCell};

pub use self::binaries::postgres_tool;
pub use self::builder::WorldBuilder;
pub use self::databases::TestDatabase;
pub use self::nats::NatsRole;
use self::nats::NatsServer;
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

/// The containers of a world on Docker (feature `containers`); nothing otherwise.
#[cfg(feature = "containers")]
type Docker = Option<containers::Containers>;
#[cfg(not(feature = "containers"))]
type Docker = ();

/// Where a world's NATS comes from: servers of its own (one, or the nodes of a cluster), or a URL.
#[derive(Debug)]
enum Nats {
    Local(Vec<NatsServer>),
    External(String),
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
    /// The Docker containers the servers run in, when the world runs on Docker.
    #[allow(dead_code)]
    docker: Docker,
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
        let servers = contracts::client::servers(self.nats_url()).map_err(|e| {
            async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::ServerParse, e)
        })?;
        self.nats_options(role).connect(servers).await
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
            if let Nats::Local(nodes) = &*nats.lock().await {
                pids.extend(nodes.iter().filter_map(NatsServer::pid));
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

    /// Runs `f` on NATS node `node`, or on every node.
    async fn with_nats(
        &self,
        node: Option<usize>,
        mut f: impl AsyncFnMut(&mut NatsServer) -> Result<(), WorldError>,
    ) -> Result<(), WorldError> {
        let mut guard = self
            .nats
            .as_ref()
            .ok_or(WorldError::Absent("NATS"))?
            .lock()
            .await;
        let Nats::Local(nodes) = &mut *guard else {
            return Err(WorldError::External("NATS", "NATS_URL"));
        };
        match node {
            Some(i) => {
                let n = nodes.len();
                let server = nodes
                    .get_mut(i)
                    .ok_or_else(|| anyhow::anyhow!("no NATS node {i} (the world has {n})"))?;
                f(server).await
            }
            None => {
                for server in nodes.iter_mut() {
                    f(server).await?;
                }
                Ok(())
            }
        }
    }

    /// The NATS nodes this world runs (0 when its NATS is external or absent).
    pub async fn nats_nodes(&self) -> usize {
        match self.nats.as_ref() {
            Some(nats) => match &*nats.lock().await {
                Nats::Local(nodes) => nodes.len(),
                Nats::External(_) => 0,
            },
            None => 0,
        }
    }

    /// `kill -9` NATS node `node` of a cluster (the others keep serving).
    pub async fn kill_nats_node(&self, node: usize) -> Result<(), WorldError> {
        self.with_nats(Some(node), async |nats| nats.kill()).await
    }

    /// Starts NATS node `node` again on its ports and store (no-op when running).
    pub async fn start_nats_node(&self, node: usize) -> Result<(), WorldError> {
        self.with_nats(Some(node), async |nats| nats.start(false).await)
            .await
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
        self.with_nats(None, async |nats| nats.kill()).await
    }

    /// Stops NATS cleanly.
    pub async fn stop_nats(&self) -> Result<(), WorldError> {
        self.with_nats(None, async |nats| nats.stop().await).await
    }

    /// Starts NATS again on the same port and JetStream store (no-op when running).
    pub async fn start_nats(&self) -> Result<(), WorldError> {
        self.with_nats(None, async |nats| nats.start(false).await)
            .await
    }

    /// Stops NATS cleanly and starts it again.
    pub async fn restart_nats(&self) -> Result<(), WorldError> {
        self.with_nats(None, async |nats| {
            nats.stop().await?;
            nats.start(false).await
        })
        .await
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), WorldError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))?;
    Ok(())
}

/// A free loopback port, below the ephemeral range when it can be (the server binds it right
/// after).
pub(crate) fn free_port() -> Result<u16, WorldError> {
    // A port the kernel hands out for `bind(0)` comes from the ephemeral range, which it also
    // draws the local ports of outgoing connections from: between our release and the server's
    // bind, a client connecting anywhere could take it ("address already in use", once a NATS
    // route port). Ports below that range are never handed out on their own.
    let (low, _) = ephemeral_range();
    let floor = 10_000u16;
    if low > floor + 1_000 {
        let mut rng = rand::rng();
        for _ in 0..64 {
            let port = rand::Rng::random_range(&mut rng, floor..low);
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener
        .local_addr()
        .context("reading the free port")?
        .port())
}

/// The kernel's range of ephemeral ports (Linux's default when it cannot be read).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .unwrap_or((32_768, 60_999))
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
