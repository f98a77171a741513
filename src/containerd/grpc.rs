//! gRPC as containerd speaks it, over HTTP/2 on its unix socket: each message framed as a flag
//! byte and a big-endian length, the call's outcome in the `grpc-status`/`grpc-message`
//! trailers (or in the headers, for an answer that carries no message). hyper carries HTTP/2;
//! prost encodes the messages (docs/decisions/0094-containerd-grpc-over-hyper.md).

use std::io;
use std::path::{Path, PathBuf};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{Stream, TryStreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http2::SendRequest;
use hyper::header::{HeaderMap, HeaderValue};
use hyper_util::rt::{TokioExecutor, TokioIo};

type Body = UnsyncBoxBody<Bytes, io::Error>;

/// containerd refuses messages over 16 MiB (its default `max_recv_message_size`); offpack's
/// answers are small, so anything larger is a broken stream.
const MAX_MESSAGE: usize = 16 << 20;

/// A gRPC status code other than OK, with containerd's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: i32,
    pub message: String,
}

impl Status {
    pub const NOT_FOUND: i32 = 5;
    pub const ALREADY_EXISTS: i32 = 6;
    pub const UNAVAILABLE: i32 = 14;

    /// The code's name as gRPC spells it.
    pub fn code_name(&self) -> &'static str {
        match self.code {
            1 => "cancelled",
            2 => "unknown",
            3 => "invalid argument",
            4 => "deadline exceeded",
            5 => "not found",
            6 => "already exists",
            7 => "permission denied",
            8 => "resource exhausted",
            9 => "failed precondition",
            10 => "aborted",
            11 => "out of range",
            12 => "unimplemented",
            13 => "internal",
            14 => "unavailable",
            15 => "data loss",
            16 => "unauthenticated",
            _ => "error",
        }
    }
}

