//! SHA-256 on a helper thread, so that `verify` hashes while it decompresses (the two cost about the same;
//! on one thread they add up, on two they overlap like `zstd -dc | sha256sum`).

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use sha2::{Digest as _, Sha256};

use crate::BundleError;

/// Bytes handed to the thread at once. Shorter inputs are hashed on the caller's thread.
const BUF: usize = 1 << 20;

enum Msg {
    Data(Vec<u8>),
    Finish,
}

/// A running SHA-256 whose work happens on another thread. [`finish`](Self::finish) returns the digest and
/// starts over.
pub(crate) struct HashPipe {
    buf: Vec<u8>,
    /// Data was sent to the thread since the last finish.
    sent: bool,
    tx: Option<SyncSender<Msg>>,
    spare_rx: Receiver<Vec<u8>>,
    digest_rx: Receiver<[u8; 32]>,
    handle: Option<JoinHandle<()>>,
}

impl HashPipe {
    pub(crate) fn new() -> Self {
        let (tx, rx) = mpsc::sync_channel::<Msg>(4);
        let (spare_tx, spare_rx) = mpsc::channel::<Vec<u8>>();
        let (digest_tx, digest_rx) = mpsc::channel::<[u8; 32]>();
        let handle = std::thread::spawn(move || {
            let mut hasher = Sha256::new();
            for msg in rx {
                match msg {
                    Msg::Data(v) => {
                        hasher.update(&v);
                        let _ = spare_tx.send(v);
                    }
                    Msg::Finish => {
                        if digest_tx.send(hasher.finalize_reset().into()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        HashPipe {
            buf: Vec::with_capacity(BUF),
            sent: false,
            tx: Some(tx),
            spare_rx,
            digest_rx,
            handle: Some(handle),
        }
    }

    pub(crate) fn update(&mut self, mut data: &[u8]) -> Result<(), BundleError> {
        while !data.is_empty() {
            let n = (BUF - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == BUF {
                self.send_buf()?;
            }
        }
        Ok(())
    }

    fn send_buf(&mut self) -> Result<(), BundleError> {
        let mut next = self
            .spare_rx
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BUF));
        next.clear();
        let full = std::mem::replace(&mut self.buf, next);
        self.send(Msg::Data(full))?;
        self.sent = true;
        Ok(())
    }

    fn send(&self, msg: Msg) -> Result<(), BundleError> {
        match &self.tx {
            Some(tx) if tx.send(msg).is_ok() => Ok(()),
            _ => Err(stopped()),
        }
    }

    /// The SHA-256 of everything given since the last call.
    pub(crate) fn finish(&mut self) -> Result<[u8; 32], BundleError> {
        if !self.sent {
            let digest = Sha256::digest(&self.buf).into();
            self.buf.clear();
            return Ok(digest);
        }
        if !self.buf.is_empty() {
            self.send_buf()?;
        }
        self.send(Msg::Finish)?;
        self.sent = false;
        self.digest_rx.recv().map_err(|_| stopped())
    }
}

impl Drop for HashPipe {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn stopped() -> BundleError {
    BundleError::InvalidInput("the hashing thread stopped unexpectedly".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_sha256_for_small_large_and_repeated_use() {
        let mut pipe = HashPipe::new();
        for len in [0usize, 5, BUF - 1, BUF, BUF + 1, 3 * BUF + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            for piece in data.chunks(65_536 + 7) {
                pipe.update(piece).unwrap();
            }
            let expected: [u8; 32] = Sha256::digest(&data).into();
            assert_eq!(pipe.finish().unwrap(), expected, "length {len}");
        }
    }
}
