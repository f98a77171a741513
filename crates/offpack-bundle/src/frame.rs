//! The zstd layer: the raw header frame, the trailer and a decompressor that reports where
//! each frame starts.

use std::io::{self, Read};

use zstd::zstd_safe::{DCtx, InBuffer, OutBuffer};

use crate::BundleError;
use crate::source::Source;

/// zstd frame magic, little-endian bytes.
pub(crate) const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
/// The skippable frame magic the index uses (0x184D2A5E).
pub(crate) const INDEX_FRAME_MAGIC: u32 = 0x184D_2A5E;
/// Footer magic.
pub(crate) const FOOTER_MAGIC: &[u8; 8] = b"OFFPKIDX";
/// Footer size: u64 length + sha256 + magic.
pub(crate) const FOOTER_LEN: u64 = 48;
/// Skippable frame header size.
pub(crate) const SKIPPABLE_HEADER_LEN: u64 = 8;
/// Readers refuse larger indexes (spec 6.2).
pub(crate) const MAX_INDEX_LEN: u64 = 64 << 20;

/// Size of the raw header frame (spec 3.4).
pub(crate) const RAW_HEADER_FRAME_LEN: u64 = 522;
/// Where the 512 stored bytes start inside the raw header frame.
pub(crate) const RAW_HEADER_OFFSET: u64 = 10;

/// The raw header frame around a 512-byte tar header.
pub(crate) fn raw_header_frame(header: &[u8; 512]) -> [u8; 522] {
    let mut f = [0u8; 522];
    f[..4].copy_from_slice(&ZSTD_MAGIC);
    // Frame header descriptor: FCS 2 bytes (bits 7-6 = 01), single segment (bit 5), no checksum, no dict.
    f[4] = 0x60;
    // 2-byte FCS stores size - 256.
    f[5..7].copy_from_slice(&(512u16 - 256).to_le_bytes());
    // Block header: last = 1, type raw = 0, size 512 → (512 << 3) | 1.
    let block = (512u32 << 3) | 1;
    f[7..10].copy_from_slice(&block.to_le_bytes()[..3]);
    f[10..].copy_from_slice(header);
    f
}

/// The trailer: skippable frame holding `index_json` and the footer.
pub(crate) fn trailer(index_json: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    let payload_len = index_json.len() as u64 + FOOTER_LEN;
    let mut out = Vec::with_capacity(index_json.len() + 56);
    out.extend_from_slice(&INDEX_FRAME_MAGIC.to_le_bytes());
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(index_json);
    out.extend_from_slice(&(index_json.len() as u64).to_le_bytes());
    out.extend_from_slice(&sha2::Sha256::digest(index_json));
    out.extend_from_slice(FOOTER_MAGIC);
    out
}

