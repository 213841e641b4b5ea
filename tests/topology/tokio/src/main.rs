//! A tokio (multi-thread runtime) HTTP/1 gateway for the zt-trace
//! end-to-end tests, the tokio twin of tests/topology/go/gateway.go.
//!
//! GET /api/users/<n>?rid=<id> calls profile GET /profile/<n> from a task
//! it spawns (started first, joined last), then auth GET /validate?n=<n>
//! and users GET /users/<n> in sequence; every call passes the
//! ground-truth id on. Tasks resume on any worker thread after an
//! `.await`, so the thread that made a call says nothing about the request.
//!
//! Usage: zt-tokio-gateway PORT auth=PORT users=PORT profile=PORT

use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn get(port: &str, path: &str) -> u16 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap_or(0))).await else {
        return 599;
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return 599;
    }
    let mut resp = Vec::new();
    if s.read_to_end(&mut resp).await.is_err() {
        return 599;
    }
    let text = String::from_utf8_lossy(&resp);
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(599)
}

async fn handle(down: &HashMap<String, String>, path: &str) -> (u16, String) {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let n = route.trim_start_matches("/api/users/").to_owned();
    let rid = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("rid="))
        .unwrap_or("")
        .to_owned();
    let port = |s: &str| down.get(s).cloned().unwrap_or_default();
    let fan = tokio::spawn({
        let (p, path) = (port("profile"), format!("/profile/{n}?rid={rid}"));
        async move { get(&p, &path).await }
    });
    let mut status = 200;
    let a = get(&port("auth"), &format!("/validate?n={n}&rid={rid}")).await;
    if a != 200 {
        status = a;
    }
    let u = get(&port("users"), &format!("/users/{n}?rid={rid}")).await;
    if u != 200 && status == 200 {
        status = 502;
    }
    let p = fan.await.unwrap_or(599);
    if p != 200 && status == 200 {
        status = 502;
    }
    (status, format!("{{\"rid\":\"{rid}\",\"status\":{status}}}\n"))
}

async fn serve(mut conn: TcpStream, down: Arc<HashMap<String, String>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let (status, body) = handle(&down, &path).await;
        let resp = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if conn.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let down: HashMap<String, String> = args[2..]
        .iter()
        .filter_map(|a| a.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let down = Arc::new(down);
    let listener = TcpListener::bind(("127.0.0.1", args[1].parse::<u16>().expect("port")))
        .await
        .expect("bind");
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve(conn, down.clone()));
    }
}
