//! The HTTP edge of the renderer and the collector (feature `http-server`): one
//! [`serve`] for both, so a client that opens a connection and never finishes with it
//! cannot hold it, or the service, for ever.
//!
//! `axum::serve` has no read timeouts: a request line without its blank line, or a
//! body trickled a byte at a time, keeps a connection (a task, a file descriptor,
//! buffers) open for as long as the client likes, and nothing bounds how many such
//! connections there are. [`serve`] runs the same axum router over hyper's HTTP/1.1
//! server (the only protocol the services spoke before: axum is built without
//! `http2`) with four bounds, [`HttpLimits`]:
//!
//! - **Header timeout** (`HTTP_HEADER_TIMEOUT_MS`): a new connection must deliver its
//!   first request's headers within it, counted from the accept; a later request on a
//!   kept-alive connection, counted from its first byte. Past it the connection is
//!   closed without an answer (what the client sees: EOF or a reset). hyper's own
//!   `header_read_timeout` is not used: it counts from the moment the connection is
//!   ready for a request, so it would also cut every idle keep-alive connection at the
//!   header timeout, and the idle timeout could never be longer.
//! - **Body timeout** (`HTTP_BODY_TIMEOUT_MS`): the whole request body must arrive
//!   within it, counted from the end of the headers (not per chunk: a byte every
//!   second would reset a per-chunk timer for ever). A read past it fails
//!   ([`BodyTimeout`]) and the answer becomes `408 Request Timeout` with
//!   `Connection: close`, whatever the handler made of the failed read.
//! - **Idle timeout** (`HTTP_IDLE_TIMEOUT_MS`): a kept-alive connection with no
//!   request in flight (the last response written in full, no byte of a next one) is
//!   closed after it. A request in flight (a render, a server-sent-events stream) is
//!   never idle.
//! - **Connection bound** (`HTTP_MAX_CONNECTIONS`): at most this many connections are
//!   served at once. The accept loop takes a slot *before* it accepts, so connections
//!   over the bound wait in the kernel's accept backlog (1024 on Linux) and are served
//!   in turn as slots free up; once the backlog is full the kernel drops new SYNs and
//!   the client's connect retries and then times out. Nothing is accepted only to be
//!   closed: a client briefly over the bound waits instead of failing, and the
//!   timeouts above bound how long any slot can be held by a client that sends
//!   nothing, slowly or not at all.
//!
//! Graceful shutdown is `axum::serve(..).with_graceful_shutdown(..)`'s: when the
//! `shutdown` future resolves the listener stops accepting (and is closed, so new
//! connections are refused), idle connections and connections still reading their
//! headers are closed, requests in flight run to the end with `Connection: close`,
//! and [`serve`] returns once every connection is gone. Long streams end when their
//! handler ends them (the services end their SSE streams on the same shutdown
//! signal). Each request also carries `axum::extract::ConnectInfo<SocketAddr>` (the
//! peer's address), as `into_make_service_with_connect_info` would give it.
//!
//! Not bounded here: how long a handler takes, and how fast a client reads a
//! response (a client that stops reading holds its connection while the handler's
//! response waits to be written).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt as _;

