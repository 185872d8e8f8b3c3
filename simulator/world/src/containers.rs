//! The world on Docker (cargo feature `containers`, selected with `WORLD_BACKEND=containers` or
//! [`crate::WorldBuilder::containers`]): the same PostgreSQL and NATS, started as the official
//! images by testcontainers instead of from the system's binaries, for machines that have Docker
//! and not the Debian packages. The world then treats them as servers given by URL: databases,
//! tests and the stack work; the chaos verbs (kill, stop, restart) do not.
//!
//! [`plan`] is what the containers are asked to be (image, tag, command, environment, port, the
//! log line that says ready); it is pure, so it is tested where Docker does not run.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use testcontainers::core::{IntoContainerPort as _, WaitFor};
use testcontainers::runners::AsyncRunner as _;
use testcontainers::{ContainerAsync, GenericImage, ImageExt as _};

use crate::WorldError;

/// PostgreSQL's image: the version the system binaries have.
pub const POSTGRES_IMAGE: (&str, &str) = ("postgres", "15");
/// NATS's image.
pub const NATS_IMAGE: (&str, &str) = ("nats", "2.10-alpine");
/// The password of the containers' PostgreSQL superuser (a throwaway server on loopback).
const PASSWORD: &str = "world";

/// One container, as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPlan {
    /// Image name.
    pub image: &'static str,
    /// Image tag.
    pub tag: &'static str,
    /// Arguments after the image's entry point.
    pub cmd: Vec<String>,
    /// Environment.
    pub env: Vec<(String, String)>,
    /// The port the server listens on inside the container.
    pub port: u16,
    /// The line on standard error that says it is ready.
    pub ready: &'static str,
}

/// Both containers, as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// PostgreSQL, when the world has it.
    pub postgres: Option<ContainerPlan>,
    /// NATS, when the world has it.
    pub nats: Option<ContainerPlan>,
}

/// What the world asks of its servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// Start PostgreSQL.
    pub postgres: bool,
    /// Start NATS.
    pub nats: bool,
    /// fsync on (production-like) or off (fast tests).
    pub fsync: bool,
    /// JetStream on.
    pub jetstream: bool,
    /// NATS `max_payload`, when not the default.
    pub max_payload: Option<u32>,
}

/// The containers for `wanted`, with the same settings the local servers get.
pub fn plan(wanted: Wanted) -> Plan {
    let postgres = wanted.postgres.then(|| {
        let mut cmd = vec!["postgres".to_owned()];
        let mut set = |k: &str, v: &str| cmd.extend(["-c".to_owned(), format!("{k}={v}")]);
        set("max_connections", "500");
        if !wanted.fsync {
            set("fsync", "off");
            set("synchronous_commit", "off");
            set("full_page_writes", "off");
        }
        ContainerPlan {
            image: POSTGRES_IMAGE.0,
            tag: POSTGRES_IMAGE.1,
            cmd,
            env: vec![("POSTGRES_PASSWORD".to_owned(), PASSWORD.to_owned())],
            port: 5432,
            ready: "database system is ready to accept connections",
        }
    });
    let nats = wanted.nats.then(|| {
        let mut cmd = Vec::new();
        if wanted.jetstream {
            cmd.push("--jetstream".to_owned());
        }
        if let Some(bytes) = wanted.max_payload {
            cmd.extend(["--max_payload".to_owned(), bytes.to_string()]);
        }
        ContainerPlan {
            image: NATS_IMAGE.0,
            tag: NATS_IMAGE.1,
            cmd,
            env: Vec::new(),
            port: 4222,
            ready: "Server is ready",
        }
    });
    Plan { postgres, nats }
}

/// Running containers; dropping them stops and removes them.
pub struct Containers {
    _postgres: Option<ContainerAsync<GenericImage>>,
    _nats: Option<ContainerAsync<GenericImage>>,
    /// The admin URL of the containers' PostgreSQL (database `postgres`).
    pub postgres_url: Option<String>,
    /// The URL of the containers' NATS.
    pub nats_url: Option<String>,
}

