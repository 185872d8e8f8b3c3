//! The whole stack as real processes: a [`World`], booking-service replicas and the course-stub,
//! each started from the binaries built beside the running one, and all stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use contracts::subjects;

use crate::{process, NatsRole, TestDatabase, World};

mod spawn;
use spawn::announces_ready;
pub use spawn::{ask, binary};

/// How to build a stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// booking-service replicas.
    pub replicas: usize,
    /// Seed of the stub's catalogue and faults.
    pub seed: u64,
    /// Arguments for the stub (catalogue shape, faults).
    pub stub_args: Vec<String>,
    /// Keep fsync on (production-like).
    pub fsync: bool,
    /// Extra environment for every booking-service replica.
    pub service_env: Vec<(String, String)>,
    /// Run NATS with JetStream (the default) or without.
    pub jetstream: bool,
    /// Secure NATS as production does: a user per role with only its subjects (see
    /// [`NatsRole`]); the replicas, the stub and the stack's clients each log in as their role.
    pub secured_nats: bool,
    /// NATS nodes: 1, or a cluster (the events stream then keeps up to 3 copies).
    pub nats_nodes: usize,
    /// Put the replicas' links to PostgreSQL and NATS behind proxies ([`Stack::network`]).
    pub network: bool,
    /// Extra settings for the stack's own PostgreSQL ([`crate::WorldBuilder::pg_setting`]).
    pub pg_settings: Vec<(String, String)>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            replicas: 1,
            seed: 1,
            stub_args: Vec::new(),
            fsync: true,
            service_env: Vec::new(),
            jetstream: true,
            secured_nats: false,
            nats_nodes: 1,
            network: false,
            pg_settings: Vec::new(),
        }
    }
}

/// A running stack.
pub struct Stack {
    /// Servers.
    pub world: World,
    /// The service's database.
    pub db: TestDatabase,
    /// booking-service replicas.
    services: tokio::sync::Mutex<Vec<Replica>>,
    /// Environment every replica gets.
    service_env: Vec<(String, String)>,
    /// Each replica's metrics address.
    http_addrs: Vec<std::net::SocketAddr>,
    /// Each replica's admin address (the operator's `/outbox`).
    admin_addrs: Vec<std::net::SocketAddr>,
    /// The course-stub process.
    stub: Option<Child>,
    /// The proxies between the replicas and the servers, when asked for.
    pub network: Option<crate::network::Network>,
    /// Where logs go.
    pub log_dir: PathBuf,
}

/// One booking-service replica.
struct Replica {
    /// The process, when one runs.
    child: Option<Child>,
    /// Every pid it has had.
    pids: Vec<u32>,
}

/// A port that was free a moment ago (the service binds it right away).
fn free_port() -> anyhow::Result<u16> {
    Ok(crate::free_port()?)
}

/// The log file of booking-service replica `index`, in the stack's log folder.
fn replica_log(index: usize) -> String {
    format!("booking-service-{index}.log")
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    std::fs::File::create(dir.join(name)).with_context(|| format!("creating {name}"))
}

