//! A fault-injecting OTLP/HTTP receiver: answers OK, a given status (503,
//! 429 with Retry-After), slowly, or is down (port closed). It decodes each
//! protobuf body with the opentelemetry-proto types and records span ids.

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How the receiver answers.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// 200 with an empty ExportTraceServiceResponse.
    Ok,
    /// This status, with this Retry-After header if any.
    Status(u16, Option<String>),
    /// Wait this long, then answer OK (the client may have given up).
    Slow(Duration),
    /// Port closed: connections are refused.
    Down,
}

#[derive(Default)]
pub struct Seen {
    /// Requests read.
    pub requests: AtomicU64,
    /// Span ids in requests answered with 200 (first time seen).
    pub accepted_ids: Mutex<HashSet<u64>>,
    /// Span ids in all decoded requests, whatever the answer.
    pub all_ids: Mutex<HashSet<u64>>,
    /// Requests currently being held by Slow mode.
    pub held: AtomicU64,
}

pub struct FaultServer {
    pub port: u16,
    mode: Arc<Mutex<Mode>>,
    pub seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// A port in 24000-24099 that is free now.
pub fn free_port() -> u16 {
    for _ in 0..200 {
        let off = NEXT_PORT.fetch_add(1, Ordering::Relaxed) % 100;
        // Spread test binaries apart by pid so they rarely collide.
        let port = 24000 + (off + (std::process::id() % 100) as u16) % 100;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 24000-24099");
}

impl FaultServer {
    pub fn start(mode: Mode) -> FaultServer {
        let port = free_port();
        let mode = Arc::new(Mutex::new(mode));
        let seen = Arc::new(Seen::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (mode, seen, stop) = (mode.clone(), seen.clone(), stop.clone());
            std::thread::spawn(move || accept_loop(port, mode, seen, stop))
        };
        FaultServer {
            port,
            mode,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.port)
    }

    pub fn set_mode(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }

    pub fn mode(&self) -> Mode {
        self.mode.lock().unwrap().clone()
    }

    pub fn accepted(&self) -> usize {
        self.seen.accepted_ids.lock().unwrap().len()
    }

    pub fn all_seen(&self) -> usize {
        self.seen.all_ids.lock().unwrap().len()
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(port: u16, mode: Arc<Mutex<Mode>>, seen: Arc<Seen>, stop: Arc<AtomicBool>) {
    let mut listener: Option<TcpListener> = None;
    while !stop.load(Ordering::SeqCst) {
        let down = *mode.lock().unwrap() == Mode::Down;
        if down {
            listener = None; // close the port
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        if listener.is_none() {
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => {
                    l.set_nonblocking(true).unwrap();
                    listener = Some(l);
                }
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
        }
        let Some(l) = &listener else { continue };
        match l.accept() {
            Ok((stream, _)) => {
                let (mode, seen) = (mode.clone(), seen.clone());
                std::thread::spawn(move || handle(stream, mode, seen));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 1 << 20 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + len {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf[header_end..header_end + len].to_vec())
}

fn handle(mut stream: TcpStream, mode: Arc<Mutex<Mode>>, seen: Arc<Seen>) {
    stream.set_nonblocking(false).ok();
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let Some(body) = read_request(&mut stream) else {
        return;
    };
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let ids: Vec<u64> = match ExportTraceServiceRequest::decode(&body[..]) {
        Ok(req) => req
            .resource_spans
            .iter()
            .flat_map(|rs| rs.scope_spans.iter())
            .flat_map(|ss| ss.spans.iter())
            .map(|s| u64::from_be_bytes(s.span_id[..8].try_into().unwrap()))
            .collect(),
        Err(_) => Vec::new(),
    };
    seen.all_ids.lock().unwrap().extend(ids.iter().copied());
    let m = mode.lock().unwrap().clone();
    let (status, extra) = match m {
        Mode::Ok | Mode::Down => (200, String::new()),
        Mode::Status(code, ra) => (
            code,
            ra.map(|v| format!("Retry-After: {v}\r\n"))
                .unwrap_or_default(),
        ),
        Mode::Slow(d) => {
            seen.held.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(d);
            seen.held.fetch_sub(1, Ordering::SeqCst);
            (200, String::new())
        }
    };
    let body = if status == 200 {
        ExportTraceServiceResponse::default().encode_to_vec()
    } else {
        b"unavailable".to_vec()
    };
    let ctype = if status == 200 {
        "application/x-protobuf"
    } else {
        "text/plain"
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    let ok = stream.write_all(head.as_bytes()).is_ok() && stream.write_all(&body).is_ok();
    if ok && status == 200 {
        seen.accepted_ids.lock().unwrap().extend(ids);
    }
}