/// Locates and checks the trailer; returns the index JSON and the file offset where the trailer starts.
pub(crate) fn read_trailer(src: &Source) -> Result<(Vec<u8>, u64), BundleError> {
    let file_len = src.len();
    let path = src.file_at(file_len);
    use sha2::Digest as _;
    let not_bundle = |detail: &str| BundleError::NotABundle {
        path: path.to_owned(),
        detail: if src.is_split() {
            format!("{detail}; it is the last part found, so a later part may be missing")
        } else {
            detail.to_owned()
        },
    };
    if file_len < FOOTER_LEN + SKIPPABLE_HEADER_LEN {
        return Err(not_bundle("file is too short to hold an index footer"));
    }
    let mut footer = [0u8; 48];
    src.read_exact_at(&mut footer, file_len - FOOTER_LEN)
        .map_err(|e| src.io_err(file_len - FOOTER_LEN, e))?;
    if &footer[40..48] != FOOTER_MAGIC {
        return Err(not_bundle("no OFFPKIDX footer at the end of the file"));
    }
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&footer[..8]);
    let index_len = u64::from_le_bytes(len_bytes);
    let room = file_len - FOOTER_LEN - SKIPPABLE_HEADER_LEN;
    if index_len > room {
        return Err(BundleError::BadIndex(format!(
            "footer declares an index of {index_len} bytes but only {room} bytes precede it"
        )));
    }
    if index_len > MAX_INDEX_LEN {
        return Err(BundleError::TooLarge {
            what: "the bundle index".into(),
            size: index_len,
            limit: MAX_INDEX_LEN,
        });
    }
    let trailer_start = room - index_len;
    let mut frame_header = [0u8; 8];
    src.read_exact_at(&mut frame_header, trailer_start)
        .map_err(|e| src.io_err(trailer_start, e))?;
    let magic = u32::from_le_bytes([
        frame_header[0],
        frame_header[1],
        frame_header[2],
        frame_header[3],
    ]);
    let frame_size = u32::from_le_bytes([
        frame_header[4],
        frame_header[5],
        frame_header[6],
        frame_header[7],
    ]);
    if magic != INDEX_FRAME_MAGIC || u64::from(frame_size) != index_len + FOOTER_LEN {
        return Err(BundleError::BadIndex(format!(
            "no index frame header at byte {trailer_start} (the footer's length is wrong or the frame is damaged)"
        )));
    }
    let mut index_json = vec![0u8; index_len as usize];
    src.read_exact_at(&mut index_json, trailer_start + SKIPPABLE_HEADER_LEN)
        .map_err(|e| src.io_err(trailer_start, e))?;
    if sha2::Sha256::digest(&index_json)[..] != footer[8..40] {
        return Err(BundleError::BadIndex(
            "the index does not match the SHA-256 in the footer".into(),
        ));
    }
    Ok((index_json, trailer_start))
}

/// Steps over whole zstd frames from file offset `pos` (before `end`) while they end at or before
/// decompressed position `target` (counted from `pos`), reading only their headers and block
/// headers. Returns the offset of the frame to decompress from and the decompressed position it
/// starts at. Stops early (a frame is decompressed from there instead) at a frame that does not
/// declare its content size, or at anything that is not an ordinary frame.
pub(crate) fn step_to(src: &Source, mut pos: u64, end: u64, target: u64) -> io::Result<(u64, u64)> {
    let mut out = 0u64;
    while pos < end {
        let Some((content, len)) = frame_extent(src, pos, end)? else {
            break;
        };
        if out + content > target {
            break;
        }
        pos += len;
        out += content;
    }
    Ok((pos, out))
}

/// The content size and the compressed length of the frame at `pos`, when it is an ordinary frame
/// that declares its content size and lies before `end`.
fn frame_extent(src: &Source, pos: u64, end: u64) -> io::Result<Option<(u64, u64)>> {
    let mut head = [0u8; 18];
    let avail = (end - pos).min(head.len() as u64) as usize;
    src.read_exact_at(&mut head[..avail], pos)?;
    if avail < 6 || head[..4] != ZSTD_MAGIC {
        return Ok(None);
    }
    let descriptor = head[4];
    let fcs_flag = descriptor >> 6;
    let single_segment = descriptor & 0x20 != 0;
    let checksum = descriptor & 0x04 != 0;
    let dict_len = [0usize, 1, 2, 4][(descriptor & 0x03) as usize];
    let fcs_len = match (fcs_flag, single_segment) {
        (0, false) => return Ok(None),
        (0, true) => 1,
        (1, _) => 2,
        (2, _) => 4,
        _ => 8,
    };
    let at = 5 + usize::from(!single_segment) + dict_len;
    if at + fcs_len > avail {
        return Ok(None);
    }
    let mut fcs = [0u8; 8];
    fcs[..fcs_len].copy_from_slice(&head[at..at + fcs_len]);
    let mut content = u64::from_le_bytes(fcs);
    if fcs_len == 2 {
        content += 256;
    }
    let mut block = pos + (at + fcs_len) as u64;
    loop {
        if block + 3 > end {
            return Ok(None);
        }
        let mut header = [0u8; 4];
        src.read_exact_at(&mut header[..3], block)?;
        let header = u32::from_le_bytes(header);
        let last = header & 1 != 0;
        let size = u64::from(header >> 3);
        let data = match (header >> 1) & 3 {
            0 | 2 => size,
            1 => 1,
            _ => return Ok(None),
        };
        block += 3 + data;
        if last {
            break;
        }
    }
    if checksum {
        block += 4;
    }
    Ok((block <= end).then_some((content, block - pos)))
}

