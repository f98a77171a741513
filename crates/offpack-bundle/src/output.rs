//! The writer's machinery: the output file(s), a pool compressing frames in parallel, a thread hashing
//! the finished bytes for the sidecar, and one flushing the written bytes to disk as they come.
//!
//! Why a pool of single-threaded compressors instead of zstd's own multithreading: every frame is
//! independent (spec 3.2), so whole frames can be compressed on separate threads while the caller's thread
//! reads and hashes the next chunk. zstdmt instead splits one frame into jobs and returns only when the frame
//! is done, so reading, hashing and compressing ran one after the other. A side effect: the output no longer
//! depends on the thread count.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest as _, Sha256};
use zstd::zstd_safe::CParameter;

use crate::BundleError;
use crate::files::{self, PARTIAL_SUFFIX, dir_and_name, part_path, temp_beside};

/// The bundle being written: one temporary file, or (with `split`) one temporary file per part. Offsets
/// are positions in the joined bundle. Parts stay temporary until [`Parts::persist`], so a header in an
/// earlier part can still be patched.
pub(crate) struct Parts {
    dir: PathBuf,
    file_name: String,
    part_size: Option<u64>,
    files: Vec<(Arc<File>, tempfile::TempPath)>,
}

impl Parts {
    pub(crate) fn new(target: &Path, part_size: Option<u64>) -> Result<Self, BundleError> {
        let (dir, file_name) = dir_and_name(target)?;
        let file_name = file_name.to_string_lossy().into_owned();
        let mut parts = Parts {
            dir,
            file_name,
            part_size,
            files: Vec::new(),
        };
        parts.add_part()?;
        Ok(parts)
    }

    fn part_len(&self) -> u64 {
        self.part_size.unwrap_or(u64::MAX)
    }

    fn add_part(&mut self) -> Result<(), BundleError> {
        let tmp = temp_beside(&self.dir, &self.file_name, PARTIAL_SUFFIX)?;
        let (file, path) = tmp.into_parts();
        self.files.push((Arc::new(file), path));
        Ok(())
    }

    /// The temporary path of part `i`, for messages.
    pub(crate) fn tmp_path(&self, i: usize) -> PathBuf {
        self.files
            .get(i)
            .map_or_else(|| self.dir.clone(), |(_, p)| p.to_path_buf())
    }

    /// Splits `[start, start+len)` into (part index, offset in part, length) pieces.
    pub(crate) fn pieces(&self, start: u64, len: u64) -> Vec<(usize, u64, u64)> {
        let part_len = self.part_len();
        let mut out = Vec::new();
        let (mut pos, end) = (start, start + len);
        while pos < end {
            let i = (pos / part_len) as usize;
            let local = pos % part_len;
            let n = (part_len - local).min(end - pos);
            out.push((i, local, n));
            pos += n;
        }
        out
    }

    /// The file of part `i` (shared with the hashing thread).
    pub(crate) fn file(&self, i: usize) -> Option<Arc<File>> {
        self.files.get(i).map(|(f, _)| Arc::clone(f))
    }

    pub(crate) fn write_at(&mut self, bytes: &[u8], offset: u64) -> Result<(), BundleError> {
        let mut done = 0usize;
        for (i, local, n) in self.pieces(offset, bytes.len() as u64) {
            while self.files.len() <= i {
                self.add_part()?;
            }
            let piece = &bytes[done..done + n as usize];
            files::write_all_at(&self.files[i].0, piece, local)
                .map_err(|e| BundleError::io(self.tmp_path(i), e))?;
            done += n as usize;
        }
        Ok(())
    }

    /// Cuts the bundle back to `len` bytes (removing whole parts past it).
    pub(crate) fn truncate(&mut self, len: u64) -> Result<(), BundleError> {
        let part_len = self.part_len();
        // Dropping a part's TempPath deletes it; committed bytes are never cut, so the hashing thread
        // never reads a removed part.
        self.files
            .truncate((len.div_ceil(part_len) as usize).max(1));
        let last = self.files.len() - 1;
        let last_len = len - last as u64 * part_len;
        self.files[last]
            .0
            .set_len(last_len)
            .map_err(|e| BundleError::io(self.tmp_path(last), e))
    }

    /// Final names: `target` alone, or `target.001`, `target.002`, ... with `split`.
    pub(crate) fn final_paths(&self, target: &Path) -> Vec<PathBuf> {
        if self.part_size.is_none() {
            return vec![target.to_owned()];
        }
        (1..=self.files.len())
            .map(|n| part_path(target, n))
            .collect()
    }

