//! The plumbing the read-only HTTP servers share (the package server, the registry server): a
//! listener on a thread of its own with its own async runtime, the response bodies, and files
//! streamed from a blocking thread in chunks with bounded memory.

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{mpsc, oneshot};

/// Bytes per chunk of a streamed file.
pub const CHUNK: usize = 64 << 10;

/// Files streamed at once, by every server of the process: each holds a blocking thread and a
/// decoder (up to 8 MiB of zstd window), so a crowd of slow clients waits for a turn instead of
/// taking the blocking pool and gigabytes. 64 keeps a fleet's pulls going on 2 cores.
const MAX_STREAMS: usize = 64;
static STREAMS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_STREAMS);

/// A client that takes nothing of a streamed body for this long is dropped.
const STALLED_CLIENT: Duration = Duration::from_secs(300);

/// A client that opens a connection and sends no complete request head within this is dropped.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A response body: whole, or streamed.
pub type Body = UnsyncBoxBody<Bytes, io::Error>;

/// A response in the making.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// What answers each request.
pub type Handler = Arc<dyn Fn(Request<Incoming>) -> ResponseFuture + Send + Sync>;

/// A running server. [`stop`](Self::stop), or dropping it, stops it and waits for its thread.
pub struct HttpServer {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl HttpServer {
    /// Listens on `addr` (port 0: any free port) and answers with the handler `make_handler`
    /// makes for the bound address, from a thread of its own with its own async runtime, so it
    /// runs alongside whatever the caller does. Fails at once when the address cannot be bound.
    /// `what` names the server in messages ("the package server"), `address_option` the option
    /// that chooses its address (`--port`), for the advice when the port is taken.
    pub fn start(
        what: &str,
        address_option: &str,
        addr: SocketAddr,
        make_handler: impl FnOnce(SocketAddr) -> Handler,
    ) -> Result<HttpServer> {
        let listener = std::net::TcpListener::bind(addr).map_err(|e| {
            let hint = match e.kind() {
                io::ErrorKind::AddrInUse => {
                    format!(" (another program listens there; choose another {address_option})")
                }
                io::ErrorKind::AddrNotAvailable => {
                    " (no network interface of this machine has that address)".to_string()
                }
                io::ErrorKind::PermissionDenied => {
                    " (ports below 1024 need privileges)".to_string()
                }
                _ => String::new(),
            };
            anyhow!("cannot listen on {addr}: {e}{hint}")
        })?;
        listener
            .set_nonblocking(true)
            .with_context(|| format!("cannot listen on {addr}"))?;
        let bound = listener
            .local_addr()
            .with_context(|| format!("cannot listen on {addr}"))?;
        let handler = make_handler(bound);
        let requests = Arc::new(AtomicU64::new(0));
        let counted = requests.clone();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<()>>();
        // The runtime is made and dropped on the server's thread: dropping a runtime inside
        // another one's async context (the caller's) panics.
        let thread = std::thread::Builder::new()
            .name("offpack-serve".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("offpack-serve")
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(accept_loop(listener, handler, counted, stop_rx, ready_tx));
                // Connections still open and files still streaming are cut off.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .with_context(|| format!("cannot start the thread of {what}"))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(anyhow!("cannot start {what} on {bound}: {e}"));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(anyhow!("{what} on {bound} stopped while starting"));
            }
        }
        Ok(HttpServer {
            addr: bound,
            requests,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The address it listens on (with the port chosen for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT` without a trailing slash; a server listening on every interface
    /// (`0.0.0.0`, `::`) is named by the loopback address.
    pub fn base_url(&self) -> String {
        base_url_of(self.addr)
    }

    /// How many requests it has answered or is answering.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Stops listening, cuts open connections and waits for the server's thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// `http://HOST:PORT` for a listening address.
pub fn base_url_of(addr: SocketAddr) -> String {
    format!("http://{}", client_addr_of(addr))
}

/// The address a client on this machine uses: the loopback address for a server listening on
/// every interface (`0.0.0.0`, `::`).
pub fn client_addr_of(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

async fn accept_loop(
    listener: std::net::TcpListener,
    handler: Handler,
    requests: Arc<AtomicU64>,
    mut stop: oneshot::Receiver<()>,
    ready: std::sync::mpsc::Sender<io::Result<()>>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // A response is written in pieces (the headers, then the file's chunks as they are
                // read): with Nagle's algorithm each piece after the first waits for the client's
                // delayed ACK, up to 40 ms a request, most of a small file's time.
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let requests = requests.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        requests.fetch_add(1, Ordering::Relaxed);
                        let response = handler(request);
                        async move { Ok::<_, Infallible>(response.await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

/// An empty body.
pub fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// A body of these bytes.
pub fn body_of(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|e| match e {}).boxed_unsync()
}

/// A JSON document, 200.
pub fn json_ok(
    value: &serde_json::Value,
    content_type: &'static str,
    head: bool,
) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    full(StatusCode::OK, content_type, body, head)
}

/// A whole response body; HEAD gets the same headers and no body.
pub fn full(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
    head: bool,
) -> Response<Body> {
    let body: Bytes = body.into();
    let len = body.len();
    let body = if head { empty() } else { body_of(body) };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

/// A plain-text response.
pub fn text(status: StatusCode, body: String, head: bool) -> Response<Body> {
    full(status, "text/plain; charset=utf-8", body.into_bytes(), head)
}

/// Where a blocking job sends the bytes of a streamed body.
pub struct Sink {
    tx: mpsc::Sender<io::Result<Bytes>>,
    runtime: tokio::runtime::Handle,
    opened: Option<oneshot::Sender<io::Result<()>>>,
}

impl Sink {
    /// Says the file is open: the response's head goes out. Until then an error from the job
    /// becomes the response (a 500) rather than a body cut short.
    pub fn opened(&mut self) {
        if let Some(opened) = self.opened.take() {
            let _ = opened.send(Ok(()));
        }
    }

    /// Hands one item to the body; false when the client went away, or stopped reading for
    /// [`STALLED_CLIENT`] (its stream's turn goes to another).
    fn send(&self, item: io::Result<Bytes>) -> bool {
        let sent = self
            .runtime
            .block_on(tokio::time::timeout(STALLED_CLIENT, self.tx.send(item)));
        matches!(sent, Ok(Ok(())))
    }

    /// Copies `reader` to its end into the body, in chunks of [`CHUNK`] bytes. Returns early,
    /// with `Ok`, when the client went away.
    ///
    /// Each chunk is held back until the next read succeeds: a checked reader (a bundle blob)
    /// reports a wrong digest only at the read that would end it, and once the body has all
    /// the bytes its `Content-Length` announced, hyper sends them and never hears the error. A
    /// failure therefore always leaves the body short, so the client sees a broken download.
    pub fn copy_from(&mut self, reader: &mut dyn Read) -> io::Result<()> {
        self.opened();
        let mut buf = vec![0u8; CHUNK];
        let mut held: Option<Bytes> = None;
        loop {
            match reader.read(&mut buf) {
                Ok(0) => {
                    if let Some(last) = held.take() {
                        let _ = self.send(Ok(last));
                    }
                    return Ok(());
                }
                Ok(n) => {
                    let chunk = Bytes::copy_from_slice(&buf[..n]);
                    if let Some(previous) = held.replace(chunk)
                        && !self.send(Ok(previous))
                    {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Streams a body that `job` produces on a blocking thread (reading a file), a few chunks
/// ahead of the client at most. An error before [`Sink::opened`] is returned here (nothing was
/// sent yet); one after it ends the body short of its length, so the client sees a failed
/// download, never other bytes.
pub async fn stream_blocking(
    job: impl FnOnce(&mut Sink) -> io::Result<()> + Send + 'static,
) -> io::Result<Body> {
    let permit = STREAMS
        .acquire()
        .await
        .map_err(|_| io::Error::other("the server is stopping"))?;
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    let (opened_tx, opened_rx) = oneshot::channel::<io::Result<()>>();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut sink = Sink {
            tx,
            runtime,
            opened: Some(opened_tx),
        };
        let result = job(&mut sink);
        match (result, sink.opened.take()) {
            (Ok(()), Some(opened)) => {
                let _ = opened.send(Ok(()));
            }
            (Err(e), Some(opened)) => {
                let _ = opened.send(Err(e));
            }
            (Ok(()), None) => {}
            (Err(e), None) => {
                let _ = sink.send(Err(e));
            }
        }
    });
    match opened_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(io::Error::other("the read stopped")),
    }
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item.map(Frame::data), rx))
    });
    Ok(StreamBody::new(stream).boxed_unsync())
}

/// What a `Range` header asks of a resource of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No range, or one this server ignores (several ranges, another unit, bad syntax): the
    /// whole resource, as RFC 9110 lets a server do.
    Whole,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// Starts past the end: 416.
    Unsatisfiable,
}

/// Reads a `Range` header value (`bytes=START-END`, `bytes=START-`, `bytes=-SUFFIX`).
pub fn parse_range(value: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (number(first), number(last), last.trim().is_empty()) {
        (Some(start), _, true) if start < size => RangeRequest::Part {
            start,
            end: size - 1,
        },
        (Some(start), Some(end), false) if start <= end => {
            if start >= size {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Part {
                    start,
                    end: end.min(size - 1),
                }
            }
        }
        (Some(_), _, true) => RangeRequest::Unsatisfiable,
        (None, Some(suffix), false) if first.trim().is_empty() => {
            if suffix == 0 || size == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Part {
                    start: size.saturating_sub(suffix),
                    end: size - 1,
                }
            }
        }
        _ => RangeRequest::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gives `data`, then fails where it would end (as a bundle blob whose digest is wrong).
    struct FailsAtTheEnd {
        data: io::Cursor<Vec<u8>>,
    }

    impl Read for FailsAtTheEnd {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.data.read(buf)? {
                0 => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "digest mismatch",
                )),
                n => Ok(n),
            }
        }
    }

    /// What a client receives of a streamed body: the bytes, and whether it ended in an error.
    async fn receive(body: Body) -> (Vec<u8>, bool) {
        let mut body = body;
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => bytes.extend_from_slice(frame.data_ref().unwrap()),
                Err(_) => return (bytes, true),
            }
        }
        (bytes, false)
    }

