//! Open-loop HTTP/1.1 load at a constant rate, with latency percentiles
//! (benches/overhead.sh's constant-rate mode).
//!
//! ```sh
//! cargo run --release --example openloop -- http://127.0.0.1:8080/ 2000 10
//! #                                          URL                  req/s seconds [connections]
//! ```
//!
//! Request i is due at start + i / rate, whatever happened to the ones
//! before (open loop): its latency runs from when it was due, not from when
//! a connection was free to send it, so a server that falls behind shows its
//! queueing in the percentiles instead of silently lowering the rate
//! (coordinated omission). Workers take the next due request from a shared
//! counter; each keeps one keep-alive connection (reconnecting when the
//! server closes it). Prints one line: achieved rate, p50/p90/p99/p99.9/max
//! latency in microseconds, errors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Target {
    addr: String,
    host: String,
    path: String,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:80")
    };
    Ok(Target {
        addr,
        host: hostport.to_owned(),
        path: path.to_owned(),
    })
}

/// One HTTP/1.1 exchange on `conn`; whether the connection can be reused.
fn exchange(conn: &mut BufReader<TcpStream>, request: &[u8]) -> std::io::Result<bool> {
    conn.get_mut().write_all(request)?;
    let mut line = String::new();
    if conn.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    if !line.starts_with("HTTP/1.") {
        return Err(std::io::Error::other(format!("bad status line {line:?}")));
    }
    let mut keep = line.starts_with("HTTP/1.1");
    let mut length: Option<usize> = None;
    loop {
        line.clear();
        if conn.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            if k == "content-length" {
                length = v.parse().ok();
            } else if k == "connection" {
                keep = v == "keep-alive" || (keep && v != "close");
            }
        }
    }
    match length {
        Some(n) => {
            let mut body = vec![0u8; n];
            conn.read_exact(&mut body)?;
            Ok(keep)
        }
        None => {
            // Close-delimited body.
            let mut sink = Vec::new();
            conn.read_to_end(&mut sink)?;
            Ok(false)
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        return Err("usage: openloop URL RATE SECONDS [CONNECTIONS]".into());
    }
    let target = Arc::new(parse_url(&args[0])?);
    let rate: f64 = args[1].parse().map_err(|e| format!("rate: {e}"))?;
    let secs: f64 = args[2].parse().map_err(|e| format!("seconds: {e}"))?;
    if rate <= 0.0 || secs <= 0.0 {
        return Err("rate and seconds must be positive".into());
    }
    let conns: usize = match args.get(3) {
        Some(c) => c.parse().map_err(|e| format!("connections: {e}"))?,
        None => 64,
    };
    let total = (rate * secs).round() as u64;
    let interval_ns = 1e9 / rate;
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(100);
    let request = Arc::new(
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: zt-openloop\r\n\r\n",
            target.path, target.host
        )
        .into_bytes(),
    );

    let workers: Vec<_> = (0..conns)
        .map(|_| {
            let (target, next, errors, request) = (
                target.clone(),
                next.clone(),
                errors.clone(),
                request.clone(),
            );
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut conn: Option<BufReader<TcpStream>> = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return lat;
                    }
                    let due = start + Duration::from_nanos((i as f64 * interval_ns) as u64);
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    if conn.is_none() {
                        match TcpStream::connect(&target.addr) {
                            Ok(s) => {
                                let _ = s.set_nodelay(true);
                                conn = Some(BufReader::new(s));
                            }
                            Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                        }
                    }
                    let c = conn.as_mut().expect("connected above");
                    match exchange(c, &request) {
                        Ok(keep) => {
                            lat.push(due.elapsed().as_micros() as u64);
                            if !keep {
                                conn = None;
                            }
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            conn = None;
                        }
                    }
                }
            })
        })
        .collect();
    let mut all: Vec<u64> = Vec::with_capacity(total as usize);
    for w in workers {
        all.extend(w.join().map_err(|_| "worker panicked")?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    println!(
        "rate {:.0} req/s achieved {:.0} req/s ok {} errors {} p50_us {} p90_us {} p99_us {} p999_us {} max_us {}",
        rate,
        all.len() as f64 / elapsed,
        all.len(),
        errors.load(Ordering::Relaxed),
        percentile(&all, 0.50),
        percentile(&all, 0.90),
        percentile(&all, 0.99),
        percentile(&all, 0.999),
        all.last().copied().unwrap_or(0),
    );
    Ok(())
}