    /// fsyncs every part and renames them into place (parts in order; a stale part with a higher number
    /// from an earlier run is removed first, so `cat target.0*` stays exactly this bundle).
    pub(crate) fn persist(self, target: &Path) -> Result<Vec<PathBuf>, BundleError> {
        let finals = self.final_paths(target);
        for (i, (file, tmp)) in self.files.iter().enumerate() {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(std::fs::Permissions::from_mode(0o644))
                    .map_err(|e| BundleError::io(tmp.to_path_buf(), e))?;
            }
            file.sync_all()
                .map_err(|e| BundleError::io(self.tmp_path(i), e))?;
        }
        if self.part_size.is_some() {
            let mut n = finals.len() + 1;
            loop {
                let stale = part_path(target, n);
                match std::fs::remove_file(&stale) {
                    Ok(()) => n += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) => return Err(BundleError::io(stale, e)),
                }
            }
        }
        let split = self.part_size.is_some();
        for ((_, tmp), dest) in self.files.into_iter().zip(&finals) {
            tmp.persist(dest)
                .map_err(|e| BundleError::io(dest, e.error))?;
        }
        // The new bundle replaces an older one of the same name in the other form too (a single file
        // next to parts, or parts next to a single file), so readers cannot pick up the stale one.
        let stale: Vec<PathBuf> = if split {
            vec![target.to_owned()]
        } else {
            (1..)
                .map(|n| part_path(target, n))
                .take_while(|p| p.exists())
                .collect()
        };
        for p in stale {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(BundleError::io(p, e)),
            }
        }
        Ok(finals)
    }
}

/// A byte range of the bundle in one part: (part file, part number, offset in the part, length).
type Piece = (Arc<File>, usize, u64, u64);
/// A failure of a [`RangeThread`]: the part it happened in, and the error.
type PartError = (usize, io::Error);

/// A background thread that is handed byte ranges of the parts in file order and returns a `T`
/// when [`join`](Self::join)ed; the sidecar hasher and the flusher are two of them.
struct RangeThread<T> {
    tx: Option<mpsc::Sender<Piece>>,
    handle: Option<JoinHandle<Result<T, PartError>>>,
}

impl<T: Send + 'static> RangeThread<T> {
    fn start(work: impl FnOnce(Receiver<Piece>) -> Result<T, PartError> + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel::<Piece>();
        RangeThread {
            tx: Some(tx),
            handle: Some(std::thread::spawn(move || work(rx))),
        }
    }

    /// Hands over `[start, start+len)` of the bundle, split at part boundaries.
    fn send(&self, parts: &Parts, start: u64, len: u64) {
        if let Some(tx) = &self.tx {
            for (i, local, n) in parts.pieces(start, len) {
                if let Some(file) = parts.file(i) {
                    // A send fails only if the thread stopped on an error, which join() reports.
                    let _ = tx.send((file, i, local, n));
                }
            }
        }
    }

    /// Waits for the thread; its error names the part's temporary file.
    fn join(mut self, parts: &Parts, what: &str) -> Result<T, BundleError> {
        self.tx = None;
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(Ok(result))) => Ok(result),
            Some(Ok(Err((part, e)))) => Err(BundleError::io(parts.tmp_path(part), e)),
            _ => Err(BundleError::io(
                parts.tmp_path(0),
                io::Error::other(format!("the {what} thread failed")),
            )),
        }
    }
}

impl<T> Drop for RangeThread<T> {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// (hex SHA-256 of each part, of the whole bundle).
type Hashes = (Vec<String>, String);

/// Hashes committed byte ranges of the parts on a background thread: one SHA-256 per part and one of
/// the whole bundle. Committed bytes never change again (headers are patched before their entry commits).
pub(crate) struct FileHasher(RangeThread<Hashes>);

impl FileHasher {
    /// `split`: the bundle is written as parts, each with a hash of its own; otherwise the one file's hash
    /// is the whole bundle's, computed once.
    pub(crate) fn start(split: bool) -> Self {
        FileHasher(RangeThread::start(move |rx| {
            let mut parts: Vec<Sha256> = Vec::new();
            let mut whole = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            for (file, part, mut pos, len) in rx {
                while split && parts.len() <= part {
                    parts.push(Sha256::new());
                }
                let end = pos + len;
                while pos < end {
                    let n = ((end - pos) as usize).min(buf.len());
                    files::read_exact_at(&file, &mut buf[..n], pos).map_err(|e| (part, e))?;
                    if split {
                        parts[part].update(&buf[..n]);
                    }
                    whole.update(&buf[..n]);
                    pos += n as u64;
                }
            }
            let whole = hex::encode(whole.finalize());
            if !split {
                return Ok((vec![whole.clone()], whole));
            }
            let parts = parts
                .into_iter()
                .map(|h| hex::encode(h.finalize()))
                .collect();
            Ok((parts, whole))
        }))
    }

