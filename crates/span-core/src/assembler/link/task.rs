//! The `task` linking rule: calls made by goroutines (Go), linked through
//! the goroutine that serves a request and the goroutines it creates.
//!
//! The capture layer tags every data event of a Go process with a task
//! (one per goroutine, never reused) and reports when tasks start (with
//! their creator) and end. Go's HTTP/1 server (`net/http`) serves each
//! connection on one goroutine that reads a request, runs the handler and
//! writes the response, one request at a time; handlers fan work out to
//! goroutines they create and wait for.
//!
//! **Premises** (see ARCHITECTURE.md, "Linking"):
//! 1. A task that read bytes of request X while busy with nothing else (no
//!    other request read and unanswered, its last response fully written)
//!    and then writes X's response head served only X in between. Only
//!    HTTP/1 server spans take part: an HTTP/2 server writes every
//!    stream's frames from one goroutine (net/http's serverConn, gRPC-Go's
//!    loopy writer), so there the writer proves nothing.
//! 2. A task created by the task serving X, while it served X, that ended
//!    before X's response head was written, with every task between them
//!    ended no earlier than the task it created (joined), worked for X: a
//!    fan-out the handler waited for. Tasks that outlive the request
//!    (connection pools, lazily started workers, gRPC's transport
//!    goroutines), or that outlive the task that created them (a dialer
//!    starting a connection's writer loop), never link this way, whoever
//!    created them. Broken by: a goroutine the serving goroutine creates
//!    directly that does other requests' work and ends before X is
//!    answered (a connection writer created for X, reused by another
//!    request and closed while X is still open); net/http's HTTP/1 client
//!    is covered by the hand-off probes (its writes carry the caller).
//!
//! A call is evaluated at its start: at each level k of its ancestry
//! (k = 0: the task that made it; k >= 1: the creator of level k-1 at the
//! moment it created it), the one request that task was serving, if any.
//! Exactly one request over all levels, confirmed when its response head
//! is written by the task of that level (and, for k >= 1, with levels
//! 0..k-1 ended by then), is the call's parent. A level whose task was
//! reading two requests (pipelining) or serves several connections at
//! once makes the call ambiguous; nothing is ever guessed.

use crate::event::MonoNanos;
use crate::span::SpanId;
use hashbrown::HashMap;
use std::collections::VecDeque;

/// Ancestry levels looked at (0 = the calling task itself).
pub(crate) const MAX_LEVELS: usize = 4;
/// Tasks remembered (oldest forgotten first: their descendants lose
/// levels, never gain wrong ones).
const MAX_TASKS: usize = 262_144;
/// Calls waiting on one request.
const MAX_WAITERS: usize = 4096;

type TaskKey = (u32, u64);

/// What a task was doing at some moment, as far as requests go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Serving {
    Nothing,
    One(SpanId),
    /// Two requests read and unanswered, or a task that serves several
    /// connections at once.
    Ambiguous,
}

#[derive(Clone, Copy, Debug)]
struct Read {
    span: SpanId,
    conn: u64,
    /// Read while the task was busy with another request.
    tainted: bool,
}

#[derive(Debug, Default)]
struct TaskState {
    parent: u64,
    end: Option<MonoNanos>,
    /// HTTP/1 requests whose bytes this task read, response head not yet
    /// written.
    reading: Vec<Read>,
    /// The last response whose head this task wrote.
    wrote: Option<SpanId>,
    /// Read or wrote requests of two connections at once: an event loop.
    multiplexed: bool,
    /// What the creator was serving when it created this task.
    at_birth: Option<Serving>,
}

impl TaskState {
    fn serving(&self) -> Serving {
        if self.multiplexed {
            return Serving::Ambiguous;
        }
        match self.reading.as_slice() {
            [] => Serving::Nothing,
            [r] if !r.tainted => Serving::One(r.span),
            _ => Serving::Ambiguous,
        }
    }
}

/// Where a call stands after its start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Waits for this request's response head.
    Wait(SpanId),
    Ambiguous,
    /// No task of its ancestry was serving a request, or the one it was
    /// has already been answered.
    Unproven,
}

struct Waiter {
    call: SpanId,
    /// Tasks of levels 0..=k (k: the deepest level naming the request).
    chain: Vec<u64>,
    /// Levels whose task was serving the request.
    levels: Vec<usize>,
}