impl Stack {
    /// Starts servers, the service replicas and the stub (which syncs its catalogue on start), and
    /// waits until the service answers.
    pub async fn start(options: &StackOptions, log_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(log_dir)
            .with_context(|| format!("creating {}", log_dir.display()))?;
        let mut builder = World::builder()
            .fsync(options.fsync)
            .jetstream(options.jetstream);
        if options.secured_nats {
            builder = builder.secured_nats();
        }
        for (name, value) in &options.pg_settings {
            builder = builder.pg_setting(name, value);
        }
        let mut service_env = options.service_env.clone();
        if options.nats_nodes > 1 {
            builder = builder.nats_cluster(options.nats_nodes);
            let copies = options.nats_nodes.min(3).to_string();
            service_env.push(("EVENTS_REPLICAS".into(), copies));
        }
        let world = builder.start().await?;
        let db = world.database().await?;
        let network = if options.network {
            Some(
                crate::network::Network::start(db.url(), world.nats_url(), options.replicas)
                    .await?,
            )
        } else {
            None
        };
        let mut http_addrs = Vec::new();
        let mut admin_addrs = Vec::new();
        for _ in 0..options.replicas {
            http_addrs.push(std::net::SocketAddr::from(([127, 0, 0, 1], free_port()?)));
            admin_addrs.push(std::net::SocketAddr::from(([127, 0, 0, 1], free_port()?)));
        }
        let mut stack = Self {
            world,
            db,
            services: tokio::sync::Mutex::new(Vec::new()),
            service_env,
            http_addrs,
            admin_addrs,
            stub: None,
            network,
            log_dir: log_dir.to_path_buf(),
        };
        for i in 0..options.replicas {
            stack.services.get_mut().push(Replica {
                child: None,
                pids: Vec::new(),
            });
            // A replica's log is appended to across its restarts within this run, so a new run
            // starts it empty (it used to hold every earlier run in the same folder).
            log_file(log_dir, &replica_log(i))?;
            stack.start_service(i, &[]).await?;
        }
        stack.wait_for_service().await?;
        stack.wait_for_every_replica().await?;
        let mut stub = Command::new(binary("course-stub")?);
        stub.arg("--nats-url")
            .arg(stack.world.nats_url())
            .arg("--seed")
            .arg(options.seed.to_string())
            .arg("--sync-on-start")
            .args(&options.stub_args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(log_dir, "course-stub.log")?);
        stack.log_in(&mut stub, NatsRole::CourseService);
        let mut child = process::spawn(stub).context("starting course-stub")?;
        let ready = child.stdout.take().map(announces_ready);
        stack.stub = Some(child);
        stack.wait_for_stub(ready).await?;
        stack.write_pids().await?;
        Ok(stack)
    }

    /// Writes every pid the stack has had to `pids` in the log folder.
    async fn write_pids(&self) -> anyhow::Result<()> {
        let mut pids: Vec<String> = self
            .services
            .lock()
            .await
            .iter()
            .flat_map(|r| r.pids.iter().copied())
            .chain(self.stub.as_ref().map(Child::id))
            .map(|p| p.to_string())
            .collect();
        pids.extend(self.world.pids().await.iter().map(u32::to_string));
        std::fs::write(self.log_dir.join("pids"), pids.join(" ")).context("writing the pid list")
    }

    /// Number of replicas.
    pub fn replicas(&self) -> usize {
        self.http_addrs.len()
    }

    /// Each replica's `/metrics` address.
    pub fn http_addrs(&self) -> &[std::net::SocketAddr] {
        &self.http_addrs
    }

    /// Each replica's admin address (`/outbox`, `/outbox/redrive`).
    pub fn admin_addrs(&self) -> &[std::net::SocketAddr] {
        &self.admin_addrs
    }

