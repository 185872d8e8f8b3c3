//! Spawning server processes that never outlive us, and killing them.
//!
//! A world may live in a `static` (tests share one per test binary), and statics are never dropped,
//! so `Drop` alone cannot promise cleanup. Every server is therefore started with Linux's
//! parent-death signal: when our process exits, however it exits, the kernel sends the server
//! SIGKILL. That signal is tied to the *thread* that forked the child, so all spawns go through one
//! dedicated thread that lives as long as the process.
//!
//! Each server also gets a process group of its own, so a kill reaches its helpers (PostgreSQL's
//! backends) at once and a restart never meets a half-dead predecessor.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

type Job = (Command, mpsc::Sender<io::Result<Child>>);

fn spawner() -> &'static Mutex<mpsc::Sender<Job>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("world-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(spawn_here(&mut command));
                }
            });
        if let Err(e) = thread {
            tracing::error!("cannot start the world-spawner thread: {e}");
        }
        Mutex::new(tx)
    })
}

#[allow(unsafe_code)]
fn spawn_here(command: &mut Command) -> io::Result<Child> {
    let parent = nix::unistd::getpid();
    command.process_group(0);
    // SAFETY: the closure runs in the forked child before exec and calls only prctl(2) and
    // getppid(2), both async-signal-safe system calls; it allocates nothing and takes no locks.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
            // The parent may have died between fork and prctl; then nobody would ever signal us.
            if nix::unistd::getppid() != parent {
                return Err(io::Error::other("parent exited during spawn"));
            }
            Ok(())
        });
    }
    command.spawn()
}

/// Spawns `command` in its own process group, to be killed when this process exits.
pub fn spawn(command: Command) -> io::Result<Child> {
    let (tx, rx) = mpsc::channel();
    spawner()
        .lock()
        .map_err(|_| io::Error::other("world-spawner lock poisoned"))?
        .send((command, tx))
        .map_err(|_| io::Error::other("world-spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("world-spawner thread is gone"))?
}

/// Sends `signal` to the process group led by `child`.
pub fn signal_group(child: &Child, signal: Signal) -> io::Result<()> {
    let pid = i32::try_from(child.id()).map_err(|_| io::Error::other("pid out of range"))?;
    match killpg(Pid::from_raw(pid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Kills the whole group with SIGKILL and reaps the leader.
pub fn kill_group(child: &mut Child) -> io::Result<()> {
    signal_group(child, Signal::SIGKILL)?;
    child.wait().map(|_| ())
}

/// Sends `signal` to the group led by `child` and waits up to `grace` for the leader to exit;
/// past that, the group is killed.
pub async fn stop_group(child: &mut Child, signal: Signal, grace: Duration) -> io::Result<()> {
    signal_group(child, signal)?;
    let deadline = Instant::now() + grace;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            return kill_group(child);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Whether a process with this pid exists.
pub fn is_alive(pid: u32) -> bool {
    i32::try_from(pid)
        .map(|pid| nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok())
        .unwrap_or(false)
}

/// Polls `ready` every `every` until it holds; fails with the tail of `log` when the process exits
/// first (it is then forgotten) or `timeout` passes.
pub(crate) async fn wait_ready<F, Fut>(
    child: &mut Option<Child>,
    server: &'static str,
    log: &std::path::Path,
    timeout: Duration,
    every: Duration,
    mut ready: F,
) -> Result<(), super::WorldError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(Ok(Some(status))) = child.as_mut().map(Child::try_wait) {
            *child = None;
            return Err(super::WorldError::Startup {
                server,
                log: format!("exited with {status}\n{}", super::log_tail(log, 30)),
            });
        }
        if ready().await {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(super::WorldError::Startup {
                server,
                log: format!("not ready after {timeout:?}\n{}", super::log_tail(log, 30)),
            });
        }
        tokio::time::sleep(every).await;
    }
}
