//! System packages the throwaway worlds need: PostgreSQL's server binaries and nats-server.
//!
//! On Debian as root, missing packages are installed with apt-get (CI and fresh machines); anywhere
//! else the command to run is printed and the task fails.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _};

/// A package and how to tell whether it is installed.
struct Package {
    /// Debian package name.
    name: &'static str,
    /// Whether its programs are present.
    present: fn() -> bool,
    /// The variable that points the worlds at an existing server instead, making it unneeded.
    replaced_by: &'static str,
}

fn postgres_present() -> bool {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        return Path::new(&dir).join("initdb").exists();
    }
    std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().join("bin/initdb").exists() && e.path().join("bin/postgres").exists())
        || on_path("initdb")
}

fn nats_present() -> bool {
    std::env::var_os("NATS_SERVER_BIN").is_some_and(|p| Path::new(&p).exists())
        || on_path("nats-server")
        || Path::new("/usr/sbin/nats-server").exists()
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).exists()))
        .unwrap_or(false)
}

const PACKAGES: [Package; 2] = [
    Package {
        name: "postgresql",
        present: postgres_present,
        replaced_by: "DATABASE_URL",
    },
    Package {
        name: "nats-server",
        present: nats_present,
        replaced_by: "NATS_URL",
    },
];

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Makes sure every package is present, installing on Debian as root.
pub(crate) fn ensure() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|p| std::env::var_os(p.replaced_by).is_none() && !(p.present)())
        .map(|p| p.name)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    let debian = Path::new("/etc/debian_version").exists();
    if !(debian && is_root()) {
        bail!(
            "missing system packages: {list}\ninstall them with: sudo apt-get install -y {list}\n\
             (or set DATABASE_URL / NATS_URL to servers of your own)"
        );
    }
    eprintln!("installing missing packages: {list}");
    let install = |update: bool| -> anyhow::Result<bool> {
        if update {
            let _ = Command::new("apt-get").args(["update", "-q"]).status();
        }
        let status = Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?;
        Ok(status.success())
    };
    if !install(false)? && !install(true)? {
        bail!("apt-get install {list} failed");
    }
    for p in PACKAGES.iter().filter(|p| missing.contains(&p.name)) {
        if !(p.present)() {
            bail!(
                "{} was installed but its programs are still not found",
                p.name
            );
        }
    }
    Ok(())
}

/// Installs the NestJS peers of the wire-compatibility tests (`tests/nestjs`, from its lockfile)
/// when they are missing.
pub(crate) fn nestjs(root: &Path) -> anyhow::Result<()> {
    let dir = root.join("tests/nestjs");
    if dir.join("node_modules/@nestjs/microservices").exists() {
        return Ok(());
    }
    if !on_path("npm") || !on_path("node") {
        bail!(
            "node and npm are needed for the NestJS compatibility tests: install them \
             (Debian: apt-get install nodejs npm)"
        );
    }
    eprintln!("installing the NestJS test peers in {}", dir.display());
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .status()
        .context("running npm ci")?;
    if !status.success() {
        bail!("npm ci in {} failed", dir.display());
    }
    Ok(())
}
