//! One throwaway PostgreSQL server: `initdb` into the world's directory, `postgres` on a free
//! loopback port, stop, kill and restart on the same port and data.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid};
use sqlx::Connection as _;

use super::binaries::PgBinaries;
use super::{free_port, log_tail, process, WorldError};

/// How long a start may take before it is reported as a failure.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A PostgreSQL server this world owns.
#[derive(Debug)]
pub(crate) struct PgServer {
    /// The server programs.
    bins: PgBinaries,
    /// The cluster's data directory.
    data_dir: PathBuf,
    /// Where the server's output goes.
    log_path: PathBuf,
    /// The loopback port, fixed for the server's life so clients can reconnect after a restart.
    port: u16,
    /// Whether fsync and synchronous commit stay on (production-like) or are off (fast tests).
    fsync: bool,
    /// The user to run as when we are root (PostgreSQL refuses to run as root).
    run_as: Option<(Uid, Gid)>,
    /// The running postmaster, if any.
    child: Option<Child>,
    /// Extra `-c name=value` settings.
    settings: Vec<(String, String)>,
}

/// Picks the account to run PostgreSQL as: ourselves, or `postgres` when we are root.
fn account() -> Result<Option<(Uid, Gid)>, WorldError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("postgres")
        .map_err(|e| anyhow::anyhow!("cannot look up the postgres user: {e}"))?
        .ok_or(WorldError::MissingBinary {
            program: "the `postgres` user (PostgreSQL refuses to run as root)",
            package: "postgresql",
            instead: "run as a non-root user, or set DATABASE_URL to use an existing server",
        })?;
    Ok(Some((user.uid, user.gid)))
}

impl PgServer {
    /// Creates a cluster in `dir/pg` with `initdb`.
    pub(crate) fn init(bins: PgBinaries, dir: &Path, fsync: bool) -> Result<Self, WorldError> {
        let run_as = account()?;
        let data_dir = dir.join("pg");
        std::fs::create_dir(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        if let Some((uid, gid)) = run_as {
            nix::unistd::chown(&data_dir, Some(uid), Some(gid))
                .with_context(|| format!("giving {} to the postgres user", data_dir.display()))?;
        }
        let log_path = dir.join("postgres.log");
        let log = std::fs::File::create(&log_path).context("creating the PostgreSQL log")?;
        let mut initdb = Command::new(&bins.initdb);
        initdb
            .arg("-D")
            .arg(&data_dir)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("log handle")?)
            .stderr(log);
        if let Some((uid, gid)) = run_as {
            initdb.uid(uid.as_raw()).gid(gid.as_raw());
        }
        let status = initdb
            .status()
            .with_context(|| format!("running {}", bins.initdb.display()))?;
        if !status.success() {
            return Err(WorldError::Startup {
                server: "initdb",
                log: log_tail(&log_path, 30),
            });
        }
        Ok(Self {
            bins,
            data_dir,
            log_path,
            port: free_port()?,
            fsync,
            run_as,
            child: None,
            settings: Vec::new(),
        })
    }

    /// Adds `name = value` settings to every start.
    pub(crate) fn with_settings(mut self, settings: Vec<(String, String)>) -> Self {
        self.settings.extend(settings);
        self
    }

    /// The loopback port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's pid, when running.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A URL for `database` on this server.
    pub(crate) fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn command(&self) -> Result<Command, WorldError> {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .context("opening the PostgreSQL log")?;
        let mut cmd = Command::new(&self.bins.postgres);
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "unix_socket_directories="])
            .args(["-c", "max_connections=300"])
            .args(["-c", "shared_buffers=128MB"])
            .args(
                self.settings
                    .iter()
                    .flat_map(|(k, v)| ["-c".to_owned(), format!("{k}={v}")]),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("log handle")?)
            .stderr(log);
        if !self.fsync {
            cmd.args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]);
        }
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        Ok(cmd)
    }

    /// Starts the server and waits until it accepts connections. On a first start whose port was
    /// taken meanwhile, moves to another free port.
    pub(crate) async fn start(&mut self, first: bool) -> Result<(), WorldError> {
        if self.child.is_some() {
            return Ok(());
        }
        let attempts = if first { 3 } else { 1 };
        let mut last = None;
        for _ in 0..attempts {
            let child = process::spawn(self.command()?).context("spawning postgres")?;
            self.child = Some(child);
            match self.wait_ready().await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.kill()?;
                    let port_taken =
                        log_tail(&self.log_path, 10).contains("Address already in use");
                    last = Some(e);
                    if !port_taken {
                        break;
                    }
                    self.port = free_port()?;
                }
            }
        }
        Err(last.unwrap_or(WorldError::Startup {
            server: "postgres",
            log: log_tail(&self.log_path, 30),
        }))
    }

    async fn wait_ready(&mut self) -> Result<(), WorldError> {
        let url = self.url("postgres");
        let connects = || async {
            let attempt =
                tokio::time::timeout(Duration::from_secs(2), sqlx::PgConnection::connect(&url))
                    .await;
            match attempt {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    true
                }
                _ => false,
            }
        };
        let every = Duration::from_millis(50);
        process::wait_ready(
            &mut self.child,
            "postgres",
            &self.log_path,
            READY_TIMEOUT,
            every,
            connects,
        )
        .await
    }

    /// Kills the server and all its backends at once (like a power cut: no checkpoint).
    pub(crate) fn kill(&mut self) -> Result<(), WorldError> {
        if let Some(mut child) = self.child.take() {
            process::kill_group(&mut child).context("killing postgres")?;
        }
        Ok(())
    }

    /// Stops the server cleanly ("fast" shutdown: disconnect clients, checkpoint, exit).
    pub(crate) async fn stop(&mut self) -> Result<(), WorldError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        process::stop_group(&mut child, Signal::SIGINT, Duration::from_secs(30))
            .await
            .context("stopping postgres")?;
        // Backends of a stopped cluster are gone with it; reap nothing else.
        Ok(())
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes its backends down.
            let _ = process::signal_group(&child, Signal::SIGQUIT);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = process::kill_group(&mut child);
        }
    }
}
