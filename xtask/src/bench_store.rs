//! `cargo xtask bench store`.

use anyhow::{bail, Result};

/// Runs the benchmark.
pub fn run(_args: &[String]) -> Result<()> {
    bail!("bench store is not written yet")
}
