//! What starting the stack's processes needs: where the binaries are, when the course-stub says
//! it is ready, and a NestJS request to see whether the service answers.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use contracts::NestClient;

/// Sends a NestJS request and returns its `response` value; `None` on no reply within 2 s, an
/// `err` reply, or a reply that cannot be decoded.
pub async fn ask(
    client: &async_nats::Client,
    subject: &str,
    data: serde_json::Value,
) -> Option<serde_json::Value> {
    NestClient::new(client.clone(), Duration::from_secs(2))
        .ask(subject, &data)
        .await
}

/// Reads a course-stub's standard output on a thread of its own: the receiver resolves at its
/// `course-stub ready` line; the rest is read and dropped so the stub never blocks on the pipe.
pub(super) fn announces_ready(
    out: std::process::ChildStdout,
) -> tokio::sync::oneshot::Receiver<()> {
    use std::io::BufRead as _;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if line.trim() == "course-stub ready" {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    rx
}

/// Where the project's binaries are: beside the running executable, or one level up when the
/// running executable is a test (`target/<profile>/deps/`).
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running executable")?;
    let dir = exe.parent().context("executable without a directory")?;
    let candidates = [Some(dir.join(name)), dir.parent().map(|up| up.join(name))];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.exists())
        .with_context(|| {
            format!(
            "{name} not found beside {}: build it first (cargo build --release -p booking-service \
             -p course-stub), or run through `cargo xtask e2e`",
            dir.display()
        )
        })
}
