//! Placeholder: being written by its owner. Keep the public API:
//! `looks_like(side, first_bytes, port) -> bool` and `RedisParser::new()`.

use crate::{ConnectionParser, L7Event, Protocol, Side};

/// Whether the first bytes `side` sent on a connection look like this protocol.
pub fn looks_like(_side: Side, _first_bytes: &[u8], _port: u16) -> bool {
    false
}

#[derive(Default)]
pub struct RedisParser {}

impl RedisParser {
    pub fn new() -> Self {
        Self::default()
    }
}

impl ConnectionParser for RedisParser {
    fn protocol(&self) -> Protocol {
        Protocol::Redis
    }
    fn feed(&mut self, _side: Side, _data: &[u8]) {}
    fn gap(&mut self, _side: Side, _len: u64) {}
    fn poll(&mut self) -> Option<L7Event> {
        None
    }
}