/// Why a call failed: containerd's answer, or the connection.
#[derive(Debug)]
pub enum CallError {
    Status(Status),
    Transport(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // containerd's messages name the error's class themselves.
            CallError::Status(status) if !status.message.is_empty() => f.write_str(&status.message),
            CallError::Status(status) => f.write_str(status.code_name()),
            CallError::Transport(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for CallError {}

impl CallError {
    pub fn code(&self) -> Option<i32> {
        match self {
            CallError::Status(status) => Some(status.code),
            CallError::Transport(_) => None,
        }
    }
}

/// One HTTP/2 connection to containerd, with the metadata every call carries.
#[derive(Clone)]
pub struct Channel {
    send: SendRequest<Body>,
    socket: PathBuf,
    namespace: HeaderValue,
    lease: Option<HeaderValue>,
}

impl Channel {
    /// Opens the connection; the error is the socket's (missing, refused, not allowed).
    pub async fn connect(socket: &Path, namespace: &str) -> Result<Channel, io::Error> {
        let stream = tokio::net::UnixStream::connect(socket).await?;
        let (send, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            // Answers are small; the bytes go the other way, under containerd's windows.
            .initial_stream_window_size(1 << 20)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        tokio::spawn(connection);
        Ok(Channel {
            send,
            socket: socket.to_path_buf(),
            namespace: HeaderValue::from_str(namespace).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{namespace:?} is not a valid containerd namespace"),
                )
            })?,
            lease: None,
        })
    }

    /// The same connection, each call of it under lease `id`.
    pub fn with_lease(&self, id: &str) -> Channel {
        let mut channel = self.clone();
        channel.lease = HeaderValue::from_str(id).ok();
        channel
    }

    /// Calls unary method `path` (`/containerd.services.content.v1.Content/Info`).
    pub async fn unary<Q: prost::Message, R: prost::Message + Default>(
        &self,
        path: &str,
        request: &Q,
    ) -> Result<R, CallError> {
        let body = Full::new(frame(request))
            .map_err(|never| match never {})
            .boxed_unsync();
        let mut answer = None;
        self.call(path, body, |message| {
            answer.get_or_insert(message);
            Ok(())
        })
        .await?;
        let message = answer.ok_or_else(|| {
            CallError::Transport(format!("containerd answered {path} with no message"))
        })?;
        R::decode(message).map_err(|e| {
            CallError::Transport(format!(
                "containerd's answer to {path} does not decode: {e}"
            ))
        })
    }

    /// Calls streaming method `path` with `requests` (each already framed, see [`frame`]),
    /// handing each answer to `on_answer` as it comes.
    pub async fn streaming<R: prost::Message + Default>(
        &self,
        path: &str,
        requests: impl Stream<Item = io::Result<Bytes>> + Send + 'static,
        mut on_answer: impl FnMut(R) -> Result<(), CallError>,
    ) -> Result<(), CallError> {
        let body = BodyExt::boxed_unsync(StreamBody::new(requests.map_ok(Frame::data)));
        self.call(path, body, |message| {
            let answer = R::decode(message).map_err(|e| {
                CallError::Transport(format!(
                    "containerd's answer to {path} does not decode: {e}"
                ))
            })?;
            on_answer(answer)
        })
        .await
    }

    async fn call(
        &self,
        path: &str,
        body: Body,
        mut on_message: impl FnMut(Bytes) -> Result<(), CallError>,
    ) -> Result<(), CallError> {
        let transport = |e: &dyn std::fmt::Display| CallError::Transport(format!("{path}: {e}"));
        // The connection broke: containerd stopped or restarted, most likely.
        let gone = |e: &dyn std::fmt::Display| {
            CallError::Transport(format!(
                "containerd at {} did not answer {path} ({e}): did it stop?",
                self.socket.display()
            ))
        };
        let mut builder = hyper::Request::post(format!("http://containerd{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("containerd-namespace", self.namespace.clone());
        if let Some(lease) = &self.lease {
            builder = builder.header("containerd-lease", lease.clone());
        }
        let request = builder.body(body).map_err(|e| transport(&e))?;
        let mut send = self.send.clone();
        send.ready().await.map_err(|e| gone(&e))?;
        let response = send.send_request(request).await.map_err(|e| gone(&e))?;
        if !response.status().is_success() {
            return Err(transport(&format!(
                "HTTP status {} (is {} containerd's gRPC socket?)",
                response.status(),
                self.socket.display()
            )));
        }
        // An answer without messages carries its status in the headers alone.
        if let Some(status) = status_of(response.headers()) {
            return status;
        }
        let mut body = response.into_body();
        let mut buffer = BytesMut::new();
        let mut status = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| gone(&e))?;
            match frame.into_data() {
                Ok(data) => {
                    buffer.extend_from_slice(&data);
                    while let Some(message) =
                        take_message(&mut buffer).map_err(|e| transport(&e))?
                    {
                        on_message(message)?;
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        status = status_of(&trailers);
                    }
                }
            }
        }
        status.unwrap_or_else(|| Err(transport(&"the answer ended without a gRPC status")))
    }
}

/// A message as gRPC frames it: uncompressed, its length in four big-endian bytes.
pub fn frame(message: &impl prost::Message) -> Bytes {
    let length = message.encoded_len();
    let mut out = BytesMut::with_capacity(5 + length);
    out.put_u8(0);
    out.put_u32(length as u32);
    message
        .encode(&mut out)
        .expect("a BytesMut with room for the message");
    out.freeze()
}

/// The next whole message at the start of `buffer`, if it holds one.
fn take_message(buffer: &mut BytesMut) -> Result<Option<Bytes>, String> {
    if buffer.len() < 5 {
        return Ok(None);
    }
    if buffer[0] != 0 {
        return Err("containerd sent a compressed message, which offpack did not ask for".into());
    }
    let length = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
    if length > MAX_MESSAGE {
        return Err(format!("containerd sent a message of {length} bytes"));
    }
    if buffer.len() < 5 + length {
        return Ok(None);
    }
    buffer.advance(5);
    Ok(Some(buffer.split_to(length).freeze()))
}

/// The call's outcome when `headers` carry one.
fn status_of(headers: &HeaderMap) -> Option<Result<(), CallError>> {
    let code: i32 = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if code == 0 {
        return Some(Ok(()));
    }
    let message = headers
        .get("grpc-message")
        .map(|m| {
            percent_encoding::percent_decode(m.as_bytes())
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    Some(Err(CallError::Status(Status { code, message })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containerd::proto::InfoRequest;
    use prost::Message as _;

    #[test]
    fn messages_are_framed_and_split_back() {
        let request = InfoRequest {
            digest: "sha256:ab".into(),
        };
        let framed = frame(&request);
        assert_eq!(framed[0], 0);
        assert_eq!(framed.len(), 5 + request.encoded_len());
        let mut buffer = BytesMut::new();
        buffer.extend_from_slice(&framed[..3]);
        assert_eq!(take_message(&mut buffer).unwrap(), None, "a partial header");
        buffer.extend_from_slice(&framed[3..7]);
        assert_eq!(
            take_message(&mut buffer).unwrap(),
            None,
            "a partial message"
        );
        buffer.extend_from_slice(&framed[7..]);
        buffer.extend_from_slice(&framed);
        for _ in 0..2 {
            let message = take_message(&mut buffer).unwrap().unwrap();
            assert_eq!(InfoRequest::decode(message).unwrap(), request);
        }
        assert!(buffer.is_empty());
        buffer.extend_from_slice(&[1, 0, 0, 0, 0]);
        assert!(take_message(&mut buffer).is_err(), "compressed");
    }

    #[test]
    fn the_status_comes_from_the_trailers_with_its_message_decoded() {
        let mut trailers = HeaderMap::new();
        assert!(status_of(&trailers).is_none());
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        assert!(matches!(status_of(&trailers), Some(Ok(()))));
        trailers.insert("grpc-status", HeaderValue::from_static("5"));
        trailers.insert(
            "grpc-message",
            HeaderValue::from_static("content sha256:ab: not found%0Aend"),
        );
        let Some(Err(err)) = status_of(&trailers) else {
            panic!("an error status");
        };
        assert_eq!(err.code(), Some(Status::NOT_FOUND));
        assert_eq!(err.to_string(), "content sha256:ab: not found\nend");
    }
}
