//! Hostile HTTP clients on a raw TCP socket, as scenarios both services' tests run
//! against a real running service (`HTTP_HEADER_TIMEOUT_MS`, `HTTP_BODY_TIMEOUT_MS`,
//! `HTTP_IDLE_TIMEOUT_MS`, `HTTP_MAX_CONNECTIONS`; `service_kit::http_server`). Each
//! scenario panics with what it saw when the service does not hold.
//!
//! Timing checks allow for a busy 2-core machine: a bound must not fire noticeably
//! early (90 % of it) and must fire within [`SLACK`] of its value.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How late past its value a bound may close a connection in these tests.
pub const SLACK: Duration = Duration::from_secs(3);

/// Bytes sent per tick by the trickling clients, and the tick.
const TRICKLE_EVERY: Duration = Duration::from_millis(200);

/// What a client saw until the server closed the connection.
#[derive(Debug)]
pub struct Closed {
    /// Everything the server sent.
    pub bytes: Vec<u8>,
    /// From `since` (given to [`read_until_closed`]) to the EOF or reset.
    pub after: Duration,
}

impl Closed {
    /// The status of the first response, if the server sent one.
    pub fn status(&self) -> Option<u16> {
        status_of(&self.bytes)
    }
}

/// The status code of an HTTP/1.1 response's status line.
pub fn status_of(bytes: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(bytes.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Reads until the server closes the connection (EOF or reset), at most `limit` from
/// `since`; `None` if it is still open then.
pub async fn read_until_closed(
    stream: &mut TcpStream,
    since: Instant,
    limit: Duration,
) -> Option<Closed> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(since.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Some(Closed {
                    bytes,
                    after: since.elapsed(),
                })
            }
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one response with a `Content-Length` body on a kept-alive connection: its
/// status and body. Panics if the connection closes or nothing complete arrives in
/// 10 s.
pub async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map(|value| value.trim().parse().expect("a Content-Length number"))
                .expect("a response with Content-Length");
            if bytes.len() >= end + 4 + length {
                let status = status_of(&bytes).expect("an HTTP/1.1 status line");
                let body = String::from_utf8_lossy(&bytes[end + 4..end + 4 + length]);
                return (status, body.into_owned());
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, stream.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .expect("read the response");
        assert!(
            n > 0,
            "connection closed before a whole response: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        bytes.extend_from_slice(&buf[..n]);
    }
}

/// `GET path` with keep-alive on `stream`; the response's status and body.
pub async fn get(stream: &mut TcpStream, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    read_response(stream).await
}

/// A fresh connection answering `GET path` with 200: the service still serves.
pub async fn still_serves(addr: SocketAddr, path: &str) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let (status, body) = get(&mut stream, path).await;
    assert_eq!(status, 200, "GET {path} after the scenario: {body}");
}

/// Sends `bytes` one at a time every [`TRICKLE_EVERY`], until they are all sent or
/// the server closes the connection.
async fn trickle(mut writer: tokio::net::tcp::OwnedWriteHalf, bytes: Vec<u8>) {
    for byte in bytes {
        tokio::time::sleep(TRICKLE_EVERY).await;
        if writer.write_all(&[byte]).await.is_err() {
            return;
        }
    }
    // Keep the write side open: closing it would end the request early.
    std::future::pending::<()>().await;
}

/// Asserts `closed` happened within `bound` (not before 90 % of it, not after
/// `bound + SLACK`).
fn closed_at(what: &str, closed: &Closed, bound: Duration) {
    assert!(
        closed.after >= bound.mul_f64(0.9),
        "{what}: closed after {:?}, before the {bound:?} bound",
        closed.after
    );
    assert!(
        closed.after <= bound + SLACK,
        "{what}: closed only after {:?} (bound {bound:?})",
        closed.after
    );
}

/// Incomplete headers (the issue's `printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n' |
/// nc`), headers trickled a byte every 200 ms, and a connection that sends nothing
/// are each closed without an answer once `header_timeout` has passed since the
/// connect; then `GET path` on a fresh connection still works.
pub async fn incomplete_headers_are_closed(addr: SocketAddr, header_timeout: Duration, path: &str) {
    let limit = header_timeout + SLACK;

    // Headers without their closing blank line.
    let since = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n").as_bytes())
        .await
        .expect("send");
    let closed = read_until_closed(&mut stream, since, limit)
        .await
        .unwrap_or_else(|| panic!("incomplete headers: still open after {limit:?}"));
    closed_at("incomplete headers", &closed, header_timeout);
    assert!(
        closed.bytes.is_empty(),
        "incomplete headers: closed without an answer, got {:?}",
        String::from_utf8_lossy(&closed.bytes)
    );

    // Headers a byte every 200 ms: bytes keep coming, the bound still holds.
    let since = Instant::now();
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut reader, writer) = stream.into_split();
    let header = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nX-Slow: {}\r\n\r\n",
        "a".repeat(200)
    );
    let writing = tokio::spawn(trickle(writer, header.into_bytes()));
    let mut buf = Vec::new();
    let read = tokio::time::timeout(limit, reader.read_to_end(&mut buf)).await;
    writing.abort();
    assert!(read.is_ok(), "trickled headers: still open after {limit:?}");
    let closed = Closed {
        bytes: buf,
        after: since.elapsed(),
    };
    closed_at("trickled headers", &closed, header_timeout);
    assert!(closed.bytes.is_empty(), "trickled headers: no answer");

    // Nothing at all.
    let since = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let closed = read_until_closed(&mut stream, since, limit)
        .await
        .unwrap_or_else(|| panic!("silent connection: still open after {limit:?}"));
    closed_at("silent connection", &closed, header_timeout);

    still_serves(addr, path).await;
}