fn is_skippable_magic(m: [u8; 4]) -> bool {
    let v = u32::from_le_bytes(m);
    v & 0xFFFF_FFF0 == 0x184D_2A50
}

/// Decompresses a zstd frame sequence from `src` (which starts at file offset `base`) as one stream, and
/// records where each frame starts. Stops at the first skippable frame (the trailer) or at the end of the
/// input. Memory is bounded: zstd's window (≤ 128 MiB, `windowLog` 27) plus fixed buffers.
pub(crate) struct FrameStream<R> {
    src: R,
    /// The file, for I/O error messages.
    name: std::path::PathBuf,
    inbuf: Vec<u8>,
    in_start: usize,
    in_end: usize,
    src_eof: bool,
    /// File offset of `inbuf[in_start]`.
    file_pos: u64,
    dctx: DCtx<'static>,
    at_frame_start: bool,
    current_frame: u64,
    out_total: u64,
    /// The decompressed offset at which the caller wants to know whether a frame starts (a tar header).
    watch: Option<u64>,
    /// File offset of the (last) frame that started at `watch`.
    watched: Option<u64>,
    /// File offset of the skippable frame that stopped decompression.
    stopped_at: Option<u64>,
}

impl<R: Read> FrameStream<R> {
    pub(crate) fn new(src: R, name: &std::path::Path, base: u64) -> Self {
        FrameStream {
            src,
            name: name.to_owned(),
            inbuf: vec![0; 1 << 17],
            in_start: 0,
            in_end: 0,
            src_eof: false,
            file_pos: base,
            dctx: DCtx::create(),
            at_frame_start: true,
            current_frame: base,
            out_total: 0,
            watch: None,
            watched: None,
            stopped_at: None,
        }
    }

    /// Decompressed bytes produced so far.
    pub(crate) fn out_pos(&self) -> u64 {
        self.out_total
    }

    /// File offset of the frame currently being decompressed.
    pub(crate) fn current_frame(&self) -> u64 {
        self.current_frame
    }

    /// File offset where decompression stopped at a skippable frame, if it did.
    pub(crate) fn stopped_at(&self) -> Option<u64> {
        self.stopped_at
    }

    /// Asks to record whether a frame starts at decompressed offset `out`: call before reading the bytes at
    /// `out`, then ask [`watched_start`](Self::watched_start). (Only one position is tracked, so memory stays
    /// constant however many frames the input has.)
    pub(crate) fn watch(&mut self, out: u64) {
        self.watch = Some(out);
        self.watched = None;
    }

    /// File offset of the frame that starts at the watched offset, if one does. With several (empty) frames
    /// there, the last one: the one whose output begins there.
    pub(crate) fn watched_start(&self) -> Option<u64> {
        self.watched
    }

    /// Hands back the source (positioned after what was consumed) and the unconsumed buffered bytes.
    pub(crate) fn into_parts(self) -> (R, Vec<u8>) {
        let rest = self.inbuf[self.in_start..self.in_end].to_vec();
        (self.src, rest)
    }