/// State of the rule: tasks, who read which open request, and calls
/// waiting for a response head.
#[derive(Default)]
pub(crate) struct TaskLinker {
    tasks: HashMap<TaskKey, TaskState>,
    order: VecDeque<TaskKey>,
    /// Open HTTP/1 server spans -> (pid, tasks that read their request).
    readers: HashMap<SpanId, (u32, Vec<u64>)>,
    waiting: HashMap<SpanId, Vec<Waiter>>,
    pub(crate) tasks_evicted: u64,
}

impl TaskLinker {
    fn state(&mut self, pid: u32, task: u64) -> &mut TaskState {
        if !self.tasks.contains_key(&(pid, task)) {
            self.insert(pid, task, TaskState::default());
        }
        self.tasks.entry((pid, task)).or_default()
    }

    fn insert(&mut self, pid: u32, task: u64, st: TaskState) {
        while self.tasks.len() >= MAX_TASKS {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if self.tasks.remove(&old).is_some() {
                self.tasks_evicted += 1;
            }
        }
        if self.tasks.insert((pid, task), st).is_none() {
            self.order.push_back((pid, task));
        }
    }

    /// Task `task` of `pid` was created by `parent` (0: unknown).
    pub(crate) fn started(&mut self, pid: u32, task: u64, parent: u64) {
        let at_birth = match self.tasks.get(&(pid, parent)) {
            Some(p) if parent != 0 => Some(p.serving()),
            _ => None,
        };
        self.insert(
            pid,
            task,
            TaskState {
                parent,
                at_birth,
                ..Default::default()
            },
        );
    }

    pub(crate) fn ended(&mut self, pid: u32, task: u64, ts: MonoNanos) {
        if let Some(t) = self.tasks.get_mut(&(pid, task)) {
            t.end = Some(ts);
        }
    }

    /// The head of HTTP/1 request `span` (connection `conn`) was read, by
    /// `tasks` (the tasks of the reads that carried it). `ended` says
    /// whether a span's response is complete.
    pub(crate) fn request_read(
        &mut self,
        pid: u32,
        span: SpanId,
        conn: u64,
        tasks: &[u64],
        ended: impl Fn(SpanId) -> bool,
    ) {
        let mut who = Vec::new();
        for &task in tasks {
            if task == 0 || who.contains(&task) {
                continue;
            }
            who.push(task);
            let t = self.state(pid, task);
            let busy = !t.reading.is_empty() || t.wrote.is_some_and(|w| !ended(w));
            if t.reading.iter().any(|r| r.conn != conn) {
                t.multiplexed = true;
            }
            if t.reading.len() < 16 {
                t.reading.push(Read {
                    span,
                    conn,
                    tainted: busy,
                });
            } else {
                t.multiplexed = true;
            }
        }
        if !who.is_empty() {
            self.readers.insert(span, (pid, who));
        }
    }

    /// A call started by `task` of `pid`: what its ancestry was serving.
    /// A `Wait` registers the call until the request's response head.
    pub(crate) fn call(&mut self, pid: u32, call: SpanId, task: u64) -> Verdict {
        let mut found: Option<SpanId> = None;
        let mut levels = Vec::new();
        let mut chain = Vec::new();
        let mut cur = task;
        // Level 0: what the task serves now; level k: what its creator
        // (the task of level k) served when it created level k-1.
        let mut what = self.tasks.get(&(pid, cur)).map(TaskState::serving);
        for level in 0..MAX_LEVELS {
            let Some(serving) = what else { break };
            chain.push(cur);
            match serving {
                Serving::Nothing => {}
                Serving::Ambiguous => return Verdict::Ambiguous,
                Serving::One(x) => match found {
                    Some(f) if f != x => return Verdict::Ambiguous,
                    _ => {
                        found = Some(x);
                        levels.push(level);
                    }
                },
            }
            let Some(t) = self.tasks.get(&(pid, cur)) else {
                break;
            };
            if t.parent == 0 {
                break;
            }
            what = t.at_birth;
            cur = t.parent;
            if !self.tasks.contains_key(&(pid, cur)) {
                break;
            }
        }
        let Some(x) = found else {
            return Verdict::Unproven;
        };
        // Answered already: nothing can confirm it any more.
        if !self.readers.contains_key(&x) {
            return Verdict::Unproven;
        }
        let deepest = levels.last().copied().unwrap_or(0);
        chain.truncate(deepest + 1);
        let w = self.waiting.entry(x).or_default();
        if w.len() >= MAX_WAITERS {
            return Verdict::Unproven;
        }
        w.push(Waiter {
            call,
            chain,
            levels,
        });
        Verdict::Wait(x)
    }