/// Default [`HttpLimits::header_timeout`] (`HTTP_HEADER_TIMEOUT_MS`). Browsers,
/// proxies and HTTP clients send a request's headers in one write, delivered in well
/// under a second even over a poor mobile link; 10 s leaves room for a lossy network
/// and still frees a connection whose client trickles its headers (slowloris) or
/// connects and sends nothing.
pub const DEFAULT_HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`HttpLimits::body_timeout`] (`HTTP_BODY_TIMEOUT_MS`). The largest request
/// either service takes is a render: two base64 photos of a few MB each (at most the
/// renderer's 32 MiB `MAX_BODY_BYTES`). 30 s is ~1.1 MB/s for the full 32 MiB and
/// ~300 kB/s for a typical 8 MB request, which Shopify's app proxy and any uplink
/// worth rendering over manage; a body trickled slower than that is refused.
pub const DEFAULT_HTTP_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`HttpLimits::idle_timeout`] (`HTTP_IDLE_TIMEOUT_MS`). A kept-alive
/// connection saves the next request a TCP handshake (a shopper's next render, the
/// monitor's next page), but an idle one holds a slot of [`HttpLimits::max_connections`].
/// 75 s (nginx's `keepalive_timeout`) is longer than the 60 s idle timeout of common
/// load balancers in front (AWS ALB, GCP), so the proxy, not the service, closes an
/// idle connection: otherwise the proxy may send a request on a connection the service
/// is closing at that moment and answer the client 502.
pub const DEFAULT_HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// Default [`HttpLimits::max_connections`] (`HTTP_MAX_CONNECTIONS`). Each connection
/// is a file descriptor and a task with hyper's buffers (up to ~400 KiB each while a
/// large head is read). 512 stays under the 1024 open files a process gets by default
/// on many Linux hosts (systemd's soft `LimitNOFILE`), with room left for the database,
/// NATS and image files, and is far more than a browser (6 per host) or Shopify's
/// app proxy needs at once.
pub const DEFAULT_HTTP_MAX_CONNECTIONS: usize = 512;
/// Longest timeout accepted: past an hour a timeout no longer bounds anything (and a
/// typo with extra zeros is caught at start-up). The flags' range, with 1 ms.
pub const MAX_HTTP_TIMEOUT: Duration = Duration::from_secs(3600);
/// [`MAX_HTTP_TIMEOUT`] in the flags' unit.
const MAX_HTTP_TIMEOUT_MS: u64 = MAX_HTTP_TIMEOUT.as_millis() as u64;
/// Largest connection bound accepted (a typo with extra zeros is caught at start-up).
pub const MAX_HTTP_MAX_CONNECTIONS: usize = 1_000_000;

/// The bounds [`serve`] puts on every connection. The same knobs, with the same
/// names, on the renderer and the collector ([`HttpArgs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// See [`DEFAULT_HTTP_HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// See [`DEFAULT_HTTP_BODY_TIMEOUT`].
    pub body_timeout: Duration,
    /// See [`DEFAULT_HTTP_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// See [`DEFAULT_HTTP_MAX_CONNECTIONS`].
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HTTP_HEADER_TIMEOUT,
            body_timeout: DEFAULT_HTTP_BODY_TIMEOUT,
            idle_timeout: DEFAULT_HTTP_IDLE_TIMEOUT,
            max_connections: DEFAULT_HTTP_MAX_CONNECTIONS,
        }
    }
}

/// The [`HttpLimits`] flags, flattened into the renderer's and the collector's
/// command lines so both accept the same names. The fields are prefixed `http_`:
/// clap's argument ids are the field names, and must not clash with the flattening
/// command's own (the collector's `--database-max-connections` is `max_connections`).
/// Their ranges are here, in the `value_parser`s: timeouts 1 ms to
/// [`MAX_HTTP_TIMEOUT`], the connection bound 1 to [`MAX_HTTP_MAX_CONNECTIONS`].
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Milliseconds a client has to send a request's headers (from the accept for a
    /// new connection, from the first byte on a kept-alive one); then it is closed.
    #[arg(long = "http-header-timeout-ms", env = "HTTP_HEADER_TIMEOUT_MS", default_value_t = DEFAULT_HTTP_HEADER_TIMEOUT.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..=MAX_HTTP_TIMEOUT_MS))]
    pub http_header_timeout_ms: u64,
    /// Milliseconds a client has to send a request's whole body, from the end of its
    /// headers; then the answer is 408 and the connection is closed.
    #[arg(long = "http-body-timeout-ms", env = "HTTP_BODY_TIMEOUT_MS", default_value_t = DEFAULT_HTTP_BODY_TIMEOUT.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..=MAX_HTTP_TIMEOUT_MS))]
    pub http_body_timeout_ms: u64,
    /// Milliseconds a kept-alive connection may stay open with no request in flight.
    #[arg(long = "http-idle-timeout-ms", env = "HTTP_IDLE_TIMEOUT_MS", default_value_t = DEFAULT_HTTP_IDLE_TIMEOUT.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..=MAX_HTTP_TIMEOUT_MS))]
    pub http_idle_timeout_ms: u64,
    /// Connections served at once; more wait in the listen backlog until one closes.
    #[arg(long = "http-max-connections", env = "HTTP_MAX_CONNECTIONS", default_value_t = DEFAULT_HTTP_MAX_CONNECTIONS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_HTTP_MAX_CONNECTIONS as u64))]
    pub http_max_connections: usize,
}

