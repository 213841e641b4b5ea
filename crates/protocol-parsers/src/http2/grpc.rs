//! gRPC over HTTP/2: length-prefixed message counting and small helpers.
//!
//! Every gRPC message in a DATA stream is a 5-byte prefix (compressed flag,
//! big-endian u32 length) followed by the message. [`MessageCounter`] follows
//! that framing through the (un-padded) DATA payload of one direction of one
//! stream. Bytes of a message body lost to the capture are just counted; when
//! a prefix is lost, or the bytes do not follow the framing, the count becomes
//! unknown rather than wrong.

/// Counts gRPC messages in one direction of one stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageCounter {
    count: u64,
    state: State,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Reading a prefix: `got` bytes of it so far, the length bytes in `len`.
    Prefix {
        got: u8,
        len: [u8; 4],
        trailer: bool,
    },
    /// Inside a message body.
    Body { left: u64 },
    /// The framing was lost.
    Unknown,
}

impl Default for State {
    fn default() -> Self {
        State::Prefix {
            got: 0,
            len: [0; 4],
            trailer: false,
        }
    }
}

impl MessageCounter {
    /// Feed DATA payload bytes (padding excluded).
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.state {
                State::Unknown => return,
                State::Body { left } => {
                    let n = (*left).min(data.len() as u64);
                    *left -= n;
                    data = &data[n as usize..];
                    if *left == 0 {
                        self.state = State::default();
                    }
                }
                State::Prefix { got, len, trailer } => {
                    let b = data[0];
                    data = &data[1..];
                    if *got == 0 {
                        if b & 0x7e != 0 {
                            // Not a gRPC prefix (flag is 0 or 1; gRPC-Web
                            // adds 0x80 for its trailers frame).
                            self.state = State::Unknown;
                            return;
                        }
                        *trailer = b & 0x80 != 0;
                    } else {
                        len[*got as usize - 1] = b;
                    }
                    *got += 1;
                    if *got == 5 {
                        if !*trailer {
                            self.count += 1;
                        }
                        let l = u32::from_be_bytes(*len) as u64;
                        self.state = if l == 0 {
                            State::default()
                        } else {
                            State::Body { left: l }
                        };
                    }
                }
            }
        }
    }

    /// `n` payload bytes were not captured.
    pub fn gap(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        match &mut self.state {
            State::Body { left } if n <= *left => {
                *left -= n;
                if *left == 0 {
                    self.state = State::default();
                }
            }
            _ => self.state = State::Unknown,
        }
    }

    /// The framing is unknown from here on (e.g. a DATA frame whose padding
    /// length was lost).
    pub fn lose(&mut self) {
        self.state = State::Unknown;
    }

    /// Messages whose prefix was seen, or `None` once the framing was lost.
    pub fn count(&self) -> Option<u64> {
        (self.state != State::Unknown).then_some(self.count)
    }
}

/// `(service, method)` from a gRPC `:path` (`/pkg.Service/Method`).
pub fn service_method(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (service, method) = rest.split_once('/')?;
    if service.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    Some((service, method))
}

/// Whether a content-type names gRPC: `application/grpc` and its variants
/// (`application/grpc+proto`, `application/grpc-web`, ...).
pub fn is_grpc_content_type(ct: &str) -> bool {
    ct.trim_start()
        .get(..16)
        .is_some_and(|p| p.eq_ignore_ascii_case("application/grpc"))
}

/// Decode the percent-encoding of a `grpc-message` value. Invalid escapes
/// are kept as they are (as the gRPC spec asks); `None` if the result is not
/// UTF-8.
pub fn decode_grpc_message(v: &[u8]) -> Option<String> {
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' && i + 2 < v.len() {
            if let (Some(h), Some(l)) = (hex(v[i + 1]), hex(v[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_messages_split_anywhere() {
        let mut data = Vec::new();
        for len in [0u32, 3, 70000, 1] {
            data.push(0);
            data.extend_from_slice(&len.to_be_bytes());
            data.extend(std::iter::repeat_n(7u8, len as usize));
        }
        for split in [1, 2, 5, 7, 1000, data.len()] {
            let mut c = MessageCounter::default();
            for chunk in data.chunks(split) {
                c.feed(chunk);
            }
            assert_eq!(c.count(), Some(4), "split {split}");
        }
    }

    #[test]
    fn gaps_inside_bodies_are_counted_prefix_loss_is_unknown() {
        let mut c = MessageCounter::default();
        c.feed(&[0, 0, 0, 0x10, 0]); // 4096-byte message
        c.feed(&[1; 100]);
        c.gap(3996);
        c.feed(&[1, 0, 0, 0, 2, 9, 9]);
        assert_eq!(c.count(), Some(2));
        c.gap(2);
        assert_eq!(c.count(), None);
        let mut c = MessageCounter::default();
        c.feed(&[7]);
        assert_eq!(c.count(), None);
    }

    #[test]
    fn helpers() {
        assert_eq!(
            service_method("/demo.v1.Greeter/SayHello"),
            Some(("demo.v1.Greeter", "SayHello"))
        );
        assert_eq!(service_method("/index.html"), None);
        assert!(is_grpc_content_type("application/grpc"));
        assert!(is_grpc_content_type("application/grpc+proto"));
        assert!(is_grpc_content_type("application/grpc-web+proto"));
        assert!(!is_grpc_content_type("text/html"));
        assert_eq!(decode_grpc_message(b"a%20b%zz%").unwrap(), "a b%zz%");
    }
}