    /// Queues `[start, start+len)` of the bundle.
    pub(crate) fn commit(&mut self, parts: &Parts, start: u64, len: u64) {
        self.0.send(parts, start, len);
    }

    /// Waits for the thread: (hex SHA-256 of each part, of the whole bundle).
    pub(crate) fn finish(self, parts: &Parts) -> Result<Hashes, BundleError> {
        self.0.join(parts, "hashing")
    }
}

/// Bytes written to a part before the [`Flusher`] asks for them to be written to disk.
const FLUSH_EVERY: u64 = 64 << 20;

/// Writes the bundle's bytes to disk while the bundle is still being written (`fdatasync` of a part
/// on a background thread every [`FLUSH_EVERY`] bytes), so that the fsync before the rename has
/// little left to do: without it that fsync wrote the whole bundle while every core sat idle
/// (1.3–2.3 s of a 10 s write of 710 MiB on this VM). A failed flush is kept and reported by
/// [`Flusher::finish`], because Linux reports a writeback error to one fsync only.
pub(crate) struct Flusher(RangeThread<()>);

impl Flusher {
    pub(crate) fn start() -> Self {
        Flusher(RangeThread::start(|rx| {
            // Per part: (its file, bytes written since its last flush).
            let mut pending: BTreeMap<usize, (Arc<File>, u64)> = BTreeMap::new();
            let add = |pending: &mut BTreeMap<usize, (Arc<File>, u64)>, (file, part, _, len)| {
                pending.entry(part).or_insert((file, 0)).1 += len;
            };
            while let Ok(piece) = rx.recv() {
                add(&mut pending, piece);
                // What came in while the last flush ran is flushed in one go.
                while let Ok(piece) = rx.try_recv() {
                    add(&mut pending, piece);
                }
                for (&part, (file, len)) in pending.iter_mut() {
                    if *len >= FLUSH_EVERY {
                        file.sync_data().map_err(|e| (part, e))?;
                        *len = 0;
                    }
                }
                // Parts are written in order: once a later one has data, the earlier ones are done.
                if let Some(&last) = pending.keys().next_back() {
                    pending.retain(|&part, _| part == last);
                }
            }
            Ok(())
        }))
    }

    /// `[start, start+len)` of the bundle was written. Bytes that change again later (a patched
    /// header, a rolled-back entry) are simply written again by a later flush or the final fsync.
    pub(crate) fn written(&mut self, parts: &Parts, start: u64, len: u64) {
        self.0.send(parts, start, len);
    }

