//! `cargo xtask`: the project's automation, so that "green locally" means "green in CI".
//!
//! | command | what it does |
//! |---|---|
//! | `cargo xtask test` | installs missing system packages, then fmt check, clippy `-D warnings`, every test |
//! | `cargo xtask contract` | the contract suite only (fixtures, schemas, AsyncAPI, codec) |
//! | `cargo xtask asyncapi` | regenerates `contracts/asyncapi.json` |
//! | `cargo xtask e2e` | the whole stack from one command (lands with the course-stub issue) |
//! | `cargo xtask deps` | installs (Debian, root) or names the system packages the worlds need |

mod deps;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Project automation for the booking-service workspace"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Format check, clippy with -D warnings, and every test.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// The contract suite only.
    Contract,
    /// Regenerate contracts/asyncapi.json.
    Asyncapi,
    /// Run the whole stack end to end (not yet available).
    E2e,
    /// Install (or print how to install) PostgreSQL and nats-server.
    Deps,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = workspace_root()?;
    match cli.command {
        Cmd::Test { args } => test(&root, &args),
        Cmd::Contract => {
            cargo(&root, &["test", "--package", "contracts"])?;
            Ok(())
        }
        Cmd::Asyncapi => asyncapi(&root),
        Cmd::E2e => {
            deps::ensure()?;
            bail!(
                "not yet: `cargo xtask e2e` runs the whole stack once booking-service and course-stub \
                 exist (issues 3 and 4); `cargo xtask test` runs everything built so far"
            )
        }
        Cmd::Deps => deps::ensure(),
    }
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .context("xtask lives one level below the workspace root")
}

/// Runs `cargo <args>` in the workspace root, failing on a non-zero exit.
fn cargo(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    run(Command::new(env!("CARGO")).args(args).current_dir(root))
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("$ {shown}");
    let status = cmd.status().with_context(|| format!("running {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

fn test(root: &Path, extra: &[String]) -> anyhow::Result<()> {
    deps::ensure()?;
    deps::nestjs(root)?;
    cargo(root, &["fmt", "--all", "--", "--check"])?;
    cargo(
        root,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    let mut args = vec!["test", "--workspace"];
    args.extend(extra.iter().map(String::as_str));
    // Snapshots are never written during a check: a missing or changed one fails the run.
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(&args).current_dir(root);
    if std::env::var_os("INSTA_UPDATE").is_none() {
        cmd.env("INSTA_UPDATE", "no");
    }
    run(&mut cmd)?;
    eprintln!("xtask test: formatting, lints and all tests passed");
    Ok(())
}

fn asyncapi(root: &Path) -> anyhow::Result<()> {
    let path = root.join(contracts::asyncapi::PATH);
    let text = contracts::asyncapi::render();
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    if old == text {
        eprintln!("{} is up to date", path.display());
    } else {
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
