//! The full-screen terminal UI loop: refresh the data, draw, handle keys.
//! The terminal is restored on quit, on panic (ratatui's hook) and on
//! SIGTERM/SIGINT/SIGHUP (a flag the loop checks).

use super::app::App;
use super::data::Feed;
use super::ui::draw;
use ratatui::crossterm::event::{self, Event, KeyEventKind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the data is pulled from the pipeline.
const REFRESH: Duration = Duration::from_millis(500);
/// Longest wait for a key before redrawing.
const INPUT_POLL: Duration = Duration::from_millis(100);

pub fn run(feed: &mut Feed, duration: Option<Duration>, stop: &AtomicBool) -> anyhow::Result<()> {
    // Debug builds only: a panic injected after this many ms, so a test can
    // check that the panic hook restores the terminal.
    #[cfg(debug_assertions)]
    let panic_after = std::env::var("ZT_TEST_DASHBOARD_PANIC_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis);
    let mut terminal = ratatui::init();
    let result = (|| -> anyhow::Result<()> {
        let started = Instant::now();
        let mut app = App::new(feed.data());
        let mut refreshed = Instant::now();
        while !app.quit && !stop.load(Ordering::Relaxed) {
            if duration.is_some_and(|d| started.elapsed() >= d) {
                break;
            }
            #[cfg(debug_assertions)]
            if panic_after.is_some_and(|d| started.elapsed() >= d) {
                panic!("ZT_TEST_DASHBOARD_PANIC_MS: a panic injected by a test");
            }
            if refreshed.elapsed() >= REFRESH {
                app.update(feed.data());
                refreshed = Instant::now();
            }
            terminal.draw(|f| draw(f, &app))?;
            if event::poll(INPUT_POLL)? {
                if let Event::Key(key) = event::read()? {
                    if key.kind == KeyEventKind::Press {
                        let ring = feed.recent().clone();
                        app.on_key(key, &|id| ring.get(id));
                    }
                }
            }
        }
        Ok(())
    })();
    ratatui::restore();
    result
}