    /// Waits for the flushes under way; the error of a failed one, with its part's path.
    pub(crate) fn finish(self, parts: &Parts) -> Result<(), BundleError> {
        self.0.join(parts, "flushing")
    }
}

/// Blocks one KiB under zstd's usual 128 KiB. zstd 1.5.7 runs a block "pre-splitter" on full
/// 128 KiB blocks only; at level 3 it costs about 9 % of the compression CPU for 0.9 % smaller
/// output, which made the writer slower than `zstd -3` of the CLI (1.5.4, no pre-splitter) for a
/// bundle of the CLI's size. The direct switch (`ZSTD_c_blockSplitterLevel`) is not in zstd-safe's
/// API; this one is. Decision 0063.
const MAX_BLOCK_SIZE: u32 = 127 << 10;

struct Job {
    seq: u64,
    input: Vec<u8>,
    len: usize,
    out: Vec<u8>,
}

type Done = (u64, Vec<u8>, Result<Vec<u8>, String>);

/// Compresses frames, in parallel when `threads` > 1, handing them back in submission order.
pub(crate) struct FramePool {
    inline: Option<zstd::bulk::Compressor<'static>>,
    jobs: Option<SyncSender<Job>>,
    results: Option<Receiver<Done>>,
    workers: Vec<JoinHandle<()>>,
    next_seq: u64,
    next_out: u64,
    ready: BTreeMap<u64, Result<Vec<u8>, String>>,
    inline_ready: VecDeque<Result<Vec<u8>, String>>,
    in_flight: usize,
    max_in_flight: usize,
    spare_in: Vec<Vec<u8>>,
    spare_out: Vec<Vec<u8>>,
    chunk_capacity: usize,
}

impl FramePool {
    pub(crate) fn new(
        level: i32,
        threads: usize,
        chunk_capacity: usize,
    ) -> Result<Self, BundleError> {
        let make = || -> Result<zstd::bulk::Compressor<'static>, BundleError> {
            let mut c = zstd::bulk::Compressor::new(level)
                .map_err(|e| BundleError::InvalidInput(format!("zstd level {level}: {e}")))?;
            c.include_checksum(true)
                .and_then(|()| c.set_parameter(CParameter::MaxBlockSize(MAX_BLOCK_SIZE)))
                .map_err(|e| BundleError::InvalidInput(format!("zstd settings: {e}")))?;
            Ok(c)
        };
        let mut pool = FramePool {
            inline: None,
            jobs: None,
            results: None,
            workers: Vec::new(),
            next_seq: 0,
            next_out: 0,
            ready: BTreeMap::new(),
            inline_ready: VecDeque::new(),
            in_flight: 0,
            // Two frames queued beyond the ones being compressed keep the workers busy while the caller
            // reads and writes; memory: about (threads + 3) * 2 buffers of one chunk.
            max_in_flight: threads + 2,
            spare_in: Vec::new(),
            spare_out: Vec::new(),
            chunk_capacity,
        };
        if threads <= 1 {
            pool.inline = Some(make()?);
            return Ok(pool);
        }
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(threads);
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        for _ in 0..threads {
            let mut compressor = make()?;
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            pool.workers.push(std::thread::spawn(move || {
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(Job {
                        seq,
                        input,
                        len,
                        mut out,
                    }) = job
                    else {
                        return;
                    };
                    let result = compress(&mut compressor, &input[..len], &mut out).map(|()| out);
                    if done_tx.send((seq, input, result)).is_err() {
                        return;
                    }
                }
            }));
        }
        pool.jobs = Some(job_tx);
        pool.results = Some(done_rx);
        Ok(pool)
    }

    /// A buffer of a chunk's capacity (its length; contents unspecified), to fill and
    /// [`submit`](Self::submit). Buffers are reused, so they are zeroed only once.
    pub(crate) fn buffer(&mut self) -> Vec<u8> {
        self.spare_in
            .pop()
            .unwrap_or_else(|| vec![0; self.chunk_capacity])
    }

    /// Returns an unused buffer from [`buffer`](Self::buffer).
    pub(crate) fn give_back(&mut self, input: Vec<u8>) {
        if self.spare_in.len() <= self.max_in_flight {
            self.spare_in.push(input);
        }
    }

    /// Gives back an output buffer returned by [`next`](Self::next). Kept spares are bounded: a frame
    /// made elsewhere (a raw header frame) comes back here too, and keeping every one would let the
    /// number of buffers, each grown to a chunk's size once reused, grow with the number of entries.
    pub(crate) fn recycle(&mut self, out: Vec<u8>) {
        if self.spare_out.len() <= self.max_in_flight {
            self.spare_out.push(out);
        }
    }

    /// True when [`submit`](Self::submit) would exceed the memory bound: take a frame with `next` first.
    pub(crate) fn is_full(&self) -> bool {
        self.in_flight >= self.max_in_flight
    }

    /// True when frames are being compressed or waiting to be taken.
    pub(crate) fn has_pending(&self) -> bool {
        self.in_flight > 0
    }

    /// Queues a frame that is already made (a raw-block header frame), to be handed back in its turn.
    pub(crate) fn submit_made(&mut self, frame: Vec<u8>) {
        self.in_flight += 1;
        if self.inline.is_some() {
            self.inline_ready.push_back(Ok(frame));
            return;
        }
        self.ready.insert(self.next_seq, Ok(frame));
        self.next_seq += 1;
    }

    /// Queues `input[..len]` as one frame.
    pub(crate) fn submit(&mut self, input: Vec<u8>, len: usize) -> Result<(), BundleError> {
        let mut out = self.spare_out.pop().unwrap_or_default();
        if let Some(c) = &mut self.inline {
            let result = compress(c, &input[..len], &mut out).map(|()| out);
            self.give_back(input);
            self.inline_ready.push_back(result);
            self.in_flight += 1;
            return Ok(());
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let sent = self.jobs.as_ref().is_some_and(|tx| {
            tx.send(Job {
                seq,
                input,
                len,
                out,
            })
            .is_ok()
        });
        if !sent {
            return Err(pool_failed());
        }
        self.in_flight += 1;
        Ok(())
    }

    /// The next compressed frame in submission order (waiting for it); `None` when nothing is pending.
    pub(crate) fn next(&mut self) -> Option<Result<Vec<u8>, BundleError>> {
        if self.in_flight == 0 {
            return None;
        }
        self.in_flight -= 1;
        if self.inline.is_some() {
            let r = self.inline_ready.pop_front()?;
            return Some(r.map_err(compression_failed));
        }
        loop {
            if let Some(r) = self.ready.remove(&self.next_out) {
                self.next_out += 1;
                return Some(r.map_err(compression_failed));
            }
            let Some(Ok((seq, input, result))) = self.results.as_ref().map(Receiver::recv) else {
                return Some(Err(pool_failed()));
            };
            self.give_back(input);
            self.ready.insert(seq, result);
        }
    }

    /// Waits for and drops every pending frame (after a failed entry).
    pub(crate) fn discard(&mut self) {
        while let Some(r) = self.next() {
            if let Ok(out) = r {
                self.recycle(out);
            }
        }
    }
}

