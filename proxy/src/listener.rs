//! The proxy's own accept loop: every connection-level bound lives here.
//!
//! A shared proxy faces clients it does not trust, so each connection is
//! bounded before a single byte of a request is read:
//! - at most `max_connections` at once; more are closed at accept (counted)
//!   rather than queued;
//! - a TLS handshake and a request's headers must arrive within
//!   `header_read_timeout` (slowloris);
//! - a connection with no request in flight and no bytes moving for
//!   `idle_timeout` is closed (keep-alive and HTTP/2 alike);
//! - HTTP/2 connections carry at most `http2_max_streams` concurrent streams.
//!
//! HTTP/1.1 and HTTP/2 (prior knowledge, e.g. gRPC) are served on the same
//! port. On stop the listener is closed first (new connections are refused)
//! and open connections are shut down gracefully.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// What the listener reports about connections (metrics live elsewhere
/// and are passed in).
pub trait ConnEvents: Send + Sync + 'static {
    fn opened(&self);
    fn closed(&self);
    /// Closed at accept: `max_connections` were open.
    fn refused(&self);
}

/// Connection-level bounds of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    /// For the TLS handshake and for each request's headers.
    pub header_read_timeout: Duration,
    /// A connection with nothing in flight for this long is closed.
    pub idle_timeout: Duration,
    pub http2_max_streams: u32,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            http2_max_streams: DEFAULT_HTTP2_MAX_STREAMS,
        }
    }
}

/// Defaults of the flags of the same names (see `hos-proxy serve --help`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_HTTP2_MAX_STREAMS: u32 = 128;

/// How long a connection told to close may take to finish what it has in
/// flight before it is dropped (the process-wide shutdown grace still
/// bounds the whole drain on SIGTERM).
const CLOSE_GRACE: Duration = Duration::from_secs(30);

/// A server-side TLS setup that may change (certificate reloads): each
/// connection takes the configuration current at its accept.
pub type TlsSource = axum_server::tls_rustls::RustlsConfig;

/// `pending_ms` when no request head is awaited.
const NOT_PENDING: u64 = u64::MAX;

/// The clocks of one connection: when bytes last moved, how many requests
/// are in flight, and since when a request head has been awaited.
///
/// The header-read bound is kept here rather than by hyper's
/// `header_read_timeout`, which also closes idle keep-alive connections at
/// that (short) bound and races clients that reuse them. Here a head is
/// awaited from the connection's start, and again from the first byte that
/// arrives while nothing is in flight; it ends when the request is handed
/// to the service. HTTP/2 connections await only their first request (later
/// bytes with nothing in flight are pings and window updates).
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
    pending_ms: AtomicU64,
    first_read: AtomicBool,
    h2: AtomicBool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            pending_ms: AtomicU64::new(0),
            first_read: AtomicBool::new(true),
            h2: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NOT_PENDING - 1)
    }

    fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn read(&self, data: &[u8]) {
        self.touch();
        if self.first_read.swap(false, Ordering::Relaxed) && data.starts_with(b"PRI * HTTP/2.0") {
            self.h2.store(true, Ordering::Relaxed);
        }
        if self.in_flight.load(Ordering::Relaxed) == 0 && !self.h2.load(Ordering::Relaxed) {
            let _ = self.pending_ms.compare_exchange(
                NOT_PENDING,
                self.now_ms(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    /// How long a request head has been awaited, if one is.
    fn head_pending_for(&self) -> Option<Duration> {
        match self.pending_ms.load(Ordering::Relaxed) {
            NOT_PENDING => None,
            since => Some(
                self.start
                    .elapsed()
                    .saturating_sub(Duration::from_millis(since)),
            ),
        }
    }
}

/// Counts a request in flight until its response future is done.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(a: &Arc<Activity>) -> InFlight {
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        a.pending_ms.store(NOT_PENDING, Ordering::Relaxed);
        a.touch();
        InFlight(Arc::clone(a))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream that records when bytes last moved.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read(&buf.filled()[before..]);
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

fn builder(limits: &ConnLimits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        // Enforced by the connection's watchdog (see [`Activity`]).
        .header_read_timeout(None)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_streams)
        // Bounds what one client can make the proxy buffer for headers.
        .max_header_list_size(64 * 1024);
    b
}

/// Serves one accepted connection until it ends, idles out, or `stop` flips.
async fn serve_connection<S>(
    io: S,
    peer: SocketAddr,
    app: Router,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: io,
        activity: Arc::clone(&activity),
    });
    let act = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let guard = InFlight::new(&act);
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            let resp = app.oneshot(req).await;
            drop(guard);
            resp
        }
    });
    let b = builder(&limits);
    let conn = b.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let check_every =
        (limits.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(check_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing_since: Option<Instant> = None;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|s| *s), if closing_since.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing_since = Some(Instant::now());
            }
            _ = ticker.tick() => {
                if activity
                    .head_pending_for()
                    .is_some_and(|d| d >= limits.header_read_timeout)
                {
                    // A request head too slow to arrive (slowloris), or a
                    // connection that never sent one: drop it outright.
                    tracing::debug!(%peer, "closing connection: request head not received in time");
                    return;
                }
                match closing_since {
                    None => {
                        if activity.in_flight.load(Ordering::Relaxed) == 0
                            && activity.idle_for() >= limits.idle_timeout
                        {
                            tracing::debug!(%peer, "closing idle connection");
                            conn.as_mut().graceful_shutdown();
                            closing_since = Some(Instant::now());
                        }
                    }
                    Some(at) if at.elapsed() >= CLOSE_GRACE => {
                        tracing::debug!(%peer, "connection did not close in time; dropping it");
                        return;
                    }
                    Some(_) => {}
                }
            }
        }
    }
}

/// Serves `app` on `listener` (over TLS when `tls` is set) until `stop`
/// flips, then closes the listener and lets open connections finish.
pub async fn serve<E: ConnEvents>(
    listener: std::net::TcpListener,
    app: Router,
    tls: Option<TlsSource>,
    limits: ConnLimits,
    events: Arc<E>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let max = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off a little
                // instead of spinning on the error.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            events.refused();
            tracing::debug!(%peer, max, "connection refused: --max-connections reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let stop = stop.clone();
        let tls = tls.clone();
        let events = Arc::clone(&events);
        tokio::spawn(async move {
            let _permit = permit;
            events.opened();
            match tls {
                None => serve_connection(stream, peer, app, limits, stop).await,
                Some(cfg) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(cfg.get_inner());
                    match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls_stream)) => {
                            serve_connection(tls_stream, peer, app, limits, stop).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            events.closed();
        });
    }
    // New connections are refused from here on; open ones were told to
    // finish (each watches `stop`). Wait until every slot is back.
    drop(listener);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
    Ok(())
}