    /// Starts replica `index` (which must not be running) with extra environment.
    pub async fn start_service(&self, index: usize, extra: &[(&str, &str)]) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir.join(replica_log(index)))
            .context("opening the replica's log")?;
        let (db_url, nats_url) = match &self.network {
            Some(net) => (net.db_url(self.db.url())?, net.nats_url(index)),
            None => (self.db.url().to_owned(), self.world.nats_url().to_owned()),
        };
        let mut cmd = Command::new(binary("booking-service")?);
        cmd.env("DATABASE_URL", db_url)
            .env("NATS_URL", nats_url)
            .env("SERVICE_NAME", format!("booking-service-{index}"))
            .env("HTTP_ADDR", self.http_addrs[index].to_string())
            .env("ADMIN_ADDR", self.admin_addrs[index].to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.log_in(&mut cmd, NatsRole::BookingService);
        for (k, v) in &self.service_env {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = process::spawn(cmd).context("starting booking-service")?;
        let mut services = self.services.lock().await;
        let replica = services
            .get_mut(index)
            .with_context(|| format!("no replica {index}"))?;
        replica.pids.push(child.id());
        replica.child = Some(child);
        drop(services);
        self.write_pids().await
    }

    /// kill -9 of replica `index` (its process group), if it runs.
    pub async fn kill_service(&self, index: usize) -> anyhow::Result<()> {
        let mut services = self.services.lock().await;
        if let Some(mut child) = services.get_mut(index).and_then(|r| r.child.take()) {
            process::kill_group(&mut child).context("killing a replica")?;
        }
        Ok(())
    }

    /// Replicas whose process has exited on its own since the last call, with how it exited.
    pub async fn exited_services(&self) -> Vec<(usize, String)> {
        let mut services = self.services.lock().await;
        let mut out = Vec::new();
        for (i, r) in services.iter_mut().enumerate() {
            if let Some(child) = r.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    out.push((i, status.to_string()));
                    r.child = None;
                }
            }
        }
        out
    }

    /// The pid of replica `index`, if it runs.
    pub async fn service_pid(&self, index: usize) -> Option<u32> {
        self.services
            .lock()
            .await
            .get(index)
            .and_then(|r| r.child.as_ref().map(Child::id))
    }

    /// Whether replica `index` has a process.
    pub async fn service_running(&self, index: usize) -> bool {
        self.services
            .lock()
            .await
            .get(index)
            .is_some_and(|r| r.child.is_some())
    }

    /// Waits until every replica listens on its HTTP port (it opens it once it has migrated). A
    /// replica that exits on its way up fails the start: a world with fewer replicas than asked
    /// for would pass runs that the asked-for world fails.
    async fn wait_for_every_replica(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        for (i, addr) in self.http_addrs.iter().enumerate() {
            while tokio::net::TcpStream::connect(addr).await.is_err() {
                // Any replica's exit, not only this one's: the call reports each exit once.
                if let Some((j, status)) = self.exited_services().await.into_iter().next() {
                    bail!(
                        "booking-service replica {j} exited while starting ({status}); see {}",
                        self.log_dir.join(replica_log(j)).display()
                    );
                }
                if Instant::now() > deadline {
                    bail!("booking-service replica {i} did not listen on {addr} within 60 s");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    async fn wait_until(&self, what: &str, subject: &str) -> anyhow::Result<()> {
        let client = self.client().await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while ask(&client, subject, serde_json::json!({})).await.is_none() {
            if Instant::now() > deadline {
                bail!(
                    "{what} did not answer within 60 s; see the logs in {}",
                    self.log_dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    async fn wait_for_service(&self) -> anyhow::Result<()> {
        self.wait_until("booking-service", subjects::BOOKING_SEARCH)
            .await
    }

    /// Waits for the stub's `course-stub ready` line (printed once it listens and has synced).
    async fn wait_for_stub(
        &self,
        ready: Option<tokio::sync::oneshot::Receiver<()>>,
    ) -> anyhow::Result<()> {
        let ready = ready.context("course-stub's output is not piped")?;
        match tokio::time::timeout(Duration::from_secs(60), ready).await {
            Ok(Ok(())) => Ok(()),
            _ => bail!(
                "course-stub did not get ready within 60 s; see {}",
                self.log_dir.join("course-stub.log").display()
            ),
        }
    }

    /// Gives a process `role`'s NATS login (in its environment, never on its command line) when
    /// NATS is secured.
    fn log_in(&self, cmd: &mut Command, role: NatsRole) {
        if let Some((user, password)) = self.world.nats_credentials(role) {
            cmd.env("NATS_USER", user).env("NATS_PASSWORD", password);
        }
    }

    /// A NATS client with every permission (the harness's), for probes and the stub's control
    /// plane.
    pub async fn client(&self) -> anyhow::Result<async_nats::Client> {
        self.client_as(NatsRole::Harness).await
    }

    /// A NATS client logged in as `role` (anonymous when NATS is not secured).
    pub async fn client_as(&self, role: NatsRole) -> anyhow::Result<async_nats::Client> {
        self.world
            .nats_connect(role)
            .await
            .map_err(|e| anyhow::anyhow!("connecting to NATS as {}: {e}", role.user()))
    }

    /// A pool on the service's database.
    pub async fn pool(&self) -> anyhow::Result<sqlx::PgPool> {
        Ok(sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(self.db.url())
            .await?)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for replica in self.services.get_mut().iter_mut() {
            if let Some(child) = replica.child.as_mut() {
                let _ = process::kill_group(child);
            }
        }
        if let Some(child) = self.stub.as_mut() {
            let _ = process::kill_group(child);
        }
    }
}
