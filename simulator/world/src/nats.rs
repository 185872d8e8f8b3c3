//! One throwaway nats-server: JetStream on, loopback only, a free port kept across restarts, and
//! the JetStream store in the world's directory so streams survive a restart. Its configuration
//! file can cap `max_payload` and secure the server with users and per-subject permissions, as a
//! production deployment does (see [`NatsRole`]).

use std::io::Read as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use nix::sys::signal::Signal;

use super::{free_port, log_tail, process, WorldError};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Who connects to a secured NATS: each role has its own user and only the permissions it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatsRole {
    /// The test driver, the simulator and operators: every subject.
    Harness,
    /// booking-service: serves `booking.*`, calls course-service, publishes booking events.
    BookingService,
    /// course-service: serves `gameTimeSlots.*` and `games.get`, the only publisher of
    /// `booking.*.sync`.
    CourseService,
    /// The gateway (user-api): may call the `booking.*` request subjects and nothing else.
    UserApi,
}

impl NatsRole {
    /// Every role.
    pub const ALL: [NatsRole; 4] = [
        NatsRole::Harness,
        NatsRole::BookingService,
        NatsRole::CourseService,
        NatsRole::UserApi,
    ];

    /// The NATS user name.
    pub fn user(self) -> &'static str {
        match self {
            NatsRole::Harness => "harness",
            NatsRole::BookingService => "booking-service",
            NatsRole::CourseService => "course-service",
            NatsRole::UserApi => "user-api",
        }
    }

    /// The role's permissions block in nats-server's configuration syntax; the README recommends
    /// the same rules for production.
    pub fn permissions(self) -> String {
        use contracts::subjects as s;
        let list = |subjects: &[&str]| {
            subjects
                .iter()
                .map(|v| format!("\"{v}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let requests: Vec<&str> = s::BOOKING_HANDLERS
            .iter()
            .copied()
            .filter(|v| *v != s::BOOKING_GAME_SYNC && *v != s::BOOKING_SLOT_SYNC)
            .collect();
        match self {
            NatsRole::Harness => String::new(),
            NatsRole::BookingService => format!(
                "permissions: {{ publish: {{ allow: [{}] }}, subscribe: {{ allow: [{}] }}, allow_responses: true }}",
                list(&[
                    s::SLOTS_GET,
                    s::GAMES_GET,
                    s::SLOTS_BOOK,
                    s::SLOTS_RELEASE,
                    s::BOOKING_CONFIRMED,
                    s::BOOKING_CANCELLED,
                    "$JS.API.>",
                    "_INBOX.>",
                ]),
                list(&["booking.>", "_INBOX.>"]),
            ),
            NatsRole::CourseService => format!(
                "permissions: {{ publish: {{ allow: [{}] }}, subscribe: {{ allow: [{}] }}, allow_responses: true }}",
                list(&[s::BOOKING_GAME_SYNC, s::BOOKING_SLOT_SYNC, "_INBOX.>"]),
                // `courseStub.>` is the stand-in's control plane, not course-service's.
                list(&["gameTimeSlots.>", "games.>", "courseStub.>", "_INBOX.>"]),
            ),
            NatsRole::UserApi => format!(
                "permissions: {{ publish: {{ allow: [{}] }}, subscribe: {{ allow: [{}] }} }}",
                list(&requests),
                list(&["_INBOX.>", s::BOOKING_CONFIRMED, s::BOOKING_CANCELLED]),
            ),
        }
    }
}

/// How the world's nats-server is set up.
#[derive(Debug, Clone)]
pub(crate) struct NatsSetup {
    /// JetStream on.
    pub(crate) jetstream: bool,
    /// `max_payload` in bytes, when not the server's default (1 MiB).
    pub(crate) max_payload: Option<u32>,
    /// Users and permissions per [`NatsRole`]; anonymous clients are refused.
    pub(crate) secured: bool,
}

/// A node's place in a cluster: its name, its route port and its peers' route ports.
#[derive(Debug, Clone)]
pub(crate) struct ClusterPlace {
    /// `server_name` (JetStream needs one per node).
    pub(crate) name: String,
    /// Where this node listens for routes.
    pub(crate) route_port: u16,
    /// The other nodes' route ports.
    pub(crate) peers: Vec<u16>,
}

/// A nats-server this world owns.
#[derive(Debug)]
pub(crate) struct NatsServer {
    /// The `nats-server` program.
    bin: PathBuf,
    /// JetStream's storage directory; `None` runs a core server without JetStream.
    store_dir: Option<PathBuf>,
    /// The configuration file, rewritten at every start (the port may change).
    config_path: PathBuf,
    /// How the server is set up.
    setup: NatsSetup,
    /// The password of every role when secured (one per world).
    secret: String,
    /// Where the server's output goes.
    log_path: PathBuf,
    /// The loopback port.
    port: u16,
    /// The running server, if any.
    child: Option<Child>,
    /// Its place in a cluster, if it is in one.
    cluster: Option<ClusterPlace>,
}

impl NatsServer {
    /// Prepares a server in `dir` (not started yet).
    pub(crate) fn new(bin: PathBuf, dir: &Path, setup: NatsSetup) -> Result<Self, WorldError> {
        let store_dir = if setup.jetstream {
            let store_dir = dir.join("jetstream");
            std::fs::create_dir(&store_dir)
                .with_context(|| format!("creating {}", store_dir.display()))?;
            Some(store_dir)
        } else {
            None
        };
        let log_path = dir.join("nats.log");
        std::fs::File::create(&log_path).context("creating the NATS log")?;
        Ok(Self {
            bin,
            store_dir,
            config_path: dir.join("nats.conf"),
            setup,
            secret: uuid::Uuid::new_v4().simple().to_string(),
            log_path,
            port: free_port()?,
            child: None,
            cluster: None,
        })
    }

    /// Gives this server the same users and passwords as `other` (nodes of one cluster).
    pub(crate) fn share_users(&mut self, other: &NatsServer) {
        self.secret = other.secret.clone();
    }

    /// Makes this server a node of a cluster (before it starts).
    pub(crate) fn join(&mut self, place: ClusterPlace) {
        self.cluster = Some(place);
    }

    /// The client URL (credentials, when secured, go through [`NatsServer::credentials`]: the
    /// Rust client ignores any in the URL).
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `(user, password)` of `role` on a secured server.
    pub(crate) fn credentials(&self, role: NatsRole) -> Option<(String, String)> {
        self.setup
            .secured
            .then(|| (role.user().to_owned(), self.secret.clone()))
    }

    /// The configuration file's text.
    fn config(&self) -> String {
        let mut conf = format!("listen: \"127.0.0.1:{}\"\n", self.port);
        if let Some(place) = &self.cluster {
            let routes: Vec<String> = place
                .peers
                .iter()
                .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
                .collect();
            conf.push_str(&format!(
                "server_name: \"{}\"\ncluster {{ name: \"booking\", listen: \"127.0.0.1:{}\", routes: [{}] }}\n",
                place.name,
                place.route_port,
                routes.join(", ")
            ));
        }
        if let Some(bytes) = self.setup.max_payload {
            conf.push_str(&format!("max_payload: {bytes}\n"));
        }
        if let Some(store_dir) = &self.store_dir {
            conf.push_str(&format!(
                "jetstream: {{ store_dir: {:?} }}\n",
                store_dir.display().to_string()
            ));
        }
        if self.setup.secured {
            let users: Vec<String> = NatsRole::ALL
                .iter()
                .map(|role| {
                    format!(
                        "      {{ user: \"{}\", password: \"{}\", {} }}",
                        role.user(),
                        self.secret,
                        role.permissions()
                    )
                })
                .collect();
            let jetstream = if self.store_dir.is_some() {
                "jetstream: enabled\n    "
            } else {
                ""
            };
            conf.push_str(&format!(
                "accounts: {{\n  BOOKING: {{\n    {jetstream}users: [\n{}\n    ]\n  }}\n}}\n",
                users.join(",\n")
            ));
        }
        conf
    }

    /// The server's pid, when running.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the server and waits until it greets clients.
    pub(crate) async fn start(&mut self, first: bool) -> Result<(), WorldError> {
        if self.child.is_some() {
            return Ok(());
        }
        let attempts = if first { 3 } else { 1 };
        let mut last = None;
        for _ in 0..attempts {
            let log = std::fs::OpenOptions::new()
                .append(true)
                .open(&self.log_path)
                .context("opening the NATS log")?;
            std::fs::write(&self.config_path, self.config())
                .context("writing the NATS configuration")?;
            let mut cmd = Command::new(&self.bin);
            cmd.arg("-c").arg(&self.config_path);
            cmd.stdin(Stdio::null())
                .stdout(log.try_clone().context("log handle")?)
                .stderr(log);
            self.child = Some(process::spawn(cmd).context("spawning nats-server")?);
            match self.wait_ready().await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.kill()?;
                    let port_taken =
                        log_tail(&self.log_path, 10).contains("address already in use");
                    last = Some(e);
                    if !port_taken {
                        break;
                    }
                    self.port = free_port()?;
                }
            }
        }
        Err(last.unwrap_or(WorldError::Startup {
            server: "nats-server",
            log: log_tail(&self.log_path, 30),
        }))
    }

    async fn wait_ready(&mut self) -> Result<(), WorldError> {
        let addr = format!("127.0.0.1:{}", self.port);
        let greeted = || {
            let addr = addr.clone();
            async move {
                tokio::task::spawn_blocking(move || greets(&addr))
                    .await
                    .unwrap_or(false)
            }
        };
        let every = Duration::from_millis(20);
        process::wait_ready(
            &mut self.child,
            "nats-server",
            &self.log_path,
            READY_TIMEOUT,
            every,
            greeted,
        )
        .await
    }

    /// Kills the server with SIGKILL.
    pub(crate) fn kill(&mut self) -> Result<(), WorldError> {
        if let Some(mut child) = self.child.take() {
            process::kill_group(&mut child).context("killing nats-server")?;
        }
        Ok(())
    }

    /// Stops the server cleanly (lame-duck mode is skipped: SIGTERM closes connections at once).
    pub(crate) async fn stop(&mut self) -> Result<(), WorldError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        process::stop_group(&mut child, Signal::SIGTERM, Duration::from_secs(10))
            .await
            .context("stopping nats-server")?;
        Ok(())
    }
}

/// Whether a NATS server at `addr` sends its `INFO` greeting.
fn greets(addr: &str) -> bool {
    let Ok(addr) = addr.parse() else { return false };
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 5];
    stream.read_exact(&mut buf).is_ok() && &buf == b"INFO "
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = process::kill_group(&mut child);
        }
    }
}
