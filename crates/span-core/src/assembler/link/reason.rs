//! Why a span has (or has not) a parent: the value of `zt.link.reason`.
//!
//! **Invariant:** every span leaves the assembler with exactly one
//! `LinkReason`, and the reasons that draw a parent edge
//! ([`LinkReason::is_parent_edge`]) are only ever set by a rule that proved
//! the edge (or, for [`LinkReason::InferredSingleRequest`], by the user's
//! explicit opt-in).

use serde::{Deserialize, Serialize};
use std::fmt;

/// How a span was linked; `as_str()` is the `zt.link.reason` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkReason {
    /// A server span no rule linked (no caller seen on this host).
    Root,
    /// An inbound W3C `traceparent` header named the parent.
    Traceparent,
    /// The client span whose request's first byte has the same TCP sequence
    /// number (or TLS plaintext offset) on the mirrored 4-tuple.
    TcpSeq,
    /// The single request open on the thread that made the call.
    Thread,
    /// The request whose response was written in the call's execution
    /// context (a CPython `contextvars.Context`).
    Context,
    /// The inbound request whose `x-request-id` (or `traceparent` trace
    /// id) the call carries: the one open request of its process with that
    /// id (rule `forward`).
    ForwardedId,
    /// The inbound request a proxy forwards: the one open request of the
    /// proxy with the same head (method, target, headers proxies pass on).
    ForwardedHead,
    /// The only request in flight in the process, promoted to a parent by
    /// `Config::promote_inferred_links`.
    InferredSingleRequest,
    /// A call made by a process that serves no request.
    RootNoOpenRequest,
    /// A call made on a thread that had two requests open at once (an event
    /// loop, pipelining).
    UnlinkedThreadAmbiguous,
    /// A call made while the process serves requests on other threads.
    UnlinkedRequestServedOnOtherThread,
    /// A call whose context's response write carried several responses.
    UnlinkedContextAmbiguous,
    /// A call made inside an execution context that named no request.
    UnlinkedContextUnproven,
    /// A call made by a runtime that multiplexes tasks over threads (Go,
    /// tokio, Node.js).
    UnlinkedMultiplexedRuntime,
    /// A call made by a process whose runtime is unknown (its details were
    /// never read).
    UnlinkedRuntimeUnknown,
    /// A call whose forwarded identity (request id, trace id, or, in a
    /// proxy, head) two or more open inbound requests share, or whose ids
    /// name different requests.
    UnlinkedForwardAmbiguous,
    /// A proxy's call that forwards no open inbound request it could be
    /// matched to (ids rewritten, head rewritten, or its own request).
    UnlinkedForwardUnmatched,
    /// The request the call's goroutine, or the goroutine that created it
    /// for a fan-out, was serving (the `task` rule).
    Task,
    /// A goroutine's call whose ancestry was serving more than one request
    /// (pipelining, a goroutine serving several connections).
    UnlinkedTaskAmbiguous,
    /// A goroutine's call the `task` rule could not prove (no request
    /// served by its ancestry, a goroutine that outlived the request, a
    /// response written by another goroutine).
    UnlinkedTaskUnproven,
}

impl LinkReason {
    /// Every reason, in declaration order (`reason as usize` indexes it).
    pub const ALL: [LinkReason; 20] = [
        LinkReason::Root,
        LinkReason::Traceparent,
        LinkReason::TcpSeq,
        LinkReason::Thread,
        LinkReason::Context,
        LinkReason::ForwardedId,
        LinkReason::ForwardedHead,
        LinkReason::InferredSingleRequest,
        LinkReason::RootNoOpenRequest,
        LinkReason::UnlinkedThreadAmbiguous,
        LinkReason::UnlinkedRequestServedOnOtherThread,
        LinkReason::UnlinkedContextAmbiguous,
        LinkReason::UnlinkedContextUnproven,
        LinkReason::UnlinkedMultiplexedRuntime,
        LinkReason::UnlinkedRuntimeUnknown,
        LinkReason::UnlinkedForwardAmbiguous,
        LinkReason::UnlinkedForwardUnmatched,
        LinkReason::Task,
        LinkReason::UnlinkedTaskAmbiguous,
        LinkReason::UnlinkedTaskUnproven,
    ];
    /// Number of reasons.
    pub const COUNT: usize = Self::ALL.len();

    /// The `zt.link.reason` attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkReason::Root => "root",
            LinkReason::Traceparent => "traceparent",
            LinkReason::TcpSeq => "tcp_seq",
            LinkReason::Thread => "thread",
            LinkReason::Context => "context",
            LinkReason::ForwardedId => "forwarded_id",
            LinkReason::ForwardedHead => "forwarded_head",
            LinkReason::InferredSingleRequest => "inferred_single_request",
            LinkReason::RootNoOpenRequest => "root_no_open_request",
            LinkReason::UnlinkedThreadAmbiguous => "unlinked_thread_ambiguous",
            LinkReason::UnlinkedRequestServedOnOtherThread => {
                "unlinked_request_served_on_other_thread"
            }
            LinkReason::UnlinkedContextAmbiguous => "unlinked_context_ambiguous",
            LinkReason::UnlinkedContextUnproven => "unlinked_context_unproven",
            LinkReason::UnlinkedMultiplexedRuntime => "unlinked_multiplexed_runtime",
            LinkReason::UnlinkedRuntimeUnknown => "unlinked_runtime_unknown",
            LinkReason::UnlinkedForwardAmbiguous => "unlinked_forward_ambiguous",
            LinkReason::UnlinkedForwardUnmatched => "unlinked_forward_unmatched",
            LinkReason::Task => "task",
            LinkReason::UnlinkedTaskAmbiguous => "unlinked_task_ambiguous",
            LinkReason::UnlinkedTaskUnproven => "unlinked_task_unproven",
        }
    }

    /// The reason named `s` (the inverse of [`LinkReason::as_str`]).
    pub fn from_name(s: &str) -> Option<LinkReason> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether a rule with this reason gives the span a parent.
    pub fn is_parent_edge(self) -> bool {
        matches!(
            self,
            LinkReason::Traceparent
                | LinkReason::TcpSeq
                | LinkReason::Thread
                | LinkReason::Context
                | LinkReason::ForwardedId
                | LinkReason::ForwardedHead
                | LinkReason::Task
                | LinkReason::InferredSingleRequest
        )
    }
}

impl fmt::Display for LinkReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_indexed_by_the_discriminant_and_names_are_unique() {
        for (i, r) in LinkReason::ALL.into_iter().enumerate() {
            assert_eq!(r as usize, i);
            assert_eq!(LinkReason::from_name(r.as_str()), Some(r));
            // serde spells it as the attribute does.
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        let mut names: Vec<_> = LinkReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), LinkReason::COUNT);
    }
}
