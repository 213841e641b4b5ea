//! HTTP/2 frame layout (RFC 9113 section 4 and 6): frame headers, payload
//! helpers and the plausibility checks used to find frame boundaries again
//! after bytes were lost.

/// Length of a frame header.
pub const FRAME_HEADER_LEN: usize = 9;

/// The client connection preface.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Default `SETTINGS_MAX_FRAME_SIZE`.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;

/// Largest length a frame header can carry (24 bits).
pub const MAX_FRAME_LEN: u32 = (1 << 24) - 1;

/// Frame types.
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub mod flags {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// Settings identifiers this parser uses.
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
}

/// Why a frame payload could not be interpreted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The payload length is invalid for the frame type.
    #[error("frame type {kind:#x}: invalid payload length {len}")]
    BadLength { kind: u8, len: usize },
    /// The padding length exceeds the payload.
    #[error("padding longer than the frame payload")]
    PaddingTooLong,
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub length: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream_id: u32,
    /// The reserved bit of the stream identifier (must be 0 on the wire).
    pub reserved: bool,
}

impl FrameHeader {
    /// Parse 9 bytes.
    pub fn parse(b: &[u8; FRAME_HEADER_LEN]) -> Self {
        let sid = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
        FrameHeader {
            length: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream_id: sid & 0x7fff_ffff,
            reserved: sid & 0x8000_0000 != 0,
        }
    }

    /// Parse the first 9 bytes of `b`, if there are that many.
    pub fn parse_slice(b: &[u8]) -> Option<Self> {
        let h: &[u8; FRAME_HEADER_LEN] = b.get(..FRAME_HEADER_LEN)?.try_into().ok()?;
        Some(Self::parse(h))
    }

    /// Serialise (the reserved bit is written as given).
    pub fn encode(&self) -> [u8; FRAME_HEADER_LEN] {
        let l = self.length.to_be_bytes();
        let s = (self.stream_id | if self.reserved { 0x8000_0000 } else { 0 }).to_be_bytes();
        [
            l[1], l[2], l[3], self.kind, self.flags, s[0], s[1], s[2], s[3],
        ]
    }

    /// Whether `flag` is set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Whether this header could start a real frame sent by a client
    /// (`from_client`) or a server, with frames of at most `max_len` octets.
    ///
    /// Stricter than the RFC (which tells receivers to ignore unknown types
    /// and flags): used to recognise frame boundaries in a byte stream whose
    /// framing was lost, so only the frame types of RFC 9113 with the flags
    /// they define, the reserved bit clear, stream 0 exactly for
    /// connection-level frames, the fixed lengths of fixed-size frames and
    /// client-initiated (odd) stream ids for client HEADERS and DATA are
    /// accepted.
    pub fn is_plausible(&self, from_client: bool, max_len: u32) -> bool {
        if self.reserved || self.length > max_len {
            return false;
        }
        let len = self.length;
        let sid = self.stream_id;
        let only = |allowed: u8| self.flags & !allowed == 0;
        match self.kind {
            kind::DATA => {
                sid != 0
                    && only(flags::END_STREAM | flags::PADDED)
                    && (!self.has(flags::PADDED) || len >= 1)
                    && (!from_client || sid % 2 == 1)
            }
            kind::HEADERS => {
                sid != 0
                    && only(
                        flags::END_STREAM | flags::END_HEADERS | flags::PADDED | flags::PRIORITY,
                    )
                    && (!from_client || sid % 2 == 1)
            }
            kind::PRIORITY => sid != 0 && len == 5 && self.flags == 0,
            kind::RST_STREAM => sid != 0 && len == 4 && self.flags == 0,
            kind::SETTINGS => {
                sid == 0 && only(flags::ACK) && len % 6 == 0 && (!self.has(flags::ACK) || len == 0)
            }
            kind::PUSH_PROMISE => {
                !from_client && sid != 0 && only(flags::END_HEADERS | flags::PADDED) && len >= 4
            }
            kind::PING => sid == 0 && len == 8 && only(flags::ACK),
            kind::GOAWAY => sid == 0 && len >= 8 && self.flags == 0,
            kind::WINDOW_UPDATE => len == 4 && self.flags == 0,
            kind::CONTINUATION => sid != 0 && only(flags::END_HEADERS),
            _ => false,
        }
    }
}

