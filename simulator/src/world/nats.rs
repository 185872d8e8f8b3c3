//! One throwaway nats-server: JetStream on, loopback only, a free port kept across restarts, and
//! the JetStream store in the world's directory so streams survive a restart.

use std::io::Read as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::signal::Signal;

use super::{free_port, log_tail, process, WorldError};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A nats-server this world owns.
#[derive(Debug)]
pub(crate) struct NatsServer {
    /// The `nats-server` program.
    bin: PathBuf,
    /// JetStream's storage directory; `None` runs a core server without JetStream.
    store_dir: Option<PathBuf>,
    /// Where the server's output goes.
    log_path: PathBuf,
    /// The loopback port.
    port: u16,
    /// The running server, if any.
    child: Option<Child>,
}

impl NatsServer {
    /// Prepares a server in `dir` (not started yet).
    pub(crate) fn new(bin: PathBuf, dir: &Path, jetstream: bool) -> Result<Self, WorldError> {
        let store_dir = if jetstream {
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
            log_path,
            port: free_port()?,
            child: None,
        })
    }

    /// The client URL.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
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
            let mut cmd = Command::new(&self.bin);
            cmd.args(["-a", "127.0.0.1", "-p"])
                .arg(self.port.to_string());
            if let Some(store_dir) = &self.store_dir {
                cmd.arg("-js").arg("-sd").arg(store_dir);
            }
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
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = format!("127.0.0.1:{}", self.port);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(WorldError::Startup {
                        server: "nats-server",
                        log: format!("exited with {status}\n{}", log_tail(&self.log_path, 30)),
                    });
                }
            }
            let addr_for_probe = addr.clone();
            let greeted = tokio::task::spawn_blocking(move || greets(&addr_for_probe))
                .await
                .unwrap_or(false);
            if greeted {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(WorldError::Startup {
                    server: "nats-server",
                    log: format!(
                        "not ready after {READY_TIMEOUT:?}\n{}",
                        log_tail(&self.log_path, 30)
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
        process::signal_group(&child, Signal::SIGTERM).context("stopping nats-server")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while child
            .try_wait()
            .context("waiting for nats-server")?
            .is_none()
        {
            if Instant::now() > deadline {
                process::kill_group(&mut child).context("killing nats-server")?;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
