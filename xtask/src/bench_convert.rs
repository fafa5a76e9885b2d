//! `cargo xtask bench convert`.

use anyhow::{bail, Result};

/// Runs the benchmark.
pub fn run(_args: &[String]) -> Result<()> {
    bail!("bench convert is not written yet")
}