    fn fill(&mut self) -> Result<(), BundleError> {
        if self.in_start == self.in_end {
            self.in_start = 0;
            self.in_end = 0;
        } else if self.in_start > 0 {
            self.inbuf.copy_within(self.in_start..self.in_end, 0);
            self.in_end -= self.in_start;
            self.in_start = 0;
        }
        if self.src_eof || self.in_end == self.inbuf.len() {
            return Ok(());
        }
        loop {
            match self.src.read(&mut self.inbuf[self.in_end..]) {
                Ok(0) => {
                    self.src_eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.in_end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(BundleError::io(&self.name, e)),
            }
        }
    }

    /// At a frame boundary: look at the next magic. Returns false when the stream ended.
    fn begin_frame(&mut self) -> Result<bool, BundleError> {
        if self.stopped_at.is_some() {
            return Ok(false);
        }
        while self.in_end - self.in_start < 4 && !self.src_eof {
            self.fill()?;
        }
        let avail = self.in_end - self.in_start;
        if avail == 0 {
            return Ok(false);
        }
        if avail < 4 {
            return Err(BundleError::Truncated {
                offset: self.file_pos + avail as u64,
                context: "a frame header".into(),
            });
        }
        let mut magic = [0u8; 4];
        magic.copy_from_slice(&self.inbuf[self.in_start..self.in_start + 4]);
        if is_skippable_magic(magic) {
            self.stopped_at = Some(self.file_pos);
            return Ok(false);
        }
        if magic != ZSTD_MAGIC {
            return Err(BundleError::CorruptFrame {
                offset: self.file_pos,
                detail: "expected a zstd frame here".into(),
            });
        }
        self.current_frame = self.file_pos;
        if self.watch == Some(self.out_total) {
            self.watched = Some(self.file_pos);
        }
        self.at_frame_start = false;
        Ok(true)
    }

    /// Reads decompressed bytes; 0 means the frame sequence ended (EOF or the trailer).
    pub(crate) fn read_some(&mut self, out: &mut [u8]) -> Result<usize, BundleError> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.at_frame_start && !self.begin_frame()? {
                return Ok(0);
            }
            if self.in_start == self.in_end {
                self.fill()?;
                if self.in_start == self.in_end {
                    return Err(BundleError::Truncated {
                        offset: self.file_pos,
                        context: format!(
                            "inside the frame that starts at byte {}",
                            self.current_frame
                        ),
                    });
                }
            }
            let mut input = InBuffer::around(&self.inbuf[self.in_start..self.in_end]);
            let mut output = OutBuffer::around(&mut *out);
            let hint = self
                .dctx
                .decompress_stream(&mut output, &mut input)
                .map_err(|code| BundleError::CorruptFrame {
                    offset: self.current_frame,
                    detail: zstd::zstd_safe::get_error_name(code).to_owned(),
                })?;
            let consumed = input.pos();
            let produced = output.pos();
            self.in_start += consumed;
            self.file_pos += consumed as u64;
            self.out_total += produced as u64;
            if hint == 0 {
                self.at_frame_start = true;
            }
            if produced > 0 {
                return Ok(produced);
            }
        }
    }

    /// Fills `buf` completely; `Ok(false)` if the stream ended before the first byte, an error if it ended
    /// part-way.
    pub(crate) fn read_full(&mut self, buf: &mut [u8], what: &str) -> Result<bool, BundleError> {
        let mut got = 0;
        while got < buf.len() {
            let n = self.read_some(&mut buf[got..])?;
            if n == 0 {
                if got == 0 {
                    return Ok(false);
                }
                return Err(self.ended_early(what));
            }
            got += n;
        }
        Ok(true)
    }

    /// The error for data that stops before `what` is complete.
    pub(crate) fn ended_early(&self, what: &str) -> BundleError {
        match self.stopped_at {
            Some(at) => BundleError::SizeMismatch {
                entry: what.to_owned(),
                offset: at,
                detail: "the archive ends (index frame reached) before the entry's declared size"
                    .into(),
            },
            None => BundleError::Truncated {
                offset: self.file_pos,
                context: format!("while reading {what}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_to_steps_over_frames_that_end_before_the_target() {
        use std::io::Write as _;
        let sized = |len: usize, fill: u8| zstd::bulk::compress(&vec![fill; len], 3).unwrap();
        let a = sized(1000, 1);
        let b = raw_header_frame(&[2u8; 512]);
        let c = sized(3000, 3);
        // A streamed frame does not declare its content size: stepping stops there.
        let mut encoder = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        encoder.write_all(&[4u8; 500]).unwrap();
        let d = encoder.finish().unwrap();
        let e = sized(100, 5);
        let file: Vec<u8> = [&a[..], &b[..], &c[..], &d[..], &e[..]].concat();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frames");
        std::fs::write(&path, &file).unwrap();
        let src = Source::open(&path).unwrap();
        let end = file.len() as u64;
        let (a_len, b_len, c_len) = (a.len() as u64, b.len() as u64, c.len() as u64);
        assert_eq!(step_to(&src, 0, end, 0).unwrap(), (0, 0));
        assert_eq!(step_to(&src, 0, end, 999).unwrap(), (0, 0));
        assert_eq!(step_to(&src, 0, end, 1000).unwrap(), (a_len, 1000));
        assert_eq!(step_to(&src, 0, end, 1511).unwrap(), (a_len, 1000));
        assert_eq!(step_to(&src, 0, end, 1512).unwrap(), (a_len + b_len, 1512));
        let before_d = a_len + b_len + c_len;
        assert_eq!(step_to(&src, 0, end, 4512).unwrap(), (before_d, 4512));
        assert_eq!(step_to(&src, 0, end, 1 << 20).unwrap(), (before_d, 4512));
        // A frame cut short by `end` is not stepped over.
        assert_eq!(step_to(&src, 0, a_len - 1, 5000).unwrap(), (0, 0));
    }

    #[test]
    fn raw_header_frame_decompresses_to_the_header() {
        let header = [7u8; 512];
        let frame = raw_header_frame(&header);
        assert_eq!(frame.len() as u64, RAW_HEADER_FRAME_LEN);
        assert_eq!(zstd::decode_all(&frame[..]).unwrap(), header.to_vec());
    }

    #[test]
    fn frame_stream_reports_frame_starts_and_stops_at_trailer() {
        let a = zstd::encode_all(&[1u8; 1000][..], 3).unwrap();
        let b = raw_header_frame(&[2u8; 512]);
        let mut file = a.clone();
        file.extend_from_slice(&b);
        file.extend_from_slice(&trailer(b"{}"));
        let mut s = FrameStream::new(&file[..], "t".as_ref(), 0);
        let mut out = vec![0u8; 1000];
        s.watch(0);
        assert!(s.read_full(&mut out[..600], "test").unwrap());
        assert_eq!(s.watched_start(), Some(0));
        s.watch(600);
        assert!(s.read_full(&mut out[600..], "test").unwrap());
        assert_eq!(s.watched_start(), None);
        assert_eq!(&out[..], &[1u8; 1000][..]);
        s.watch(1000);
        assert!(s.read_full(&mut out[..512], "test").unwrap());
        assert_eq!(&out[..512], &[2u8; 512][..]);
        assert_eq!(s.watched_start(), Some(a.len() as u64));
        assert_eq!(s.read_some(&mut out).unwrap(), 0);
        assert_eq!(s.stopped_at(), Some((a.len() + 522) as u64));
    }

    #[test]
    fn frame_stream_reports_truncation_and_corruption() {
        let a = zstd::encode_all(&[1u8; 100_000][..], 3).unwrap();
        let mut s = FrameStream::new(&a[..a.len() - 3], "t".as_ref(), 0);
        let mut out = vec![0u8; 100_000];
        assert_eq!(s.read_full(&mut out, "x").unwrap_err().kind(), "truncated");
        let mut bad = a.clone();
        bad[0] = 0;
        let mut s = FrameStream::new(&bad[..], "t".as_ref(), 0);
        assert_eq!(
            s.read_full(&mut out, "x").unwrap_err().kind(),
            "corrupt-frame"
        );
    }
}
