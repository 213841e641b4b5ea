//! HTTP/1.x (placeholder: being written; see the module brief in ARCHITECTURE.md).

use crate::{ConnectionParser, L7Event, Protocol, Side};

pub fn looks_like_request(b: &[u8]) -> bool {
    const METHODS: &[&[u8]] = &[
        b"GET ",
        b"POST ",
        b"PUT ",
        b"DELETE ",
        b"HEAD ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"TRACE ",
    ];
    METHODS.iter().any(|m| b.starts_with(m))
}

pub fn looks_like_response(b: &[u8]) -> bool {
    b.starts_with(b"HTTP/1.")
}

#[derive(Default)]
pub struct Http1Parser {}

impl Http1Parser {
    pub fn new() -> Self {
        Self::default()
    }
}

impl ConnectionParser for Http1Parser {
    fn protocol(&self) -> Protocol {
        Protocol::Http1
    }
    fn feed(&mut self, _side: Side, _data: &[u8]) {}
    fn gap(&mut self, _side: Side, _len: u64) {}
    fn poll(&mut self) -> Option<L7Event> {
        None
    }
}
