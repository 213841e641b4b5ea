//! `zt-trace dashboard` (alias `top`): the live view of what the tracer
//! sees — recent traces, the service graph, slow endpoints and
//! performance insights — as a full-screen terminal UI, or as a text
//! report every few seconds when stdout is not a terminal (`--plain`).
//!
//! Layout of the code (after ratatui's demo2 example): [`data`] pulls
//! everything a frame shows from the running pipeline in one go,
//! [`app::App`] is the one state struct and handles input, [`ui`] draws it
//! (a function per panel), [`tui`] runs the loop, [`plain`] writes the
//! text report.

pub mod app;
pub mod data;
pub mod plain;
#[cfg(test)]
mod tests;
pub mod tui;
pub mod ui;

use crate::settings::Settings;
use anyhow::{Context, Result};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// SIGINT, SIGTERM and SIGHUP set the returned flag (the UI loop and the
/// plain loop watch it, then restore the terminal and stop cleanly).
pub fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    Ok(stop)
}

/// Run the dashboard: live (root), or replaying `from`.
pub fn dashboard(s: &Settings, from: Option<&Path>, plain: bool) -> Result<()> {
    let stop = stop_flag()?;
    let mut feed = data::Feed::start(s, from)?;
    let shown = show(&mut feed, s, plain, &stop);
    let stats = feed.shutdown()?;
    crate::run::print_summary(&stats);
    shown
}

/// Show `feed`: the full-screen UI, or the plain report when `plain` or
/// stdout is not a terminal; until quit, a signal, `--duration`, or (plain)
/// the end of a replay.
pub fn show(feed: &mut data::Feed, s: &Settings, plain: bool, stop: &AtomicBool) -> Result<()> {
    let duration = s.output.duration_s.map(Duration::from_secs_f64);
    if plain || !std::io::stdout().is_terminal() {
        plain::run(
            feed,
            Duration::from_secs_f64(s.dashboard.interval_s),
            duration,
            stop,
        )
    } else {
        tui::run(feed, duration, stop)
    }
}