impl Drop for FramePool {
    fn drop(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn compress(
    c: &mut zstd::bulk::Compressor<'static>,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    out.clear();
    out.reserve(zstd::compress_bound(input.len()));
    c.compress_to_buffer(input, out)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn compression_failed(detail: String) -> BundleError {
    BundleError::InvalidInput(format!("zstd compression failed: {detail}"))
}

fn pool_failed() -> BundleError {
    BundleError::InvalidInput("a compression thread stopped unexpectedly".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flushes happen on the thread as a part passes [`FLUSH_EVERY`] bytes (claimed here, not
    /// written: the bookkeeping is what is tested, and flushing a short file works the same), in
    /// each part of a split bundle, and `finish` reports success once they are done.
    #[test]
    fn flusher_flushes_each_part_and_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let mut parts = Parts::new(&dir.path().join("f.offpack"), Some(FLUSH_EVERY)).unwrap();
        parts.write_at(b"x", 2 * FLUSH_EVERY).unwrap();
        assert_eq!(parts.files.len(), 3);
        let mut flusher = Flusher::start();
        flusher.written(&parts, 0, FLUSH_EVERY - 1);
        flusher.written(&parts, FLUSH_EVERY - 1, FLUSH_EVERY + 2);
        flusher.written(&parts, 2 * FLUSH_EVERY + 1, FLUSH_EVERY);
        flusher.finish(&parts).unwrap();

        let mut one = Parts::new(&dir.path().join("g.offpack"), None).unwrap();
        one.write_at(b"y", 0).unwrap();
        let mut flusher = Flusher::start();
        for _ in 0..3 {
            flusher.written(&one, 0, FLUSH_EVERY);
        }
        flusher.finish(&one).unwrap();
    }

    /// Made frames (raw headers) and compressed ones come back in submission order, and handing every
    /// buffer back does not grow the spares without bound.
    #[test]
    fn frames_come_back_in_order_and_spare_buffers_stay_bounded() {
        for threads in [1, 2] {
            let mut pool = FramePool::new(1, threads, 4096).unwrap();
            let mut expected = VecDeque::new();
            let check = |pool: &mut FramePool, expected: &mut VecDeque<(bool, Vec<u8>)>| {
                let out = pool.next().unwrap().unwrap();
                let (made, data) = expected.pop_front().unwrap();
                if made {
                    assert_eq!(out, data);
                } else {
                    assert_eq!(zstd::decode_all(&out[..]).unwrap(), data);
                }
                pool.recycle(out);
            };
            for i in 0..300u32 {
                while pool.is_full() {
                    check(&mut pool, &mut expected);
                }
                let byte = i as u8;
                if i % 3 == 0 {
                    pool.submit_made(vec![byte; 7]);
                    expected.push_back((true, vec![byte; 7]));
                } else {
                    let mut input = pool.buffer();
                    input[..100].fill(byte);
                    pool.submit(input, 100).unwrap();
                    expected.push_back((false, vec![byte; 100]));
                }
                assert!(pool.spare_out.len() <= pool.max_in_flight + 1);
                assert!(pool.spare_in.len() <= pool.max_in_flight + 1);
            }
            while pool.has_pending() {
                check(&mut pool, &mut expected);
            }
            assert!(expected.is_empty());
        }
    }
}
