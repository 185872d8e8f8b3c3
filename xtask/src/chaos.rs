//! `cargo xtask chaos`: every built-in scenario for seeds 1..=N, each a separate `sim run` with its
//! own world, then one table of verdicts. Any violation or failed threshold fails the command and
//! prints the command that reproduces that run.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context as _};

/// The built-in scenarios, as `sim list` prints them.
fn scenarios(sim: &Path) -> anyhow::Result<Vec<String>> {
    let out = Command::new(sim)
        .arg("list")
        .output()
        .with_context(|| format!("running {} list", sim.display()))?;
    if !out.status.success() {
        bail!("sim list failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect())
}

/// Runs the suite.
pub fn run(
    root: &Path,
    bin: &Path,
    seeds: u64,
    only: &[String],
    extra: &[String],
) -> anyhow::Result<()> {
    let sim = bin.join("sim");
    let names = if only.is_empty() {
        scenarios(&sim)?
    } else {
        only.to_vec()
    };
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for name in &names {
        for seed in 1..=seeds {
            let out = format!("target/chaos/{name}-seed{seed}");
            let t = Instant::now();
            eprintln!("chaos: {name} seed {seed} …");
            let output = Command::new(&sim)
                .args(["run", name, "--seed", &seed.to_string(), "--out", &out])
                .args(extra)
                .current_dir(root)
                .output()
                .with_context(|| format!("running sim for {name}"))?;
            let passed = output.status.success();
            let took = t.elapsed().as_secs_f64();
            rows.push(format!(
                "| {name} | {seed} | {} | {took:.1} s | {out}/index.html |",
                if passed { "passed" } else { "FAILED" }
            ));
            if !passed {
                let stdout = String::from_utf8_lossy(&output.stdout);
                let stderr = String::from_utf8_lossy(&output.stderr);
                let verdicts: Vec<&str> = stdout
                    .lines()
                    .filter(|l| l.contains("VIOLATED") || l.contains("BREACHED"))
                    .collect();
                eprintln!("{}\n{}", verdicts.join("\n"), stderr.trim());
                failures.push(format!(
                    "{name} seed {seed}: reproduce with `cargo xtask sim run {name} --seed {seed}{}`",
                    extra.iter().map(|a| format!(" {a}")).collect::<String>()
                ));
            }
        }
    }
    println!("| scenario | seed | verdict | time | report |\n|---|---:|---|---:|---|");
    for r in &rows {
        println!("{r}");
    }
    println!(
        "\n{} runs in {:.0} s, {} failed",
        rows.len(),
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("chaos: {f}");
        }
        bail!("{} chaos run(s) failed", failures.len());
    }
    Ok(())
}
