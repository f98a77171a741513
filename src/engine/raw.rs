//! A request bollard cannot make for offpack: `POST /build?version=2` whose answer is read line
//! by line as JSON values. bollard types each line's `aux` as an image ID, and BuildKit's progress
//! lines carry a base64 protobuf there, so bollard's stream ends at the first of them
//! (docs/decisions/0081-buildkit-progress-decoding.md). Over the same transports bollard uses
//! for offpack's engines: a unix socket, or plain HTTP to `tcp://`/`http://`.

use std::io;

use anyhow::{Context, Result, anyhow, bail};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt, TryStreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::TokioExecutor;

/// Sends `body` (an `application/x-tar`) to `path_and_query` (`/v1.41/build?…`) of the engine at
/// `endpoint` (`DOCKER_HOST`'s form); returns the answer's lines, each without its line break.
/// An answer other than 2xx is an error with the engine's message.
pub async fn post_tar_lines<S>(
    endpoint: &str,
    path_and_query: &str,
    body: S,
) -> Result<impl Stream<Item = Result<Bytes>> + Send + use<S>>
where
    S: Stream<Item = Result<Bytes, io::Error>> + Send + Sync + 'static,
{
    let body = StreamBody::new(Box::pin(body.map_ok(Frame::data)));
    let response = if let Some(socket) = endpoint.strip_prefix("unix://") {
        let uri: hyper::Uri = hyperlocal::Uri::new(socket, path_and_query).into();
        send(hyperlocal::UnixConnector, uri, body).await?
    } else if let Some(host) = endpoint
        .strip_prefix("tcp://")
        .or_else(|| endpoint.strip_prefix("http://"))
    {
        let uri: hyper::Uri = format!("http://{}{path_and_query}", host.trim_end_matches('/'))
            .parse()
            .with_context(|| format!("the engine address {endpoint} is not a valid URL"))?;
        send(HttpConnector::new(), uri, body).await?
    } else {
        bail!(
            "offpack sends BuildKit builds to an engine at unix:// or tcp:// addresses, not {endpoint}; \
             build with the classic builder (--builder classic) or point DOCKER_HOST at a socket"
        );
    };
    let status = response.status();
    let body = response.into_body();
    if !status.is_success() {
        let text = body
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
            .unwrap_or(text);
        bail!(
            "the engine refused the build ({status}): {}",
            message.trim()
        );
    }
    let chunks = body
        .into_data_stream()
        .map_err(|e| anyhow!("the engine's build answer broke off: {e}"));
    Ok(lines(chunks))
}

async fn send<C, B>(
    connector: C,
    uri: hyper::Uri,
    body: B,
) -> Result<hyper::Response<hyper::body::Incoming>>
where
    C: Connect + Clone + Send + Sync + 'static,
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let client: Client<C, B> = Client::builder(TokioExecutor::new()).build(connector);
    let request = hyper::Request::post(uri)
        .header(hyper::header::CONTENT_TYPE, "application/x-tar")
        .body(body)
        .context("building the engine request")?;
    client
        .request(request)
        .await
        .map_err(|e| anyhow!("the engine's build request failed: {e:#}"))
}

/// Splits a byte stream into its lines (without `\n`); a last line without one counts too.
fn lines<S>(chunks: S) -> impl Stream<Item = Result<Bytes>> + Send
where
    S: Stream<Item = Result<Bytes>> + Send,
{
    let state = (Box::pin(chunks), BytesMut::new(), false);
    futures_util::stream::unfold(state, |(mut chunks, mut buf, mut ended)| async move {
        loop {
            if let Some(at) = buf.iter().position(|&b| b == b'\n') {
                let line = buf.split_to(at + 1).freeze().slice(..at);
                return Some((Ok(line), (chunks, buf, ended)));
            }
            if ended {
                if buf.is_empty() {
                    return None;
                }
                let line = buf.split().freeze();
                return Some((Ok(line), (chunks, buf, ended)));
            }
            match chunks.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    ended = true;
                    buf.clear();
                    return Some((Err(e), (chunks, buf, ended)));
                }
                None => ended = true,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_split_across_and_within_chunks() {
        let chunks = futures_util::stream::iter(
            ["{\"a\":1}\n{\"b\"", ":2}\n\n{\"c\":3}\n{\"d\":4}"]
                .map(|c| Ok(Bytes::from_static(c.as_bytes()))),
        );
        let got: Vec<String> = lines(chunks)
            .map(|l| String::from_utf8(l.unwrap().to_vec()).unwrap())
            .collect()
            .await;
        assert_eq!(
            got,
            ["{\"a\":1}", "{\"b\":2}", "", "{\"c\":3}", "{\"d\":4}"]
        );
    }
}
