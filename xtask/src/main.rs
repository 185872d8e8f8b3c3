//! `cargo xtask`: the project's automation, so that "green locally" means "green in CI".
//!
//! | command | what it does |
//! |---|---|
//! | `cargo xtask test` | installs missing system packages, then fmt check, clippy `-D warnings` (also of `world --features containers`), the contract gate, every test, the short chaos suite |
//! | `cargo xtask contract` | the contract gate (today's wire against `contracts/baseline/`, the NestJS peers' expectations), then the contract suite; `--release` cuts a new baseline |
//! | `cargo xtask asyncapi` | regenerates `contracts/asyncapi.json` |
//! | `cargo xtask e2e` | builds in release mode and runs the simulator's `e2e` scenario (`target/e2e/`) |
//! | `cargo xtask sim …` | builds in release mode and runs `sim …` (run, replay, compare, capacity, list) |
//! | `cargo xtask chaos --seeds N` | every scenario for seeds 1..=N; fails on any violation |
//! | `cargo xtask bench` | criterion benches (codec; create over NATS against direct SQL) and the summary table |
//! | `cargo xtask up` | the same stack in the foreground, for manual use (`--replicas N`) |
//! | `cargo xtask req SUBJECT JSON` | one NestJS-envelope request to that stack, the reply printed |
//! | `cargo xtask deps` | installs (Debian, root) or names the system packages the worlds need |

mod chaos;
mod deps;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
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
    /// The contract suite, then the gate: today's wire against the released baseline
    /// (breaking changes refused unless the version is bumped and the changelog lists them) and
    /// every NestJS peer's expectations.
    Contract {
        /// Cut a new baseline from today's wire, with the version in contracts/VERSION.
        #[arg(long)]
        release: bool,
    },
    /// Regenerate contracts/asyncapi.json.
    Asyncapi,
    /// Build in release mode and run the simulator's default scenario (`e2e`) end to end.
    E2e {
        /// Arguments for `sim run e2e` (--seed, --out, --no-fsync).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build in release mode and run the simulator with these arguments.
    Sim {
        /// Arguments for `sim` (run SCENARIO --seed S, replay TRACE, compare A B, capacity, list).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every scenario for several seeds; fail on any invariant violation.
    Chaos {
        /// Seeds 1..=N.
        #[arg(long, default_value_t = 3)]
        seeds: u64,
        /// Only these scenarios (comma-separated; default: all built-in).
        #[arg(long, value_delimiter = ',')]
        scenarios: Vec<String>,
        /// Use the debug binaries (already built by `cargo test`) instead of a release build.
        #[arg(long)]
        debug: bool,
        /// Extra arguments for every `sim run` (e.g. --planted-bug skip-row-lock).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Criterion benches: the codec, and booking.create against the same SQL issued directly;
    /// prints the table (also in target/bench/create.md).
    Bench {
        /// Shorter measurement (for a quick look; the table says less).
        #[arg(long)]
        quick: bool,
    },
    /// Start the same stack in the foreground and print how to reach it.
    Up {
        /// Arguments for `sim up` (--replicas, --seed).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Send a NestJS-envelope request (or, with --event, an event) to the stack `up` started and
    /// print the reply: `cargo xtask req booking.search '{}'`.
    Req {
        /// Arguments for `sim req` (SUBJECT [JSON] [--event] [--server URL]).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Install (or print how to install) PostgreSQL and nats-server.
    Deps,
}

/// A command xtask ran that failed: its own output said why, so xtask adds one line and exits
/// with its status.
#[derive(Debug)]
struct ChildFailed {
    shown: String,
    code: i32,
}

impl std::fmt::Display for ChildFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} exited with status {}", self.shown, self.code)
    }
}

impl std::error::Error for ChildFailed {}

fn main() -> std::process::ExitCode {
    match xtask() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, never a backtrace: the failing command has printed its own story.
            eprintln!("xtask: {e:#}");
            let code = e.downcast_ref::<ChildFailed>().map_or(1, |c| c.code);
            std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    }
}

fn xtask() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = workspace_root()?;
    match cli.command {
        Cmd::Test { args } => test(&root, &args),
        Cmd::Contract { release: true } => {
            let version = contracts::compat::release(&root).map_err(anyhow::Error::msg)?;
            eprintln!(
                "xtask contract: {} is now the released contract {version}",
                contracts::compat::BASELINE
            );
            Ok(())
        }
        Cmd::Contract { release: false } => {
            // The gate first: its message names the subject, the field and why.
            contract_gate(&root)?;
            cargo(&root, &["test", "--package", "contracts"])
        }
        Cmd::Asyncapi => asyncapi(&root),
        Cmd::E2e { args } => {
            let mut all = vec!["run".to_owned(), "e2e".to_owned()];
            // Unless told otherwise, the plain run writes target/e2e and a variant (another
            // seed, a planted bug, fsync off) a folder of its own beside it.
            if !args.iter().any(|a| a == "--out" || a.starts_with("--out=")) {
                all.extend(["--out-root".to_owned(), "target/e2e".to_owned()]);
            }
            all.extend(args);
            sim(&root, &all)
        }
        Cmd::Sim { args } => sim(&root, &args),
        Cmd::Chaos {
            seeds,
            scenarios,
            debug,
            args,
        } => {
            let bin = build_stack(&root, !debug)?;
            chaos::run(&root, &bin, seeds, &scenarios, &args)
        }
        Cmd::Bench { quick } => bench(&root, quick),
        Cmd::Up { args } => {
            let mut all = vec!["up".to_owned()];
            all.extend(args);
            sim(&root, &all)
        }
        Cmd::Req { args } => {
            let mut all = vec!["req".to_owned()];
            all.extend(args);
            sim(&root, &all)
        }
        Cmd::Deps => deps::ensure(),
    }
}

