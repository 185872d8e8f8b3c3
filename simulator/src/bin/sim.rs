//! `sim`: the simulator's command line. For now `e2e` (the default scenario behind
//! `cargo xtask e2e`) and `up` (the same stack, left running for manual use).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use simulator::e2e::{self, E2eOptions};
use simulator::stack::{Stack, StackOptions};

#[derive(Parser)]
#[command(name = "sim", about = "Park-golf booking simulator")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the whole stack with the default workload and check the invariants.
    E2e {
        /// Seed of the catalogue and the workload.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Concurrent clients.
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// Operations in all.
        #[arg(long, default_value_t = 4000)]
        operations: usize,
        /// booking-service replicas.
        #[arg(long, default_value_t = 2)]
        replicas: usize,
        /// Output directory.
        #[arg(long, default_value = "target/e2e")]
        out: PathBuf,
    },
    /// Start the stack and keep it running until Ctrl-C.
    Up {
        /// booking-service replicas.
        #[arg(long, default_value_t = 1)]
        replicas: usize,
        /// Seed of the stub's catalogue.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sim: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Cmd::E2e {
            seed,
            clients,
            operations,
            replicas,
            out,
        } => {
            let options = E2eOptions {
                seed,
                clients,
                operations,
                replicas,
                out: out.clone(),
            };
            let summary = e2e::run(&options).await?;
            println!("{}", summary.render());
            println!("written to {}/summary.md and summary.json", out.display());
            if summary.passed() {
                Ok(std::process::ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "invariant violated; reproduce with: cargo xtask e2e --seed {seed} --clients {clients} \
                     --operations {operations} --replicas {replicas}"
                );
                Ok(std::process::ExitCode::FAILURE)
            }
        }
        Cmd::Up { replicas, seed } => {
            let logs = PathBuf::from("target/up");
            let stack = Stack::start(
                &StackOptions {
                    replicas,
                    seed,
                    ..StackOptions::default()
                },
                &logs,
            )
            .await?;
            println!(
                "stack is up ({} booking-service replica(s), course-stub seed {seed}):",
                replicas
            );
            println!("  NATS_URL={}", stack.world.nats_url());
            println!("  DATABASE_URL={}", stack.db.url());
            println!("  logs: {}", logs.display());
            println!(
                "  try: nats req booking.search '{{}}' --server {}",
                stack.world.nats_url()
            );
            println!("Ctrl-C stops everything.");
            tokio::signal::ctrl_c().await?;
            drop(stack);
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
