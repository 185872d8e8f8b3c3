//! Finding the server binaries, with one clear message when they are missing.

use std::path::{Path, PathBuf};

use super::WorldError;

/// The PostgreSQL server programs.
#[derive(Debug, Clone)]
pub(crate) struct PgBinaries {
    /// `initdb`.
    pub(crate) initdb: PathBuf,
    /// `postgres`.
    pub(crate) postgres: PathBuf,
}

/// Looks for `name` in `dirs`, in order.
pub(crate) fn find_in(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter()
        .map(|dir| dir.join(name))
        .find(|path| is_executable(path))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default()
}

/// Debian keeps the server programs out of `PATH`, in `/usr/lib/postgresql/<major>/bin`; the newest
/// major version wins.
fn debian_pg_dirs() -> Vec<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// Where PostgreSQL's programs may be: `PG_BIN_DIR`, then Debian's directories, then `PATH`.
fn pg_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PG_BIN_DIR")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    dirs.extend(debian_pg_dirs());
    dirs.extend(path_dirs());
    dirs
}

/// Finds `initdb` and `postgres`: `PG_BIN_DIR`, then Debian's directories, then `PATH`.
pub(crate) fn postgres() -> Result<PgBinaries, WorldError> {
    pg_in(&pg_dirs())
}

/// Finds another PostgreSQL program (`pgbench`, `psql`) where `postgres` would be looked for.
pub fn postgres_tool(name: &'static str) -> Result<PathBuf, WorldError> {
    find_in(name, &pg_dirs()).ok_or(WorldError::MissingBinary {
        program: name,
        package: "postgresql",
        instead: "set PG_BIN_DIR to its directory",
    })
}

/// Finds both PostgreSQL programs in the same directory of `dirs`.
pub(crate) fn pg_in(dirs: &[PathBuf]) -> Result<PgBinaries, WorldError> {
    dirs.iter()
        .find_map(|dir| {
            let initdb = find_in("initdb", std::slice::from_ref(dir))?;
            let postgres = find_in("postgres", std::slice::from_ref(dir))?;
            Some(PgBinaries { initdb, postgres })
        })
        .ok_or(WorldError::MissingBinary {
            program: "initdb and postgres",
            package: "postgresql",
            instead: "set PG_BIN_DIR to their directory, or DATABASE_URL to use an existing server",
        })
}

/// Finds `nats-server`: `NATS_SERVER_BIN`, then `PATH`, then `/usr/sbin` (Debian's place).
pub(crate) fn nats() -> Result<PathBuf, WorldError> {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN").map(PathBuf::from) {
        if is_executable(&bin) {
            return Ok(bin);
        }
    }
    let mut dirs = path_dirs();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/usr/bin"].map(PathBuf::from));
    nats_in(&dirs)
}

/// Finds `nats-server` in `dirs`.
pub(crate) fn nats_in(dirs: &[PathBuf]) -> Result<PathBuf, WorldError> {
    find_in("nats-server", dirs).ok_or(WorldError::MissingBinary {
        program: "nats-server",
        package: "nats-server",
        instead: "set NATS_SERVER_BIN to the binary, or NATS_URL to use an existing server",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_nats_server_names_the_debian_package() {
        let err = nats_in(&[PathBuf::from("/nonexistent")]).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("apt-get install nats-server"), "{message}");
        assert!(message.contains("NATS_URL"), "{message}");
    }

    #[test]
    fn missing_postgres_binaries_name_the_debian_package() {
        let message = pg_in(&[PathBuf::from("/nonexistent")])
            .unwrap_err()
            .to_string();
        assert!(message.contains("apt-get install postgresql"), "{message}");
        assert!(message.contains("DATABASE_URL"), "{message}");
    }

    #[test]
    fn programs_are_found_in_the_given_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nats-server");
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(nats_in(&[dir.path().to_path_buf()]).unwrap(), path);
    }
}
