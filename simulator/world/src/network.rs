//! The network between a stack's replicas and its servers, made of [`Proxy`]s so faults can be
//! played on it: one proxy in front of PostgreSQL that every replica goes through (the harness's
//! own connections go around it, so the checker sees the truth), and one per replica per NATS
//! node, so a replica can be partitioned from NATS while the others are not.

use std::net::SocketAddr;

use anyhow::Context as _;

use crate::proxy::{Mode, Proxy};

/// The proxies of a stack.
#[derive(Debug)]
pub struct Network {
    db: Proxy,
    /// `nats[replica][node]`.
    nats: Vec<Vec<Proxy>>,
}

/// The `host:port` of a URL (`scheme://[user[:password]@]host:port[/…]`) and where it sits.
fn authority(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    let at = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    Some((at, end))
}

/// The address a URL points at (loopback servers only: the world's own).
pub fn address(url: &str) -> anyhow::Result<SocketAddr> {
    let (a, b) = authority(url).with_context(|| format!("no host:port in {url:?}"))?;
    let hostport = url[a..b].replace("localhost", "127.0.0.1");
    hostport
        .parse()
        .with_context(|| format!("{hostport:?} is not an address"))
}

/// `url` with its `host:port` replaced by `addr`.
pub fn pointed_at(url: &str, addr: SocketAddr) -> anyhow::Result<String> {
    let (a, b) = authority(url).with_context(|| format!("no host:port in {url:?}"))?;
    Ok(format!("{}{addr}{}", &url[..a], &url[b..]))
}

impl Network {
    /// Proxies in front of the database of `db_url` and of every node of `nats_url` (a comma
    /// separated list), for `replicas` replicas.
    pub async fn start(db_url: &str, nats_url: &str, replicas: usize) -> anyhow::Result<Self> {
        let db = Proxy::start_postgres(address(db_url)?).await?;
        let nodes = nats_url
            .split(',')
            .map(|u| address(u.trim()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut nats = Vec::new();
        for _ in 0..replicas {
            let mut own = Vec::new();
            for node in &nodes {
                own.push(Proxy::start(*node).await?);
            }
            nats.push(own);
        }
        Ok(Self { db, nats })
    }

    /// `db_url` through the database's proxy.
    pub fn db_url(&self, db_url: &str) -> anyhow::Result<String> {
        pointed_at(db_url, self.db.addr())
    }

    /// The NATS URL list replica `replica` connects with: its own proxy to every node.
    pub fn nats_url(&self, replica: usize) -> String {
        self.nats
            .get(replica)
            .map(|own| {
                own.iter()
                    .map(|p| format!("nats://{}", p.addr()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    }

    /// Puts every replica's link to PostgreSQL in `mode`.
    pub fn database(&self, mode: Mode) {
        self.db.set(mode);
    }

    /// Cuts replica `replica` off from every NATS node (`true`), or heals it (`false`).
    pub fn partition(&self, replica: usize, cut: bool) -> anyhow::Result<()> {
        let own = self
            .nats
            .get(replica)
            .with_context(|| format!("no replica {replica}"))?;
        for p in own {
            p.set(if cut { Mode::Cut } else { Mode::Pass });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn urls_are_repointed_keeping_credentials_path_and_query() {
        let to: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        assert_eq!(
            pointed_at("postgres://u:p@127.0.0.1:5432/db?sslmode=disable", to).unwrap(),
            "postgres://u:p@127.0.0.1:7000/db?sslmode=disable"
        );
        assert_eq!(
            pointed_at("nats://127.0.0.1:4222", to).unwrap(),
            "nats://127.0.0.1:7000"
        );
        assert_eq!(
            address("postgres://u@localhost:5433/x").unwrap(),
            "127.0.0.1:5433".parse::<SocketAddr>().unwrap()
        );
        assert!(address("not a url").is_err());
    }
}
