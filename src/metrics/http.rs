//! A minimal HTTP/1.1 server for `GET /metrics` on its own thread.
//!
//! One connection at a time (a scrape endpoint, not a web server), each
//! bounded: the request head must fit in 8 KiB and arrive within 5 s;
//! every response closes the connection. Malformed requests get 400, other
//! paths 404, other methods 405; nothing a client sends can panic it.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

const MAX_HEAD: usize = 8192;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// `--metrics-listen` values: `PORT` (binds 127.0.0.1), `HOST:PORT`,
/// `[V6]:PORT`. Port 0 asks the kernel for a free one.
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("an empty address: give PORT or HOST:PORT".into());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u16>()
            .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p))
            .map_err(|_| format!("{s:?}: the port must be a number from 0 to 65535"));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("{s:?}: give PORT or HOST:PORT"));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!("{s:?}: the port must be a number from 0 to 65535"));
    }
    (host, port.parse::<u16>().unwrap_or(0))
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("{s:?}: unknown host {host:?}"))
}

/// A running `/metrics` endpoint; stops when dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Bind `addr` and serve `body()` (Prometheus text, `content_type`) at
    /// `/metrics` on a thread of its own.
    pub fn start(
        addr: SocketAddr,
        content_type: &'static str,
        body: impl Fn() -> String + Send + 'static,
    ) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("zt-metrics".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.load(Ordering::Acquire) {
                        break;
                    }
                    match conn {
                        Ok(c) => {
                            if let Err(e) = serve(c, content_type, &body) {
                                log::debug!("metrics endpoint: {e}");
                            }
                        }
                        Err(e) => {
                            log::debug!("metrics endpoint: accept: {e}");
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
            })?;
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on (with the port the kernel chose for 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop listening and wait for the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.store(true, Ordering::Release);
            // Wake the blocking accept.
            let mut wake = self.addr;
            if wake.ip().is_unspecified() {
                wake.set_ip(match wake {
                    SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    SocketAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                });
            }
            let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
            let _ = t.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Ask {
    Metrics { head_only: bool },
    NotFound,
    BadMethod,
    Malformed,
}

fn parse_head(head: &[u8]) -> Ask {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(line)
        .unwrap_or("")
        .trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Ask::Malformed;
    };
    if !version.starts_with("HTTP/1.") || target.is_empty() {
        return Ask::Malformed;
    }
    let path = target.split('?').next().unwrap_or("");
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Ask::BadMethod,
    };
    if path == "/metrics" {
        Ask::Metrics { head_only }
    } else {
        Ask::NotFound
    }
}

fn serve(mut c: TcpStream, content_type: &str, body: &impl Fn() -> String) -> io::Result<()> {
    c.set_read_timeout(Some(IO_TIMEOUT))?;
    c.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let ask = loop {
        let n = c.read(&mut buf)?;
        if n == 0 {
            return Ok(()); // closed (or our own wake-up connection)
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break parse_head(&head);
        }
        if head.len() > MAX_HEAD {
            break Ask::Malformed;
        }
    };
    let (status, ctype, text, head_only) = match ask {
        Ask::Metrics { head_only } => ("200 OK", content_type, body(), head_only),
        Ask::NotFound => (
            "404 Not Found",
            "text/plain",
            "only /metrics is served here\n".to_owned(),
            false,
        ),
        Ask::BadMethod => (
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics\n".to_owned(),
            false,
        ),
        Ask::Malformed => (
            "400 Bad Request",
            "text/plain",
            "malformed request\n".to_owned(),
            false,
        ),
    };
    let mut resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
        text.len()
    );
    if status.starts_with("405") {
        resp.push_str("Allow: GET, HEAD\r\n");
    }
    resp.push_str("\r\n");
    c.write_all(resp.as_bytes())?;
    if !head_only {
        c.write_all(text.as_bytes())?;
    }
    c.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen_addr("9464").unwrap(),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(
            parse_listen_addr("0.0.0.0:1").unwrap(),
            "0.0.0.0:1".parse().unwrap()
        );
        assert_eq!(
            parse_listen_addr("[::1]:9").unwrap(),
            "[::1]:9".parse().unwrap()
        );
        assert_eq!(parse_listen_addr("localhost:9").unwrap().port(), 9);
        for bad in ["", "99999", "x:y", "host", "127.0.0.1:70000"] {
            assert!(parse_listen_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_heads() {
        assert_eq!(
            parse_head(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ask::Metrics { head_only: false }
        );
        assert_eq!(
            parse_head(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Ask::Metrics { head_only: false }
        );
        assert_eq!(
            parse_head(b"HEAD /metrics HTTP/1.1\r\n\r\n"),
            Ask::Metrics { head_only: true }
        );
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\n\r\n"), Ask::NotFound);
        assert_eq!(
            parse_head(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Ask::BadMethod
        );
        for bad in [
            &b"\xff\xfe\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"GET /metrics SPDY\r\n\r\n",
            b"",
        ] {
            assert_eq!(parse_head(bad), Ask::Malformed);
        }
    }

    fn get(addr: SocketAddr, req: &[u8]) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(req).unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_metrics_and_refuses_the_rest() {
        let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), "text/plain", || {
            "x_total 1\n".to_owned()
        })
        .unwrap();
        let a = srv.local_addr();
        let ok = get(a, b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nx_total 1\n"), "{ok}");
        assert!(get(a, b"GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(a, b"DELETE /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(get(a, &[b'A'; 9000]).starts_with("HTTP/1.1 400"));
        // A client that connects and says nothing does not stop others
        // for longer than the timeout; one that hangs up is fine.
        drop(TcpStream::connect(a).unwrap());
        assert!(get(a, b"GET /metrics HTTP/1.1\r\n\r\n").contains("x_total 1"));
        srv.stop();
        // Nothing serves the metrics any more. (A connect can still succeed
        // now and then: to a free loopback port the kernel may pick that
        // same port as the source, a TCP self-connection; CI saw one.)
        if let Ok(mut c) = TcpStream::connect(a) {
            c.set_read_timeout(Some(std::time::Duration::from_secs(1)))
                .unwrap();
            let _ = c.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
            let mut out = Vec::new();
            let _ = c.read_to_end(&mut out);
            let out = String::from_utf8_lossy(&out);
            assert!(!out.contains("x_total"), "still serving after stop: {out}");
        }
    }
}