impl HttpArgs {
    /// The limits the flags describe (in range: clap checked them).
    pub fn limits(&self) -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_millis(self.http_header_timeout_ms),
            body_timeout: Duration::from_millis(self.http_body_timeout_ms),
            idle_timeout: Duration::from_millis(self.http_idle_timeout_ms),
            max_connections: self.http_max_connections,
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves, then
/// drains: see the [module documentation](self). The counterpart of
/// `axum::serve(listener, router).with_graceful_shutdown(shutdown)`.
///
/// # Errors
/// None today (accept errors are logged and retried, as `axum::serve` does); the
/// `io::Result` keeps the callers' signatures.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let mut shutdown = pin!(shutdown);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Dropping `stop_rx` tells every connection to shut down gracefully; every
    // connection holds a `close_rx` until it is gone, so `close_tx.closed()` waits
    // for all of them (the same two channels as `axum::serve`).
    let (stop_tx, stop_rx) = watch::channel(());
    let (close_tx, close_rx) = watch::channel(());
    loop {
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_error(err).await;
                    continue;
                }
            },
        };
        let connection = Connection {
            router: router.clone(),
            limits,
            peer,
        };
        let stop_tx = stop_tx.clone();
        let close_rx = close_rx.clone();
        tokio::spawn(async move {
            connection.run(stream, stop_tx).await;
            drop(close_rx);
            drop(slot);
        });
    }
    drop(listener);
    drop(stop_rx);
    drop(close_rx);
    close_tx.closed().await;
    Ok(())
}

/// `axum::serve`'s handling: a connection reset before it was accepted is nothing;
/// anything else (out of file descriptors) is logged and the loop pauses a second.
async fn accept_error(err: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %err, "accept error");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// One accepted connection.
struct Connection {
    router: Router,
    limits: HttpLimits,
    peer: SocketAddr,
}

impl Connection {
    /// Serves the connection until the client or a bound closes it.
    async fn run(self, stream: TcpStream, stop_tx: watch::Sender<()>) {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            io: stream,
            activity: activity.clone(),
        });
        let Connection {
            router,
            limits,
            peer,
        } = self;
        let service = {
            let activity = activity.clone();
            hyper::service::service_fn(move |request: Request<Incoming>| {
                handle(
                    router.clone(),
                    request,
                    InFlight::start(activity.clone()),
                    limits.body_timeout,
                    peer,
                )
            })
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        // Headers are timed by `Activity` (see the module documentation).
        builder.header_read_timeout(None);
        let mut conn = pin!(builder.serve_connection(io, service).with_upgrades());
        let mut stopping = pin!(stop_tx.closed());
        let mut expired = pin!(activity.expired(limits));
        let (mut stopped, mut idle_closed) = (false, false);
        loop {
            tokio::select! {
                served = conn.as_mut() => {
                    if let Err(err) = served {
                        tracing::debug!(%peer, error = %err, "connection ended with an error");
                    }
                    break;
                }
                () = &mut stopping, if !stopped => {
                    // A request whose headers are still arriving has not started: close
                    // (hyper would wait for the first request's headers to finish).
                    if matches!(*activity.phase(), Phase::Headers(_)) {
                        break;
                    }
                    stopped = true;
                    conn.as_mut().graceful_shutdown();
                }
                expiry = &mut expired, if !idle_closed => match expiry {
                    Expiry::Idle => {
                        // Closes it now, or after a request that raced in.
                        idle_closed = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    Expiry::Headers => {
                        tracing::debug!(%peer, "request headers not received in time; closing");
                        break;
                    }
                },
            }
        }
    }
}