/// Builds the stack's binaries (release, or debug) and returns the folder they are in.
///
/// Every binary of the workspace is built, not only the stack's: features are unified over the
/// packages a build selects, so a build of three packages compiled ring, rustls and async-nats
/// again after a plain `cargo build --release` (another feature set), and the other way round.
/// Selected like this, both builds share their artefacts.
fn build_stack(root: &Path, release: bool) -> anyhow::Result<PathBuf> {
    deps::ensure()?;
    let mut args = vec!["build", "--workspace", "--bins"];
    if release {
        args.push("--release");
    }
    eprintln!(
        "xtask: building the stack ({} binaries of the workspace)",
        if release { "release" } else { "debug" }
    );
    cargo(root, &args)?;
    Ok(target_dir(root).join(if release { "release" } else { "debug" }))
}

/// Builds the stack's binaries in release mode and runs `sim <args>`.
fn sim(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let bin = build_stack(root, true)?;
    run(Command::new(bin.join("sim")).args(args).current_dir(root))
}

/// Cargo's target folder: `CARGO_TARGET_DIR`, or `target/` in the workspace.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .context("xtask lives one level below the workspace root")
}

/// Runs `cargo <args>` in the workspace root, failing on a non-zero exit.
///
/// Without the variables `cargo run` set for xtask itself (`CARGO_PKG_*`, `CARGO_MANIFEST_*`,
/// `CARGO_CRATE_NAME`, `CARGO_BIN_NAME`, `CARGO_PRIMARY_PACKAGE`): seen by build scripts, they
/// made the inner build compile ring, rustls and async-nats again after a plain
/// `cargo build --release` had just compiled them, and the other way round.
fn cargo(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(args).current_dir(root);
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                name,
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
            )
        {
            cmd.env_remove(name);
        }
    }
    run(&mut cmd)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("$ {shown}");
    let status = cmd.status().with_context(|| format!("running {shown}"))?;
    if !status.success() {
        // Killed by a signal: the shell's convention, 128 + the signal.
        let code = status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt as _;
            128 + status.signal().unwrap_or(0)
        });
        return Err(ChildFailed { shown, code }.into());
    }
    Ok(())
}

/// The contract gate: every difference from the baseline, classified; fails on a breaking change
/// the version and changelog do not cover, and on an unmet peer expectation.
fn contract_gate(root: &Path) -> anyhow::Result<()> {
    use contracts::compat::{self, expect};
    let verdict = compat::check(root).map_err(anyhow::Error::msg)?;
    for change in &verdict.changes {
        eprintln!("xtask contract: {change}");
    }
    let mut failures = verdict.refused.clone();
    let peers = expect::load(root).map_err(anyhow::Error::msg)?;
    for peer in &peers {
        failures.extend(expect::verify(peer));
    }
    let counts = compat::summary(&verdict.changes);
    eprintln!(
        "xtask contract: {} breaking, {} compatible change(s) since the baseline; {} peer(s) verified",
        counts.get("breaking").unwrap_or(&0),
        counts.get("compatible").unwrap_or(&0),
        peers.len()
    );
    if failures.is_empty() {
        return Ok(());
    }
    for f in &failures {
        eprintln!("xtask contract: {f}");
    }
    anyhow::bail!("the contract gate refused {} change(s)", failures.len())
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
    // The Docker backend (Docker does not run here): it must build, lint clean and plan right.
    cargo(
        root,
        &[
            "clippy",
            "--package",
            "world",
            "--features",
            "containers",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    cargo(
        root,
        &[
            "test",
            "--package",
            "world",
            "--features",
            "containers",
            "--lib",
            "containers::",
        ],
    )?;
    contract_gate(root)?;
    let mut args = vec!["test", "--workspace"];
    args.extend(extra.iter().map(String::as_str));
    // Snapshots are never written during a check: a missing or changed one fails the run.
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(&args).current_dir(root);
    if std::env::var_os("INSTA_UPDATE").is_none() {
        cmd.env("INSTA_UPDATE", "no");
    }
    run(&mut cmd)?;
    // The short chaos suite, on the debug binaries `cargo test` has just built.
    if extra.is_empty() {
        chaos::run(
            root,
            &target_dir(root).join("debug"),
            CI_CHAOS_SEEDS,
            &[],
            &[],
        )?;
    }
    eprintln!("xtask test: formatting, lints, all tests and the short chaos suite passed");
    Ok(())
}

/// Seeds of every scenario that `cargo xtask test` (CI) runs.
const CI_CHAOS_SEEDS: u64 = 2;

/// `cargo xtask bench`: release binaries, then both criterion benches.
fn bench(root: &Path, quick: bool) -> anyhow::Result<()> {
    build_stack(root, true)?;
    cargo(root, &["bench", "-p", "benches", "--bench", "codec"])?;
    let mut args = vec!["bench", "-p", "benches", "--bench", "create"];
    if quick {
        args.extend(["--", "--quick"]);
    }
    cargo(root, &args)
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
