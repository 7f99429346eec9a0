//! Scenario `caps`: arrives with the capabilities crate.

use anyhow::Result;

use crate::Options;
use crate::report::Figure;

/// Runs the scenario.
pub(crate) fn run(_opts: &Options) -> Result<Vec<Figure>> {
    Ok(Vec::new())
}
