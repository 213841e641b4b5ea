//! Bounded reorder window: events from different CPUs reach user space
//! slightly out of order; they are released in timestamp order once the
//! watermark (latest time seen minus the window) passes them.
//!
//! **Invariant:** events leave in non-decreasing `order_ts` (stable for
//! equal ones) except those that arrive after a later one has left (counted
//! in `late`); at most `capacity` are held: past it the oldest leaves early
//! (counted in `forced`).

use crate::event::{Event, MonoNanos};
use std::collections::VecDeque;

struct Item {
    ts: MonoNanos,
    event: Event,
}

/// Events sorted by timestamp (stable for equal ones). Input is nearly
/// sorted (one ring buffer, per-CPU skew), so insertion scans back from the
/// end a few places at most: amortised O(1), and events are moved once.
pub(crate) struct Reorder {
    items: VecDeque<Item>,
    window: u64,
    capacity: usize,
    /// Timestamp of the last released event.
    released_ts: MonoNanos,
    /// Events that arrived after events with a later timestamp were released.
    pub(crate) late: u64,
    /// Events released early because the window was full.
    pub(crate) forced: u64,
}

impl Reorder {
    pub(crate) fn new(window: u64, capacity: usize) -> Self {
        Reorder {
            items: VecDeque::new(),
            window,
            capacity: capacity.max(1),
            released_ts: 0,
            late: 0,
            forced: 0,
        }
    }

    pub(crate) fn push(&mut self, event: Event) {
        let ts = event.order_ts();
        if ts < self.released_ts {
            self.late += 1;
        }
        let mut at = self.items.len();
        while at > 0 && self.items[at - 1].ts > ts {
            at -= 1;
        }
        self.items.insert(at, Item { ts, event });
    }

    /// Next event that may be processed at time `now`.
    pub(crate) fn pop_ready(&mut self, now: MonoNanos) -> Option<Event> {
        let watermark = now.saturating_sub(self.window);
        let top = self.items.front()?;
        let over = self.items.len() > self.capacity;
        if top.ts <= watermark || over {
            if over && top.ts > watermark {
                self.forced += 1;
            }
            let item = self.items.pop_front()?;
            self.released_ts = self.released_ts.max(item.ts);
            Some(item.event)
        } else {
            None
        }
    }

    /// Next event regardless of time (end of input).
    pub(crate) fn pop_any(&mut self) -> Option<Event> {
        let item = self.items.pop_front()?;
        self.released_ts = self.released_ts.max(item.ts);
        Some(item.event)
    }

    /// When the oldest held event becomes ready.
    pub(crate) fn next_ready_at(&self) -> Option<MonoNanos> {
        self.items.front().map(|i| i.ts.saturating_add(self.window))
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Give back what a backlog grew the buffer to (see
    /// [`crate::assembler`]'s periodic sweep).
    pub(crate) fn shrink(&mut self) {
        crate::shrink::deque(&mut self.items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(pid: u32, ts: u64) -> Event {
        Event::ProcessExit { pid, ts }
    }

    #[test]
    fn releases_in_timestamp_order_after_the_window() {
        let mut r = Reorder::new(10, 100);
        r.push(exit(1, 105));
        r.push(exit(2, 100));
        r.push(exit(3, 120));
        assert!(r.pop_ready(109).is_none());
        assert_eq!(r.pop_ready(115).map(|e| e.pid()), Some(2));
        assert_eq!(r.pop_ready(115).map(|e| e.pid()), Some(1));
        assert!(r.pop_ready(115).is_none());
        assert_eq!(r.next_ready_at(), Some(130));
        r.push(exit(4, 90));
        assert_eq!(r.late, 1);
        assert_eq!(r.pop_any().map(|e| e.pid()), Some(4));
    }

    #[test]
    fn bounded() {
        let mut r = Reorder::new(1_000, 2);
        for i in 0..3 {
            r.push(exit(i, 500 + i as u64));
        }
        assert_eq!(r.pop_ready(0).map(|e| e.pid()), Some(0));
        assert_eq!(r.forced, 1);
        assert!(r.pop_ready(0).is_none());
        assert_eq!(r.len(), 2);
    }
}
