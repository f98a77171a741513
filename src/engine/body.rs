//! A request body fed by blocking code (tar writers run on a blocking thread).

use std::io::{self, Write};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;

/// Creates a writer for blocking code and the body stream the engine request reads from it.
pub fn channel_body() -> (
    ChannelWriter,
    impl Stream<Item = io::Result<Bytes>> + Send + Sync + 'static,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    (ChannelWriter::new(tx), tokio_stream_from(rx))
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
) -> impl Stream<Item = io::Result<Bytes>> + Send + Sync + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A `Write` that hands its bytes, in chunks, to an async body stream.
/// Dropping it after an error sends that error instead, which aborts the request body.
pub struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    buf: BytesMut,
}

const CHUNK: usize = 1 << 20;

impl ChannelWriter {
    pub fn new(tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>) -> Self {
        Self {
            tx,
            buf: BytesMut::with_capacity(CHUNK),
        }
    }

    /// Sends `err` down the stream so the receiving request fails instead of ending cleanly.
    pub fn fail(self, err: &anyhow::Error) {
        let _ = self
            .tx
            .blocking_send(Err(io::Error::other(format!("{err:#}"))));
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the engine stopped reading the load stream",
            )
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}
