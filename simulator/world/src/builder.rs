//! [`WorldBuilder`]: which servers a [`World`] starts, and how (fsync, JetStream, payload cap,
//! security, or the servers named by `DATABASE_URL`/`NATS_URL`).

use std::collections::HashSet;

use anyhow::Context as _;
use tokio::sync::Mutex;

use super::nats::{NatsServer, NatsSetup};
use super::postgres::PgServer;
use super::{
    binaries, set_mode, sweep_stale_dirs, Nats, NatsRole, Pg, World, WorldError, DIR_PREFIX,
};

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