/// One request: the body on a deadline, the peer's address, and 408 when the body
/// did not arrive in time. The [`InFlight`] guard lives until the response body is
/// written (or dropped).
async fn handle(
    router: Router,
    request: Request<Incoming>,
    in_flight: InFlight,
    body_timeout: Duration,
    peer: SocketAddr,
) -> Result<Response<Body>, Infallible> {
    let timed_out = Arc::new(AtomicBool::new(false));
    let mut request = request.map(|body| {
        Body::new(DeadlineBody {
            inner: body,
            deadline: Instant::now() + body_timeout,
            sleep: None,
            timed_out: timed_out.clone(),
        })
    });
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let response = if timed_out.load(Ordering::Relaxed) {
        tracing::debug!(%peer, "request body not received in time; 408");
        body_timeout_response()
    } else {
        response
    };
    Ok(response.map(|body| {
        Body::new(Tracked {
            inner: body,
            _in_flight: in_flight,
        })
    }))
}

/// `408 Request Timeout`, `Connection: close`.
fn body_timeout_response() -> Response<Body> {
    let mut response = Response::new(Body::from(
        "request body not received within HTTP_BODY_TIMEOUT_MS\n",
    ));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The error a request body read returns past [`HttpLimits::body_timeout`]; the
/// response is then replaced by 408 whatever the handler answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request body not received within HTTP_BODY_TIMEOUT_MS")]
pub struct BodyTimeout;

/// Whether `err` (a failed body read, e.g. `axum::body::to_bytes`'s error) or one of
/// its sources is a [`BodyTimeout`]: for a handler that records why it could not read
/// a body (the answer is 408 whatever it returns).
pub fn is_body_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if err.is::<BodyTimeout>() {
            return true;
        }
        cause = err.source();
    }
    false
}

/// A request body that fails with [`BodyTimeout`] once its deadline has passed.
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    /// Made on the first read that has to wait.
    sleep: Option<Pin<Box<Sleep>>>,
    timed_out: Arc<AtomicBool>,
}

impl DeadlineBody {
    fn timeout(&mut self) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        self.timed_out.store(true, Ordering::Relaxed);
        Poll::Ready(Some(Err(BodyTimeout.into())))
    }
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.timed_out.load(Ordering::Relaxed) || Instant::now() >= this.deadline {
            return this.timeout();
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(sleep.as_mut().poll(cx));
        this.timeout()
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request "in flight" until it is written or dropped.
struct Tracked {
    inner: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Where a connection is, for its header and idle timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request's headers since then (from the accept, or from the first
    /// byte of a later request).
    Headers(Instant),
    /// This many requests dispatched and not yet answered in full.
    Busy(usize),
    /// No request in flight since then.
    Idle(Instant),
}

/// Which timeout ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Headers,
    Idle,
}

