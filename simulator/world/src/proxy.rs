//! A TCP proxy the world puts between a client and a server to play the network's faults, as
//! Toxiproxy does: `latency` (a delay line with jitter, which slows every byte without limiting
//! bandwidth), `blackhole` (connections stay open and accepted, nothing passes: a hung peer, not
//! a refused one), `cut` (every connection reset, new ones reset at once), `commit-lost` (a proxy
//! in front of PostgreSQL lets a booking write's commit through, then swallows its answer and
//! resets the connection, at a rate: the caller cannot know whether it committed) and back to
//! `pass`. A mode applies to the connections already open as well as to new ones. Used only by
//! the world.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rand::Rng as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::pgwire;

/// What the proxy does to the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bytes pass as they come.
    Pass,
    /// Every chunk is held `min..=max` ms (uniform), in order.
    Latency {
        /// Least delay, ms.
        min_ms: u64,
        /// Most delay, ms.
        max_ms: u64,
    },
    /// Nothing passes; connections stay open and new ones are accepted and left hanging.
    Blackhole,
    /// Every connection is reset, and every new one at once.
    Cut,
    /// On a PostgreSQL proxy ([`Proxy::start_postgres`]), `per_mille` of the transactions that
    /// wrote `bookings` have their end (commit, or an autocommit statement) let through and its
    /// answer swallowed, and the connection is reset. Elsewhere, as `Pass`.
    CommitLost {
        /// Share of booking writes whose answer is lost, in thousandths.
        per_mille: u32,
        /// Share of booking writes whose end (`COMMIT`, or the autocommit statement's `Sync`)
        /// is lost on its way to the server instead (the connection reset first: it rolls
        /// back), in thousandths.
        before_per_mille: u32,
    },
}

/// A running proxy from a loopback port to `upstream`; stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    postgres: bool,
    mode: watch::Sender<Mode>,
    accept: JoinHandle<()>,
}

/// Largest chunk read at once.
const CHUNK: usize = 64 * 1024;
/// Chunks in flight per direction on a delay line; reading waits when it is full.
const LINE: usize = 256;

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding a proxy port")?;
        Self::on(listener, upstream, false)
    }

    /// [`Proxy::start`] for a PostgreSQL server: its traffic is read (never changed) so that
    /// [`Mode::CommitLost`] can find where booking writes end.
    pub async fn start_postgres(upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding a proxy port")?;
        Self::on(listener, upstream, true)
    }

    fn on(listener: TcpListener, upstream: SocketAddr, postgres: bool) -> anyhow::Result<Self> {
        let addr = listener.local_addr()?;
        let (mode, watch_mode) = watch::channel(Mode::Pass);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mode = watch_mode.clone();
                tokio::spawn(async move {
                    let _ = connection(client, upstream, mode, postgres).await;
                });
            }
        });
        Ok(Self {
            addr,
            postgres,
            mode,
            accept,
        })
    }

    /// Whether this proxy reads PostgreSQL's protocol ([`Proxy::start_postgres`]).
    pub fn is_postgres(&self) -> bool {
        self.postgres
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches every connection, open and new, to `mode`.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Open connections see Cut and reset; the listener goes with its task.
        self.mode.send_replace(Mode::Cut);
        self.accept.abort();
    }
}

/// Makes the socket's close a reset (RST), as a cut cable's far end would see.
fn reset_on_close(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Waits until the mode is not `Blackhole`; `None` when the proxy is gone.
async fn through_blackhole(mode: &mut watch::Receiver<Mode>) -> Option<Mode> {
    loop {
        let now = *mode.borrow_and_update();
        if now != Mode::Blackhole {
            return Some(now);
        }
        mode.changed().await.ok()?;
    }
}

/// Serves one client: connects upstream once the mode lets it, then pumps both ways until both
/// sides close or the mode becomes `Cut`.
async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    postgres: bool,
) -> anyhow::Result<()> {
    match through_blackhole(&mut mode).await {
        Some(Mode::Cut) | None => {
            reset_on_close(&client);
            return Ok(());
        }
        Some(_) => {}
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        reset_on_close(&client);
        return Ok(());
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_r, client_w) = client.into_split();
    let (server_r, server_w) = server.into_split();
    // The connection sees the proxy's mode through a copy of its own, which a lost commit can
    // turn to Cut for this connection alone.
    let (own_tx, own_rx) = watch::channel(*mode.borrow_and_update());
    let shared = Arc::new(Shared {
        wrote: AtomicBool::new(false),
        in_transaction: AtomicBool::new(false),
        tls: AtomicBool::new(false),
        killed: AtomicBool::new(false),
        own: own_tx,
    });
    let follow = {
        let shared = shared.clone();
        tokio::spawn(async move {
            while mode.changed().await.is_ok() {
                let now = *mode.borrow_and_update();
                if !shared.killed.load(Ordering::SeqCst) {
                    shared.own.send_replace(now);
                }
            }
            shared.own.send_replace(Mode::Cut);
        })
    };
    let (up, down) = if postgres {
        (
            Some(Inspect::Client(
                pgwire::ClientSide::default(),
                shared.clone(),
            )),
            Some(Inspect::Server(
                pgwire::ServerSide::default(),
                shared.clone(),
            )),
        )
    } else {
        (None, None)
    };
    tokio::join!(
        pump(client_r, server_w, own_rx.clone(), up),
        pump(server_r, client_w, own_rx, down)
    );
    follow.abort();
    Ok(())
}