/// The header block fragment of a HEADERS (or PUSH_PROMISE, with
/// `promise = true`) payload: padding, priority fields and the promised
/// stream id stripped.
pub fn header_fragment<'a>(
    h: &FrameHeader,
    payload: &'a [u8],
    promise: bool,
) -> Result<&'a [u8], FrameError> {
    let mut p = payload;
    let mut pad = 0usize;
    if h.has(flags::PADDED) {
        let (&n, rest) = p.split_first().ok_or(FrameError::BadLength {
            kind: h.kind,
            len: payload.len(),
        })?;
        pad = n as usize;
        p = rest;
    }
    let skip = if promise {
        4
    } else if h.has(flags::PRIORITY) {
        5
    } else {
        0
    };
    if p.len() < skip {
        return Err(FrameError::BadLength {
            kind: h.kind,
            len: payload.len(),
        });
    }
    p = &p[skip..];
    if p.len() < pad {
        return Err(FrameError::PaddingTooLong);
    }
    Ok(&p[..p.len() - pad])
}

/// The (identifier, value) pairs of a SETTINGS payload.
pub fn settings(payload: &[u8]) -> Result<impl Iterator<Item = (u16, u32)> + '_, FrameError> {
    if payload.len() % 6 != 0 {
        return Err(FrameError::BadLength {
            kind: kind::SETTINGS,
            len: payload.len(),
        });
    }
    Ok(payload.chunks_exact(6).map(|c| {
        (
            u16::from_be_bytes([c[0], c[1]]),
            u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
        )
    }))
}

/// The error code of a RST_STREAM payload.
pub fn rst_stream(payload: &[u8]) -> Result<u32, FrameError> {
    let b: [u8; 4] = payload.try_into().map_err(|_| FrameError::BadLength {
        kind: kind::RST_STREAM,
        len: payload.len(),
    })?;
    Ok(u32::from_be_bytes(b))
}

/// (last stream id, error code) of a GOAWAY payload.
pub fn goaway(payload: &[u8]) -> Result<(u32, u32), FrameError> {
    if payload.len() < 8 {
        return Err(FrameError::BadLength {
            kind: kind::GOAWAY,
            len: payload.len(),
        });
    }
    let last = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff;
    let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
    Ok((last, code))
}

/// Name of an HTTP/2 error code (RFC 9113 section 7).
pub fn error_code_name(code: u32) -> &'static str {
    match code {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = FrameHeader {
            length: 0x12345,
            kind: kind::HEADERS,
            flags: flags::END_HEADERS | flags::END_STREAM,
            stream_id: 0x7fff_fffd,
            reserved: false,
        };
        assert_eq!(FrameHeader::parse(&h.encode()), h);
        assert!(h.is_plausible(true, MAX_FRAME_LEN));
        assert!(!h.is_plausible(true, DEFAULT_MAX_FRAME_SIZE));
    }

    #[test]
    fn plausibility_rules() {
        let mk = |kind, flags, stream_id, length| FrameHeader {
            length,
            kind,
            flags,
            stream_id,
            reserved: false,
        };
        assert!(mk(kind::SETTINGS, 0, 0, 18).is_plausible(false, 16384));
        assert!(!mk(kind::SETTINGS, 0, 1, 18).is_plausible(false, 16384));
        assert!(!mk(kind::SETTINGS, 1, 0, 6).is_plausible(false, 16384));
        assert!(mk(kind::PING, 1, 0, 8).is_plausible(false, 16384));
        assert!(!mk(kind::PING, 0, 0, 7).is_plausible(false, 16384));
        assert!(!mk(kind::DATA, 0, 2, 10).is_plausible(true, 16384));
        assert!(mk(kind::DATA, 0, 2, 10).is_plausible(false, 16384));
        assert!(!mk(kind::DATA, 0x2, 1, 10).is_plausible(true, 16384));
        assert!(!mk(kind::PUSH_PROMISE, 4, 1, 10).is_plausible(true, 16384));
        assert!(!mk(0x20, 0, 1, 10).is_plausible(true, 16384));
    }

    #[test]
    fn fragments_and_payloads() {
        let h = FrameHeader {
            length: 0,
            kind: kind::HEADERS,
            flags: flags::PADDED | flags::PRIORITY,
            stream_id: 1,
            reserved: false,
        };
        let payload = [2, 0, 0, 0, 3, 16, 0xaa, 0xbb, 0, 0];
        assert_eq!(header_fragment(&h, &payload, false).unwrap(), &[0xaa, 0xbb]);
        assert_eq!(
            header_fragment(&h, &[9, 0, 0, 0, 0, 0], false),
            Err(FrameError::PaddingTooLong)
        );
        let s: Vec<_> = settings(&[0, 1, 0, 0, 0x10, 0, 0, 5, 0, 0, 0x40, 0])
            .unwrap()
            .collect();
        assert_eq!(s, vec![(1, 4096), (5, 16384)]);
        assert!(settings(&[0; 5]).is_err());
        assert_eq!(rst_stream(&[0, 0, 0, 8]).unwrap(), 8);
        assert_eq!(goaway(&[0x80, 0, 0, 5, 0, 0, 0, 0]).unwrap(), (5, 0));
        assert_eq!(error_code_name(8), "CANCEL");
    }
}