/// `head` (a request head announcing a body, e.g. `Content-Length: 1000`), then its
/// body a byte every 200 ms: answered 408 and closed once `body_timeout` has passed
/// since the head; then `GET path` on a fresh connection still works.
pub async fn trickled_body_gets_408(
    addr: SocketAddr,
    body_timeout: Duration,
    head: &str,
    path: &str,
) {
    assert!(head.ends_with("\r\n\r\n"), "a whole request head");
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(head.as_bytes()).await.expect("send");
    let since = Instant::now();
    let writing = tokio::spawn(trickle(writer, vec![b'a'; 1_000]));
    let limit = body_timeout + SLACK;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(limit, reader.read_to_end(&mut buf)).await;
    writing.abort();
    assert!(read.is_ok(), "trickled body: still open after {limit:?}");
    let closed = Closed {
        bytes: buf,
        after: since.elapsed(),
    };
    closed_at("trickled body", &closed, body_timeout);
    assert_eq!(
        closed.status(),
        Some(408),
        "trickled body: {:?}",
        String::from_utf8_lossy(&closed.bytes)
    );
    still_serves(addr, path).await;
}

/// Two requests on one kept-alive connection (the second after half the idle
/// timeout: keep-alive works and a request restarts the clock), then silence: the
/// connection is closed once `idle_timeout` has passed since the last response, not
/// before, even when that is longer than the header timeout.
pub async fn idle_keep_alive_is_closed(addr: SocketAddr, idle_timeout: Duration, path: &str) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let (status, _) = get(&mut stream, path).await;
    assert_eq!(status, 200);
    tokio::time::sleep(idle_timeout / 2).await;
    let (status, _) = get(&mut stream, path).await;
    assert_eq!(
        status, 200,
        "the kept-alive connection serves a second request"
    );
    let since = Instant::now();
    let limit = idle_timeout + SLACK;
    let closed = read_until_closed(&mut stream, since, limit)
        .await
        .unwrap_or_else(|| panic!("idle connection: still open after {limit:?}"));
    closed_at("idle connection", &closed, idle_timeout);
    assert!(closed.bytes.is_empty(), "idle connection: nothing sent");
}

/// With `HTTP_MAX_CONNECTIONS=2`: two kept-alive connections hold both slots; a third
/// connects (the kernel's backlog) but its request is not answered while they stay
/// open; it is answered once one of them closes; then the service serves as usual.
pub async fn third_connection_waits_for_a_slot(addr: SocketAddr, path: &str) {
    let mut first = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(get(&mut first, path).await.0, 200);
    let mut second = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(get(&mut second, path).await.0, 200);

    let mut third = TcpStream::connect(addr)
        .await
        .expect("a connection over the bound still connects (listen backlog)");
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    third.write_all(request.as_bytes()).await.expect("send");
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(1500), third.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "the third connection is not served while two are open: {early:?}"
    );
    // The two still work meanwhile.
    assert_eq!(get(&mut second, path).await.0, 200);

    drop(first);
    let since = Instant::now();
    let closed = read_until_closed(&mut third, since, SLACK)
        .await
        .expect("the third connection is served and closed once a slot frees");
    assert_eq!(
        closed.status(),
        Some(200),
        "the waiting request's answer: {:?}",
        String::from_utf8_lossy(&closed.bytes)
    );

    drop(second);
    // Slots free again: fresh connections are served at once.
    for _ in 0..3 {
        let started = Instant::now();
        still_serves(addr, path).await;
        assert!(started.elapsed() < SLACK, "served without waiting");
    }
}
