//! As root: plain HTTP/2 (h2c, no gRPC) between a Rust `h2` client and
//! server, 200 requests multiplexed 16 at a time on one connection, traced
//! by the real zt-trace binary. Every request must be a client span and a
//! server span, linked, with the right name and status.

mod common;

use common::*;
use serde_json::Value;

const N: usize = 200;

async fn serve(listener: tokio::net::TcpListener) {
    let (sock, _) = listener.accept().await.unwrap();
    let mut conn = h2::server::handshake(sock).await.unwrap();
    while let Some(Ok((req, mut respond))) = conn.accept().await {
        tokio::spawn(async move {
            let n: usize = req
                .uri()
                .path()
                .rsplit('/')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let status = if n % 10 == 7 { 404 } else { 200 };
            let resp = http::Response::builder().status(status).body(()).unwrap();
            let mut send = respond.send_response(resp, false).unwrap();
            send.send_data(bytes::Bytes::from_static(b"h2c says hi"), true)
                .unwrap();
        });
    }
}

async fn load(port: u16) {
    let sock = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (client, conn) = h2::client::handshake(sock).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = Vec::new();
    for i in 0..N {
        let mut client = client.clone().ready().await.unwrap();
        let permit = sem.clone().acquire_owned().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let req = http::Request::get(format!("http://127.0.0.1:{port}/h2/{i}?rid=h2c{i:04}"))
                .body(())
                .unwrap();
            let (resp, _) = client.send_request(req, true).unwrap();
            let mut body = resp.await.unwrap().into_body();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap();
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            drop(permit);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[test]
fn h2c_requests_between_rust_h2_client_and_server() {
    if !require_root("h2c_requests_between_rust_h2_client_and_server") {
        return;
    }
    let dir = tempdir("h2c");
    let tracer = Tracer::start(&dir, &["run", "--output", "json"]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(serve(listener));
        load(port).await;
        server.abort();
    });
    drop(rt);
    let (out, _) = tracer.stop();
    let spans = parse_spans(&out);
    let mut failures = Vec::new();
    for i in 0..N {
        let rid = format!("h2c{i:04}");
        let of: Vec<&Value> = spans.iter().filter(|s| mentions(s, &rid)).collect();
        let c = of.iter().find(|s| s["kind"] == "CLIENT");
        let s = of.iter().find(|s| s["kind"] == "SERVER");
        let status = if i % 10 == 7 { 404 } else { 200 };
        match (c, s) {
            (Some(c), Some(s)) if of.len() == 2 => {
                if s["parent_span_id"] != c["span_id"] {
                    failures.push(format!("{rid}: server span not the client span's child"));
                }
                for x in [c, s] {
                    if x["name"] != "GET /h2/{id}"
                        || attr(x, "http.response.status_code") != Some(&Value::from(status))
                        || attr_str(x, "network.protocol.version") != "2"
                    {
                        failures.push(format!("{rid}: {}", label(x)));
                    }
                }
            }
            _ => failures.push(format!("{rid}: {} spans", of.len())),
        }
    }
    assert_no_failures(&failures, N);
}