/// A connection's [`Phase`], moved by its reads ([`Watched`]) and requests
/// ([`InFlight`]), watched by [`Activity::expired`].
struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Headers(Instant::now())),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        // Every critical section is an assignment: a poisoned value is still valid.
        self.phase
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set(&self, phase: Phase) {
        *self.phase() = phase;
        self.changed.notify_one();
    }

    /// Bytes arrived: the first byte of a request ends an idle wait.
    fn bytes_read(&self) {
        let mut phase = self.phase();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Headers(Instant::now());
            drop(phase);
            self.changed.notify_one();
        }
    }

    fn request_started(&self) {
        let busy = match *self.phase() {
            Phase::Busy(n) => n + 1,
            _ => 1,
        };
        self.set(Phase::Busy(busy));
    }

    fn request_finished(&self) {
        let next = match *self.phase() {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        };
        self.set(next);
    }

    /// Resolves when the headers being read or the idle wait have outlasted their
    /// timeout; never while a request is in flight.
    async fn expired(&self, limits: HttpLimits) -> Expiry {
        loop {
            // A change before this wait stores a permit: no change is missed.
            let changed = self.changed.notified();
            let phase = *self.phase();
            let (at, expiry) = match phase {
                Phase::Headers(since) => (since + limits.header_timeout, Expiry::Headers),
                Phase::Idle(since) => (since + limits.idle_timeout, Expiry::Idle),
                Phase::Busy(_) => {
                    changed.await;
                    continue;
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(at) => {
                    // Unless a request started meanwhile.
                    if *self.phase() == phase {
                        return expiry;
                    }
                }
                () = changed => {}
            }
        }
    }
}

/// Marks a request in flight on its connection until dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> Self {
        activity.request_started();
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// The socket, telling its [`Activity`] when bytes arrive.
struct Watched {
    io: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.bytes_read();
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_timeout_is_found_under_the_errors_axum_wraps_it_in() {
        let read = axum::Error::new(axum::Error::new(BodyTimeout));
        assert!(is_body_timeout(&read));
        assert!(!is_body_timeout(&axum::Error::new(std::io::Error::other(
            "reset"
        ))));
    }

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        http: HttpArgs,
    }

    #[test]
    fn the_flags_default_to_the_default_limits() {
        use clap::Parser as _;
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.http.limits(), HttpLimits::default());
    }

    #[test]
    fn wrong_values_name_their_setting() {
        use clap::Parser as _;
        let max_timeout = MAX_HTTP_TIMEOUT_MS.to_string();
        let over_timeout = (MAX_HTTP_TIMEOUT_MS + 1).to_string();
        let over_connections = (MAX_HTTP_MAX_CONNECTIONS + 1).to_string();
        let u64_max = u64::MAX.to_string();
        let timeouts = format!("1..={max_timeout}");
        let connections = format!("1..={MAX_HTTP_MAX_CONNECTIONS}");
        let cases = [
            (
                "--http-header-timeout-ms",
                "0",
                "HTTP_HEADER_TIMEOUT_MS",
                &timeouts,
            ),
            (
                "--http-body-timeout-ms",
                "0",
                "HTTP_BODY_TIMEOUT_MS",
                &timeouts,
            ),
            (
                "--http-idle-timeout-ms",
                over_timeout.as_str(),
                "HTTP_IDLE_TIMEOUT_MS",
                &timeouts,
            ),
            (
                "--http-max-connections",
                "0",
                "HTTP_MAX_CONNECTIONS",
                &connections,
            ),
            (
                "--http-max-connections",
                over_connections.as_str(),
                "HTTP_MAX_CONNECTIONS",
                &connections,
            ),
            (
                "--http-header-timeout-ms",
                u64_max.as_str(),
                "HTTP_HEADER_TIMEOUT_MS",
                &timeouts,
            ),
        ];
        for (flag, value, setting, range) in cases {
            let line = crate::cli::refused_value::<Cli>(&["x", flag, value]).unwrap();
            let named = line.starts_with(&format!("invalid setting {setting}: "));
            assert!(named && line.contains(range.as_str()), "{line}");
        }
        // The bounds themselves are accepted.
        let cli = Cli::try_parse_from(["x", "--http-idle-timeout-ms", &max_timeout]).unwrap();
        assert_eq!(cli.http.limits().idle_timeout, MAX_HTTP_TIMEOUT);
    }
}