    /// `writer` of `pid` wrote the response head of HTTP/1 request `span`
    /// at `at`. Returns the waiting calls, each with whether it is proven
    /// to be the request's.
    pub(crate) fn response_head(
        &mut self,
        pid: u32,
        span: SpanId,
        writer: u64,
        at: MonoNanos,
    ) -> Vec<(SpanId, bool)> {
        if let Some((p, who)) = self.readers.remove(&span) {
            for task in who {
                if let Some(t) = self.tasks.get_mut(&(p, task)) {
                    t.reading.retain(|r| r.span != span);
                }
            }
        }
        if writer != 0 {
            let t = self.state(pid, writer);
            // Writing a response while reading other requests: a task
            // that serves several at once.
            if t.reading.iter().any(|r| r.span != span) {
                t.multiplexed = true;
            }
            t.wrote = Some(span);
        }
        let Some(waiters) = self.waiting.remove(&span) else {
            return Vec::new();
        };
        waiters
            .into_iter()
            .map(|w| {
                let end = |t: &u64| self.tasks.get(&(pid, *t)).and_then(|s| s.end);
                let proven = writer != 0
                    && w.levels.iter().any(|&k| {
                        if w.chain.get(k) != Some(&writer) {
                            return false;
                        }
                        // Levels 0..k ended by the response, each no later
                        // than its creator (joined, as a fan-out is: a
                        // dialer that starts a connection's writer and
                        // returns is not).
                        let mut last = 0;
                        w.chain[..k].iter().all(|t| match end(t) {
                            Some(e) if e >= last && e <= at => {
                                last = e;
                                true
                            }
                            _ => false,
                        })
                    });
                (w.call, proven)
            })
            .collect()
    }

    /// `span` ended or was dropped without a response head from a task:
    /// its waiting calls are unproven.
    pub(crate) fn span_gone(&mut self, span: SpanId) -> Vec<SpanId> {
        if let Some((p, who)) = self.readers.remove(&span) {
            for task in who {
                if let Some(t) = self.tasks.get_mut(&(p, task)) {
                    t.reading.retain(|r| r.span != span);
                }
            }
        }
        self.waiting
            .remove(&span)
            .map(|w| w.into_iter().map(|w| w.call).collect())
            .unwrap_or_default()
    }

    /// Process `pid` is gone.
    pub(crate) fn process_gone(&mut self, pid: u32) {
        self.tasks.retain(|(p, _), _| *p != pid);
        self.order.retain(|(p, _)| *p != pid);
    }