    #[tokio::test]
    async fn a_read_that_fails_at_the_end_leaves_the_body_short() {
        for len in [10, CHUNK, CHUNK + 10, 3 * CHUNK] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let body = stream_blocking(move |sink| {
                sink.copy_from(&mut FailsAtTheEnd {
                    data: io::Cursor::new(data),
                })
            })
            .await
            .unwrap();
            let (bytes, failed) = receive(body).await;
            assert!(failed, "{len}: the error reaches the body");
            assert!(bytes.len() < len, "{len}: got {} bytes", bytes.len());
        }
        let whole: Vec<u8> = vec![7; CHUNK + 1];
        let sent = whole.clone();
        let body = stream_blocking(move |sink| sink.copy_from(&mut io::Cursor::new(sent)))
            .await
            .unwrap();
        assert_eq!(receive(body).await, (whole, false));
    }

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        let part = |start, end| RangeRequest::Part { start, end };
        assert_eq!(parse_range(None, 10), RangeRequest::Whole);
        assert_eq!(parse_range(Some("bytes=0-3"), 10), part(0, 3));
        assert_eq!(parse_range(Some("bytes=4-"), 10), part(4, 9));
        assert_eq!(parse_range(Some("bytes=4-100"), 10), part(4, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), part(7, 9));
        assert_eq!(parse_range(Some("bytes=-30"), 10), part(0, 9));
        assert_eq!(
            parse_range(Some("bytes=10-"), 10),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(
            parse_range(Some("bytes=10-12"), 10),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(
            parse_range(Some("bytes=-0"), 10),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(parse_range(Some("bytes=5-2"), 10), RangeRequest::Whole);
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), RangeRequest::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 10), RangeRequest::Whole);
        assert_eq!(parse_range(Some("bytes=x-1"), 10), RangeRequest::Whole);
    }
}
