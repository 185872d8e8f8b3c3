//! [`WorldBuilder`]: which servers a [`World`] starts, and how (fsync, JetStream, payload cap,
//! security, or the servers named by `DATABASE_URL`/`NATS_URL`).

use std::collections::HashSet;

use anyhow::Context as _;
use tokio::sync::Mutex;

use super::nats::{ClusterPlace, NatsServer, NatsSetup};
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
    /// NATS servers: 1 (default), or the nodes of a cluster.
    nats_nodes: usize,
    /// Run the servers as Docker containers (feature `containers`).
    containers: bool,
    /// Extra PostgreSQL settings (`name`, `value`) for a local server.
    pg_settings: Vec<(String, String)>,
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
            nats_nodes: 1,
            containers: false,
            pg_settings: Vec::new(),
        }
    }
}

impl WorldBuilder {
    /// Keeps fsync and synchronous commit on (`true`, the default) or turns them off for speed.
    pub fn fsync(mut self, on: bool) -> Self {
        self.fsync = on;
        self
    }

    /// Starts a local PostgreSQL with `name = value` besides the world's own settings (e.g. the
    /// bench's `shared_preload_libraries = pg_stat_statements`); ignored for a server the world
    /// does not start.
    pub fn pg_setting(mut self, name: &str, value: &str) -> Self {
        self.pg_settings.push((name.to_owned(), value.to_owned()));
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

    /// Runs NATS as a cluster of `nodes` servers on loopback, each routed to the others, with
    /// JetStream clustered ([`World::nats_url`] lists every node). Implies local servers.
    pub fn nats_cluster(mut self, nodes: usize) -> Self {
        self.nats_nodes = nodes.max(1);
        if nodes > 1 {
            self.use_env = false;
        }
        self
    }

    /// Runs PostgreSQL and NATS as Docker containers of their official images instead of the
    /// system's binaries (needs the cargo feature `containers` and a running Docker);
    /// `WORLD_BACKEND=containers` asks for the same from the environment.
    pub fn containers(mut self) -> Self {
        self.containers = true;
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
        let on_docker = self.containers || env("WORLD_BACKEND").as_deref() == Some("containers");
        let (docker, docker_pg, docker_nats) = on_docker_servers(on_docker, &self).await?;
        let pg = if !self.postgres {
            None
        } else if let Some(url) = docker_pg {
            Some(Pg::External(url))
        } else if let Some(url) = env("DATABASE_URL") {
            Some(Pg::External(url))
        } else {
            let mut server = PgServer::init(binaries::postgres()?, dir.path(), self.fsync)?
                .with_settings(self.pg_settings.clone());
            server.start(true).await?;
            Some(Pg::Local(Box::new(server)))
        };
        let nats = if !self.nats {
            None
        } else if let Some(url) = docker_nats {
            Some(Nats::External(url))
        } else if let Some(url) = env("NATS_URL") {
            Some(Nats::External(url))
        } else {
            let setup = NatsSetup {
                jetstream: self.jetstream,
                max_payload: self.max_payload,
                secured: self.secured,
            };
            Some(Nats::Local(
                start_nats(binaries::nats()?, dir.path(), setup, self.nats_nodes).await?,
            ))
        };
        tracing::info!(dir = %dir.path().display(), "world started");
        Ok(World {
            pg_admin_url: pg.as_ref().map(|pg| match pg {
                Pg::Local(server) => server.url("postgres"),
                Pg::External(url) => url.clone(),
            }),
            nats_url: nats.as_ref().map(|nats| match nats {
                Nats::Local(nodes) => nodes
                    .iter()
                    .map(NatsServer::url)
                    .collect::<Vec<_>>()
                    .join(","),
                Nats::External(url) => url.clone(),
            }),
            nats_roles: match &nats {
                Some(Nats::Local(nodes)) => NatsRole::ALL
                    .iter()
                    .filter_map(|&role| Some((role, nodes.first()?.credentials(role)?)))
                    .collect(),
                _ => Vec::new(),
            },
            pg: pg.map(Mutex::new),
            nats: nats.map(Mutex::new),
            templates: Mutex::new(HashSet::new()),
            docker,
            dir,
        })
    }
}

/// Starts one NATS server, or `nodes` routed to each other as a cluster (each in a folder of its
/// own, sharing one set of users), and waits until clustered JetStream has a leader.
async fn start_nats(
    bin: std::path::PathBuf,
    dir: &std::path::Path,
    setup: NatsSetup,
    nodes: usize,
) -> Result<Vec<NatsServer>, WorldError> {
    if nodes <= 1 {
        let mut server = NatsServer::new(bin, dir, setup)?;
        server.start(true).await?;
        return Ok(vec![server]);
    }
    let routes = (0..nodes)
        .map(|_| crate::free_port())
        .collect::<Result<Vec<u16>, WorldError>>()?;
    let mut servers: Vec<NatsServer> = Vec::new();
    for (i, route_port) in routes.iter().enumerate() {
        let node_dir = dir.join(format!("nats-{i}"));
        std::fs::create_dir(&node_dir)
            .with_context(|| format!("creating {}", node_dir.display()))?;
        let mut server = NatsServer::new(bin.clone(), &node_dir, setup.clone())?;
        if let Some(first) = servers.first() {
            server.share_users(first);
        }
        server.join(ClusterPlace {
            name: format!("n{i}"),
            route_port: *route_port,
            peers: routes.iter().copied().filter(|p| p != route_port).collect(),
        });
        servers.push(server);
    }
    for server in &mut servers {
        server.start(true).await?;
    }
    if setup.jetstream {
        wait_for_jetstream(&servers).await?;
    }
    Ok(servers)
}

/// Asks `$JS.API.INFO` until clustered JetStream answers without an error (a meta leader is
/// elected), within 30 s.
async fn wait_for_jetstream(servers: &[NatsServer]) -> Result<(), WorldError> {
    let urls: Vec<String> = servers.iter().map(NatsServer::url).collect();
    let mut options = async_nats::ConnectOptions::new();
    if let Some((user, password)) = servers
        .first()
        .and_then(|s| s.credentials(NatsRole::Harness))
    {
        options = options.user_and_password(user, password);
    }
    let client = options
        .connect(urls.as_slice())
        .await
        .context("connecting to the NATS cluster")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let reply = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            client.request("$JS.API.INFO", bytes::Bytes::new()),
        )
        .await;
        if let Ok(Ok(message)) = reply {
            let info: serde_json::Value =
                serde_json::from_slice(&message.payload).unwrap_or_default();
            if info.get("error").is_none() && info.get("type").is_some() {
                return Ok(());
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(WorldError::Startup {
                server: "nats-server cluster",
                log: "clustered JetStream elected no leader within 30 s".into(),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The containers' servers, when the world runs on Docker: the containers (kept by the world,
/// stopped with it) and their PostgreSQL and NATS URLs.
#[cfg(feature = "containers")]
async fn on_docker_servers(
    on_docker: bool,
    b: &WorldBuilder,
) -> Result<(crate::Docker, Option<String>, Option<String>), WorldError> {
    if !on_docker {
        return Ok((None, None, None));
    }
    let plan = crate::containers::plan(crate::containers::Wanted {
        postgres: b.postgres,
        nats: b.nats,
        fsync: b.fsync,
        jetstream: b.jetstream,
        max_payload: b.max_payload,
    });
    let running = crate::containers::start(&plan).await?;
    let (pg, nats) = (running.postgres_url.clone(), running.nats_url.clone());
    Ok((Some(running), pg, nats))
}

/// Without the feature, asking for containers is a clear error.
#[cfg(not(feature = "containers"))]
async fn on_docker_servers(
    on_docker: bool,
    _: &WorldBuilder,
) -> Result<(crate::Docker, Option<String>, Option<String>), WorldError> {
    if on_docker {
        return Err(WorldError::Other(anyhow::anyhow!(
            "WORLD_BACKEND=containers needs the cargo feature `containers`: build with \
             --features world/containers (and have Docker running)"
        )));
    }
    Ok(((), None, None))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    /// Without the feature, asking for Docker says how to get it instead of starting local
    /// servers behind the caller's back.
    #[cfg(not(feature = "containers"))]
    #[tokio::test]
    async fn containers_without_the_feature_is_a_clear_error() {
        let err = super::WorldBuilder::default()
            .containers()
            .start()
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("--features world/containers"), "{err}");
    }
}
