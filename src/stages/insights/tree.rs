//! A trace as a tree (children of each span, depth), and what determined
//! its end-to-end time: the critical path and each span's self time.

use span_core::{Span, Trace};
use std::collections::HashMap;

const NONE: u32 = u32::MAX;
/// Traces at most this large find parents by a linear search (no map).
const LINEAR_LOOKUP: usize = 48;

/// Parent and children of every span of one trace, by index into
/// `trace.spans`. Reusable: [`Tree::build`] keeps the allocations.
#[derive(Default)]
pub struct Tree {
    parent: Vec<u32>,
    kids_off: Vec<u32>,
    kids: Vec<u32>,
    roots: Vec<u32>,
    depth: Vec<u32>,
    index: HashMap<u64, u32>,
    fill: Vec<u32>,
    queue: Vec<u32>,
}

impl Tree {
    /// The tree of `spans`. A span whose parent is not in the trace is a
    /// root; children are ordered by start time. Malformed input (a parent
    /// cycle, duplicate ids) never panics: spans not reachable from a root
    /// get depth 0 and no place in the critical path.
    pub fn build(&mut self, spans: &[Span]) {
        let n = spans.len().min(NONE as usize - 1);
        let spans = &spans[..n];
        self.parent.clear();
        self.index.clear();
        if n > LINEAR_LOOKUP {
            for (i, s) in spans.iter().enumerate() {
                self.index.entry(s.span_id.0).or_insert(i as u32);
            }
        }
        for (i, s) in spans.iter().enumerate() {
            let p = s.parent_span_id.and_then(|p| {
                if n > LINEAR_LOOKUP {
                    self.index.get(&p.0).copied()
                } else {
                    spans.iter().position(|x| x.span_id == p).map(|j| j as u32)
                }
            });
            self.parent.push(match p {
                Some(j) if j as usize != i => j,
                _ => NONE,
            });
        }
        // Children in CSR form.
        self.kids_off.clear();
        self.kids_off.resize(n + 1, 0);
        for &p in &self.parent {
            if p != NONE {
                self.kids_off[p as usize + 1] += 1;
            }
        }
        for i in 0..n {
            self.kids_off[i + 1] += self.kids_off[i];
        }
        self.kids.clear();
        self.kids.resize(self.kids_off[n] as usize, 0);
        self.fill.clear();
        self.fill.extend_from_slice(&self.kids_off[..n]);
        self.roots.clear();
        for (i, &p) in self.parent.iter().enumerate() {
            if p == NONE {
                self.roots.push(i as u32);
            } else {
                let slot = &mut self.fill[p as usize];
                self.kids[*slot as usize] = i as u32;
                *slot += 1;
            }
        }
        for i in 0..n {
            let (a, b) = (self.kids_off[i] as usize, self.kids_off[i + 1] as usize);
            self.kids[a..b].sort_by_key(|&k| spans[k as usize].start_unix_nanos);
        }
        self.roots
            .sort_by_key(|&r| spans[r as usize].start_unix_nanos);
        // Depth, breadth first from the roots.
        self.depth.clear();
        self.depth.resize(n, 0);
        self.queue.clear();
        self.queue.extend_from_slice(&self.roots);
        let mut head = 0;
        while head < self.queue.len() {
            let i = self.queue[head] as usize;
            head += 1;
            let (a, b) = (self.kids_off[i] as usize, self.kids_off[i + 1] as usize);
            for k in a..b {
                let c = self.kids[k];
                self.depth[c as usize] = self.depth[i] + 1;
                self.queue.push(c);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.parent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }

    pub fn parent(&self, i: usize) -> Option<usize> {
        self.parent
            .get(i)
            .filter(|p| **p != NONE)
            .map(|p| *p as usize)
    }

    /// Children of span `i`, by start time.
    pub fn children(&self, i: usize) -> impl DoubleEndedIterator<Item = usize> + '_ {
        let (a, b) = (self.kids_off[i] as usize, self.kids_off[i + 1] as usize);
        self.kids[a..b].iter().map(|k| *k as usize)
    }

    pub fn child_count(&self, i: usize) -> usize {
        (self.kids_off[i + 1] - self.kids_off[i]) as usize
    }

    /// Spans without a parent in the trace, by start time.
    pub fn roots(&self) -> impl Iterator<Item = usize> + '_ {
        self.roots.iter().map(|r| *r as usize)
    }

    /// 0 for roots.
    pub fn depth(&self, i: usize) -> usize {
        self.depth[i] as usize
    }

    /// Spans in depth-first order (parents before their children, siblings
    /// by start time), each once; unreachable spans are left out.
    pub fn preorder(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.len());
        let mut stack: Vec<usize> = self.roots().collect();
        stack.reverse();
        while let Some(i) = stack.pop() {
            out.push(i);
            stack.extend(self.children(i).rev());
        }
        out
    }
}

/// What determined a trace's end-to-end time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    /// Per span (index into `trace.spans`): on the critical path.
    pub critical: Vec<bool>,
    /// Per span: its duration minus the time covered by its children
    /// (clamped to its own range), in nanoseconds.
    pub self_ns: Vec<u64>,
}

impl Profile {
    /// The critical path of `trace` and the self time of every span.
    ///
    /// The critical path is the chain of spans that determined the
    /// end-to-end time: from the root (the earliest, if several), going
    /// back from its end, the child that finished last before that point
    /// is on it, then the child that finished last before that child
    /// started, and so on; recursively inside each. A child that overlaps
    /// the one after it on the path (parallel work that finished earlier)
    /// did not determine the end and is not on it.
    pub fn of(trace: &Trace) -> Profile {
        let mut tree = Tree::default();
        tree.build(&trace.spans);
        Profile::with_tree(trace, &tree)
    }

    pub fn with_tree(trace: &Trace, tree: &Tree) -> Profile {
        let spans = &trace.spans[..tree.len()];
        let n = spans.len();
        let mut critical = vec![false; n];
        let mut self_ns = vec![0u64; n];
        let range = |i: usize| {
            let s = &spans[i];
            (s.start_unix_nanos, s.end_unix_nanos.max(s.start_unix_nanos))
        };
        // Self time: duration minus the union of the children's ranges
        // (children are by start time).
        for (i, slot) in self_ns.iter_mut().enumerate() {
            let (s, e) = range(i);
            let mut covered = 0u64;
            let mut cursor = s;
            for c in tree.children(i) {
                let (cs, ce) = range(c);
                let (cs, ce) = (cs.max(cursor), ce.min(e));
                if ce > cs {
                    covered += ce - cs;
                    cursor = ce;
                }
            }
            *slot = (e - s).saturating_sub(covered);
        }
        // Critical path from the first root, iteratively (deep traces must
        // not overflow the stack).
        if let Some(root) = tree.roots().next() {
            let mut stack = vec![(root, range(root).1)];
            let mut kids: Vec<usize> = Vec::new();
            while let Some((i, limit)) = stack.pop() {
                if critical[i] {
                    continue;
                }
                critical[i] = true;
                let (start, end) = range(i);
                let mut cursor = end.min(limit.max(start));
                kids.clear();
                kids.extend(tree.children(i));
                // Latest-ending first.
                kids.sort_by_key(|&c| std::cmp::Reverse(range(c).1.min(end)));
                for &c in &kids {
                    let (cs, ce) = range(c);
                    let ce = ce.min(end);
                    if ce <= cursor && ce > start && cs < cursor {
                        stack.push((c, ce));
                        cursor = cs.max(start);
                        if cursor <= start {
                            break;
                        }
                    }
                }
            }
        }
        Profile { critical, self_ns }
    }
}