impl std::fmt::Debug for Containers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Containers")
            .field("postgres_url", &self.postgres_url)
            .field("nats_url", &self.nats_url)
            .finish()
    }
}

async fn run(p: &ContainerPlan) -> Result<(ContainerAsync<GenericImage>, u16), WorldError> {
    let mut image = GenericImage::new(p.image, p.tag)
        .with_exposed_port(p.port.tcp())
        .with_wait_for(WaitFor::message_on_stderr(p.ready))
        .with_cmd(p.cmd.clone());
    for (k, v) in &p.env {
        image = image.with_env_var(k.clone(), v.clone());
    }
    let container = image.start().await.with_context(|| {
        format!(
            "starting the {}:{} container (is Docker running?)",
            p.image, p.tag
        )
    })?;
    let port = container
        .get_host_port_ipv4(p.port.tcp())
        .await
        .with_context(|| format!("the {}:{} container's port", p.image, p.tag))?;
    Ok((container, port))
}

/// Starts the containers of `plan` and waits until PostgreSQL takes connections (its image says
/// "ready" once during its first-run setup, before the real start).
pub async fn start(plan: &Plan) -> Result<Containers, WorldError> {
    let (postgres, postgres_url) = match &plan.postgres {
        Some(p) => {
            let (container, port) = run(p).await?;
            let url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/postgres");
            wait_for_postgres(&url).await?;
            (Some(container), Some(url))
        }
        None => (None, None),
    };
    let (nats, nats_url) = match &plan.nats {
        Some(p) => {
            let (container, port) = run(p).await?;
            (Some(container), Some(format!("nats://127.0.0.1:{port}")))
        }
        None => (None, None),
    };
    Ok(Containers {
        _postgres: postgres,
        _nats: nats,
        postgres_url,
        nats_url,
    })
}

async fn wait_for_postgres(url: &str) -> Result<(), WorldError> {
    use sqlx::Connection as _;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match sqlx::PgConnection::connect(url).await {
            Ok(conn) => {
                let _ = conn.close().await;
                return Ok(());
            }
            Err(e) if Instant::now() > deadline => {
                return Err(WorldError::Startup {
                    server: "the PostgreSQL container",
                    log: e.to_string(),
                })
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn wanted() -> Wanted {
        Wanted {
            postgres: true,
            nats: true,
            fsync: true,
            jetstream: true,
            max_payload: None,
        }
    }

    #[test]
    fn production_like_by_default() {
        let plan = plan(wanted());
        let pg = plan.postgres.unwrap();
        assert_eq!((pg.image, pg.tag, pg.port), ("postgres", "15", 5432));
        assert!(
            !pg.cmd.iter().any(|a| a.starts_with("fsync")),
            "{:?}",
            pg.cmd
        );
        let nats = plan.nats.unwrap();
        assert_eq!((nats.image, nats.port), ("nats", 4222));
        assert_eq!(nats.cmd, ["--jetstream"]);
    }

    #[test]
    fn fast_tests_turn_fsync_off_and_options_reach_nats() {
        let plan = plan(Wanted {
            fsync: false,
            jetstream: false,
            max_payload: Some(65_536),
            ..wanted()
        });
        let pg = plan.postgres.unwrap();
        assert!(
            pg.cmd.windows(2).any(|w| w == ["-c", "fsync=off"]),
            "{:?}",
            pg.cmd
        );
        assert_eq!(plan.nats.unwrap().cmd, ["--max_payload", "65536"]);
    }

    #[test]
    fn a_world_without_a_server_asks_for_no_container() {
        let plan = plan(Wanted {
            postgres: false,
            ..wanted()
        });
        assert!(plan.postgres.is_none() && plan.nats.is_some());
    }
}