/// What the two directions of one PostgreSQL connection share.
#[derive(Debug)]
struct Shared {
    /// The transaction under way has written bookings.
    wrote: AtomicBool,
    /// The server last said the session is inside a transaction.
    in_transaction: AtomicBool,
    /// The connection turned to TLS: nothing more is read.
    tls: AtomicBool,
    /// A commit's answer was lost: the connection stays cut whatever the proxy's mode.
    killed: AtomicBool,
    /// This connection's mode.
    own: watch::Sender<Mode>,
}

impl Shared {
    /// Cuts this connection for good (the chunk in hand does not pass); always true.
    fn cut(&self) -> bool {
        self.killed.store(true, Ordering::SeqCst);
        self.own.send_replace(Mode::Cut);
        true
    }
}

/// How a direction of a PostgreSQL connection reads what passes.
#[derive(Debug)]
enum Inspect {
    /// Client to server: which statements write bookings.
    Client(pgwire::ClientSide, Arc<Shared>),
    /// Server to client: where transactions end.
    Server(pgwire::ServerSide, Arc<Shared>),
}

impl Inspect {
    /// Reads `chunk`; true when it must not pass (it carries a lost commit's answer, and the
    /// connection has been cut).
    fn swallow(&mut self, chunk: &[u8], mode: Mode) -> bool {
        match self {
            Inspect::Client(client, shared) => {
                if shared.tls.load(Ordering::SeqCst) {
                    client.stop_reading();
                    return false;
                }
                let sent = client.feed(chunk, shared.in_transaction.load(Ordering::SeqCst));
                if sent.writes {
                    shared.wrote.store(true, Ordering::SeqCst);
                }
                let Mode::CommitLost {
                    before_per_mille, ..
                } = mode
                else {
                    return false;
                };
                if !sent.ends_write || rand::rng().random_range(0..1000) >= before_per_mille {
                    return false;
                }
                shared.wrote.store(false, Ordering::SeqCst);
                shared.cut()
            }
            Inspect::Server(server, shared) => {
                let seen = server.feed(chunk);
                if seen.tls {
                    shared.tls.store(true, Ordering::SeqCst);
                }
                if let Some(inside) = seen.in_transaction {
                    shared.in_transaction.store(inside, Ordering::SeqCst);
                }
                if !seen.ended || !shared.wrote.swap(false, Ordering::SeqCst) {
                    return false;
                }
                let Mode::CommitLost { per_mille, .. } = mode else {
                    return false;
                };
                if rand::rng().random_range(0..1000) >= per_mille {
                    return false;
                }
                shared.cut()
            }
        }
    }
}

/// One direction: reads chunks and writes them on, through the delay line. On `Cut` it makes its
/// source socket reset on close (the other direction does the same for the other socket); on a
/// close it passes the close on.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
    mut inspect: Option<Inspect>,
) {
    let (line_tx, mut line_rx) = mpsc::channel::<(Instant, Vec<u8>)>(LINE);
    let mut writer_mode = mode.clone();
    let writer = async move {
        while let Some((due, chunk)) = line_rx.recv().await {
            tokio::time::sleep_until(due).await;
            match through_blackhole(&mut writer_mode).await {
                Some(Mode::Cut) | None => {
                    // No FIN first: the socket's close is a reset.
                    to.forget();
                    return;
                }
                Some(_) => {}
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        if *writer_mode.borrow() == Mode::Cut {
            to.forget();
        } else {
            // The source closed and every chunk is out: pass the close on.
            let _ = to.shutdown().await;
        }
    };
    let reader = async move {
        let mut buf = vec![0u8; CHUNK];
        let mut last_due = Instant::now();
        loop {
            let now = match through_blackhole(&mut mode).await {
                Some(Mode::Cut) | None => {
                    reset_on_close(from.as_ref());
                    return;
                }
                Some(m) => m,
            };
            let n = tokio::select! {
                read = from.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                },
                // A mode change (to blackhole or cut) applies to a read already waiting.
                changed = mode.changed() => {
                    if changed.is_err() {
                        reset_on_close(from.as_ref());
                        return;
                    }
                    continue;
                }
            };
            if inspect.as_mut().is_some_and(|i| i.swallow(&buf[..n], now)) {
                continue;
            }
            let delay = match now {
                Mode::Latency { min_ms, max_ms } => {
                    Duration::from_millis(rand::rng().random_range(min_ms..=max_ms.max(min_ms)))
                }
                _ => Duration::ZERO,
            };
            // In order: a chunk is never due before the one ahead of it.
            let due = (Instant::now() + delay).max(last_due);
            last_due = due;
            if line_tx.send((due, buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(writer, reader);
}

#[cfg(test)]
mod tests;
