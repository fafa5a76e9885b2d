//! `cargo xtask bench api`.

use anyhow::{bail, Result};

/// Runs the benchmark.
pub fn run(_args: &[String]) -> Result<()> {
    bail!("bench api is not written yet")
}