    #[cfg(test)]
    pub(crate) fn tasks(&self) -> usize {
        self.tasks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(n: u64) -> SpanId {
        SpanId(n)
    }

    #[test]
    fn level_zero_and_fan_out() {
        let mut l = TaskLinker::default();
        let (conn_g, fan) = (10, 11);
        l.started(1, conn_g, 0);
        l.request_read(1, sid(100), 7, &[conn_g], |_| true);
        // The handler calls, and creates a fan-out task that calls too.
        assert_eq!(l.call(1, sid(1), conn_g), Verdict::Wait(sid(100)));
        l.started(1, fan, conn_g);
        assert_eq!(l.call(1, sid(2), fan), Verdict::Wait(sid(100)));
        l.ended(1, fan, 50);
        let got = l.response_head(1, sid(100), conn_g, 60);
        assert_eq!(got, vec![(sid(1), true), (sid(2), true)]);
        // After the response: the same task serves nothing.
        assert_eq!(l.call(1, sid(3), conn_g), Verdict::Unproven);
    }

    #[test]
    fn a_creation_that_outlives_the_request_proves_nothing() {
        let mut l = TaskLinker::default();
        l.started(1, 10, 0);
        l.request_read(1, sid(100), 7, &[10], |_| true);
        l.started(1, 20, 10); // a pool worker created lazily during the request
        assert_eq!(l.call(1, sid(1), 20), Verdict::Wait(sid(100)));
        // Still running when the response is written: unproven.
        assert_eq!(l.response_head(1, sid(100), 10, 60), vec![(sid(1), false)]);
        // Later calls of the worker: the request was answered.
        assert_eq!(l.call(1, sid(2), 20), Verdict::Unproven);
    }

    #[test]
    fn a_task_that_outlives_its_creator_is_not_a_fan_out() {
        let mut l = TaskLinker::default();
        l.started(1, 10, 0);
        l.request_read(1, sid(100), 7, &[10], |_| true);
        l.started(1, 20, 10); // a dialer
        l.started(1, 30, 20); // the connection's writer, started by the dialer
        l.ended(1, 20, 40); // the dialer returns
        assert_eq!(l.call(1, sid(1), 30), Verdict::Wait(sid(100)));
        l.ended(1, 30, 50); // the connection closes before the response
        assert_eq!(l.response_head(1, sid(100), 10, 60), vec![(sid(1), false)]);
        // Joined: the creator outlives its child.
        l.request_read(1, sid(101), 7, &[10], |_| true);
        l.started(1, 21, 10);
        l.started(1, 31, 21);
        assert_eq!(l.call(1, sid(2), 31), Verdict::Wait(sid(101)));
        l.ended(1, 31, 70);
        l.ended(1, 21, 71);
        assert_eq!(l.response_head(1, sid(101), 10, 80), vec![(sid(2), true)]);
    }

    #[test]
    fn pipelined_requests_are_ambiguous() {
        let mut l = TaskLinker::default();
        l.started(1, 10, 0);
        l.request_read(1, sid(100), 7, &[10], |_| true);
        l.request_read(1, sid(101), 7, &[10], |_| true);
        assert_eq!(l.call(1, sid(1), 10), Verdict::Ambiguous);
        l.response_head(1, sid(100), 10, 5);
        // The second was read while the first was open: still no proof.
        assert_eq!(l.call(1, sid(2), 10), Verdict::Ambiguous);
    }

    #[test]
    fn a_request_read_while_a_response_streams_is_tainted() {
        let mut l = TaskLinker::default();
        l.started(1, 10, 0);
        l.request_read(1, sid(100), 7, &[10], |_| true);
        l.response_head(1, sid(100), 10, 5);
        // Response 100 still being written when 101 is read.
        l.request_read(1, sid(101), 7, &[10], |s| s != sid(100));
        assert_eq!(l.call(1, sid(1), 10), Verdict::Ambiguous);
    }

    #[test]
    fn a_task_serving_two_connections_is_never_proof() {
        let mut l = TaskLinker::default();
        l.started(1, 10, 0);
        l.request_read(1, sid(100), 7, &[10], |_| true);
        l.request_read(1, sid(200), 8, &[10], |_| true);
        l.response_head(1, sid(100), 10, 5);
        l.response_head(1, sid(200), 10, 6);
        l.request_read(1, sid(300), 7, &[10], |_| true);
        assert_eq!(l.call(1, sid(1), 10), Verdict::Ambiguous);
    }

    #[test]
    fn response_written_by_another_task_proves_nothing() {
        let mut l = TaskLinker::default();
        l.started(1, 10, 0);
        l.request_read(1, sid(100), 7, &[10], |_| true);
        assert_eq!(l.call(1, sid(1), 10), Verdict::Wait(sid(100)));
        assert_eq!(l.response_head(1, sid(100), 99, 5), vec![(sid(1), false)]);
    }

    #[test]
    fn two_levels_naming_two_requests_are_ambiguous() {
        let mut l = TaskLinker::default();
        l.started(1, 10, 0);
        l.request_read(1, sid(100), 7, &[10], |_| true);
        l.started(1, 20, 10);
        // The created task serves a request of its own.
        l.request_read(1, sid(200), 8, &[20], |_| true);
        assert_eq!(l.call(1, sid(1), 20), Verdict::Ambiguous);
    }

    #[test]
    fn tables_are_bounded_and_processes_forgotten() {
        let mut l = TaskLinker::default();
        for t in 1..=(MAX_TASKS as u64 + 10) {
            l.started(2, t, t - 1);
        }
        assert_eq!(l.tasks(), MAX_TASKS);
        assert_eq!(l.tasks_evicted, 10);
        l.process_gone(2);
        assert_eq!(l.tasks(), 0);
    }
}
