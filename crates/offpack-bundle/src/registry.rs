//! The registry form of an image (format 1.4, spec 5.8): the registry's own manifest, index and
//! compressed layer blobs, kept byte for byte so that repository digests stay valid, and the
//! streaming decompression that proves a compressed layer's diff ID.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::Digest;

/// OCI image manifest.
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// How a layer blob is compressed, from its media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// An uncompressed tar (`…tar`, Docker's `…tar` never occurs in practice but is accepted).
    None,
    /// gzip (`application/vnd.oci.image.layer.v1.tar+gzip`,
    /// `application/vnd.docker.image.rootfs.diff.tar.gzip`).
    Gzip,
    /// zstd (`application/vnd.oci.image.layer.v1.tar+zstd`).
    Zstd,
}

impl Compression {
    /// The compression a layer media type names; `None` (Rust's) for a media type that is not a
    /// layer offpack knows (foreign layers, encrypted layers, artifacts).
    pub fn of_media_type(media_type: &str) -> Option<Compression> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => {
                Some(Compression::Gzip)
            }
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Some(Compression::Zstd)
            }
            _ => None,
        }
    }

    /// The compression the first bytes of a blob announce (gzip or zstd magic).
    pub(crate) fn sniff(prefix: &[u8]) -> Option<Compression> {
        match prefix {
            [0x1f, 0x8b, ..] => Some(Compression::Gzip),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// `registry` of an image in `offpack.json` (format 1.4): the image as its registry serves it.
/// The image's `oci_manifest` is then the registry's manifest (its digest is the repository
/// digest) and its `layers` are the registry's blobs, compressed as the registry has them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryImage {
    /// Media type of the manifest `oci_manifest` names: [`MEDIA_OCI_MANIFEST`] or
    /// [`MEDIA_DOCKER_MANIFEST`].
    pub media_type: String,
    /// `repository@sha256:…` references that name this image in a registry (fully qualified,
    /// `docker.io/library/python@sha256:…`); each digest is the manifest's or the index's.
    #[serde(default)]
    pub repo_digests: Vec<String>,
    /// One per entry of the image's `layers`, in order.
    pub layers: Vec<RegistryLayer>,
    /// The multi-platform index the manifest was chosen from, when the registry served one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<RegistryIndex>,
}

/// One layer of a [`RegistryImage`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryLayer {
    /// The layer's media type in the registry's manifest.
    pub media_type: String,
    /// Digest of the decompressed tar: the config's `rootfs.diff_ids` entry.
    pub diff_id: Digest,
    /// Size of the decompressed tar (what a reader that decompresses it must announce in a tar
    /// header before streaming it, e.g. to `docker load`).
    pub diff_size: u64,
}

/// The index blob a [`RegistryImage`] came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryIndex {
    /// The index blob (carried whole, byte for byte, even when only some of its manifests are).
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// [`MEDIA_OCI_INDEX`] or [`MEDIA_DOCKER_LIST`].
    pub media_type: String,
}

/// The largest zstd window a layer may need (128 MiB, what `zstd -d` accepts without `--long`
/// and what the bundle's own frames may use, SPEC 3.3): memory is never allocated from a size a
/// blob declares. Layers of common tools use far less (BuildKit's and containerd's: 8 MiB).
const MAX_WINDOW_LOG: u32 = 27;

/// What a compressed blob decompressed to, or why it did not.
pub(crate) type Decompressed = Result<(Digest, u64), String>;

/// A `Write` that decompresses what it is given and hashes and counts the output: the diff ID
/// and size of a compressed layer, in bounded memory, as the blob streams past.
pub struct DiffHasher {
    state: State,
}

enum State {
    /// The first bytes, until they say which decoder to use.
    Sniffing(Vec<u8>),
    Gzip(Box<flate2::write::MultiGzDecoder<HashCount>>),
    Zstd(Box<zstd::stream::write::Decoder<'static, HashCount>>),
    /// Not compressed (by the magic bytes), or the decoder failed: nothing more to do.
    Done(Option<String>),
}

#[derive(Default)]
struct HashCount {
    hasher: Sha256,
    len: u64,
}

impl Write for HashCount {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl DiffHasher {
    /// A hasher that picks gzip or zstd from the blob's first bytes.
    pub(crate) fn sniffing() -> Self {
        DiffHasher {
            state: State::Sniffing(Vec::with_capacity(4)),
        }
    }

    /// A hasher for a blob of known `compression`.
    pub fn new(compression: Compression) -> io::Result<Self> {
        let state = match compression {
            Compression::Gzip => State::Gzip(Box::new(flate2::write::MultiGzDecoder::new(
                HashCount::default(),
            ))),
            Compression::Zstd => {
                let mut d = zstd::stream::write::Decoder::new(HashCount::default())?;
                d.window_log_max(MAX_WINDOW_LOG)?;
                State::Zstd(Box::new(d))
            }
            Compression::None => State::Done(None),
        };
        Ok(DiffHasher { state })
    }

    /// True when the blob did not start with gzip or zstd magic (after at least 4 bytes).
    pub(crate) fn is_plain(&self) -> bool {
        matches!(self.state, State::Done(None))
    }

    /// Feeds the next bytes of the blob. A decoding error is kept for [`Self::finish`].
    pub fn update(&mut self, mut bytes: &[u8]) {
        if let State::Sniffing(prefix) = &mut self.state {
            let take = (4 - prefix.len()).min(bytes.len());
            prefix.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if prefix.len() < 4 {
                return;
            }
            let prefix = std::mem::take(prefix);
            self.state = match Compression::sniff(&prefix).map(DiffHasher::new) {
                Some(Ok(h)) => h.state,
                Some(Err(e)) => State::Done(Some(e.to_string())),
                None => State::Done(None),
            };
            self.update(&prefix);
        }
        let result = match &mut self.state {
            State::Gzip(d) => d.write_all(bytes),
            State::Zstd(d) => d.write_all(bytes),
            _ => Ok(()),
        };
        if let Err(e) = result {
            self.state = State::Done(Some(e.to_string()));
        }
    }

    /// The decompressed digest and size, or why the data did not decompress.
    pub fn finish(self) -> Result<(Digest, u64), String> {
        let out = match self.state {
            State::Gzip(d) => d.finish().map_err(|e| e.to_string()),
            State::Zstd(mut d) => d
                .flush()
                .map(|()| d.into_inner())
                .map_err(|e| e.to_string()),
            State::Sniffing(_) | State::Done(None) => {
                return Err("it is neither gzip nor zstd".into());
            }
            State::Done(Some(e)) => return Err(e),
        }?;
        Ok((Digest::from_hasher(out.hasher), out.len))
    }
}

/// The uncompressed layer tar of a zstd layer blob, as it streams: for engines whose `docker
/// load` reads only uncompressed and gzip layer files (Docker 20.10 reads a zstd file as a tar
/// and fails with "unexpected EOF", measured on 20.10.24).
pub fn zstd_layer_reader<'a, R: io::Read + 'a>(blob: R) -> io::Result<Box<dyn io::Read + 'a>> {
    let mut d = zstd::stream::read::Decoder::new(blob)?;
    d.window_log_max(MAX_WINDOW_LOG)?;
    Ok(Box::new(d))
}

/// The `digest`s of an image index's `manifests`.
pub(crate) fn index_manifest_digests(index: &Value) -> Vec<&str> {
    index
        .get("manifests")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(|d| d.get("digest").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn hashes_what_gzip_and_zstd_blobs_decompress_to_in_any_chunking() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let want = (Digest::of_bytes(&data), data.len() as u64);
        for blob in [gzip(&data), zstd::encode_all(&data[..], 3).unwrap()] {
            for chunk in [1, 3, 7, 65_536] {
                let mut h = DiffHasher::sniffing();
                for c in blob.chunks(chunk) {
                    h.update(c);
                }
                assert_eq!(h.finish().unwrap(), want, "chunk {chunk}");
            }
        }
        // Two gzip members (what pigz and concatenation give) are one layer.
        let mut two = gzip(&data[..1000]);
        two.extend(gzip(&data[1000..]));
        let mut h = DiffHasher::new(Compression::Gzip).unwrap();
        h.update(&two);
        assert_eq!(h.finish().unwrap(), want);
    }

    #[test]
    fn plain_and_broken_blobs_say_why() {
        let mut h = DiffHasher::sniffing();
        h.update(b"{\"config\":1}");
        assert!(h.is_plain());
        assert!(h.finish().unwrap_err().contains("neither gzip nor zstd"));
        let mut broken = gzip(b"hello world");
        let n = broken.len();
        broken[n / 2] ^= 0xff;
        broken.truncate(n - 3);
        let mut h = DiffHasher::sniffing();
        h.update(&broken);
        assert!(h.finish().is_err());
    }

    #[test]
    fn a_zstd_window_beyond_128_mib_is_refused_not_allocated() {
        let data = vec![7u8; 1000];
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        e.set_parameter(zstd::zstd_safe::CParameter::WindowLog(28))
            .unwrap();
        e.write_all(&data).unwrap();
        let blob = e.finish().unwrap();
        let mut h = DiffHasher::new(Compression::Zstd).unwrap();
        h.update(&blob);
        assert!(h.finish().is_err());
    }

    #[test]
    fn media_types() {
        assert_eq!(
            Compression::of_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::of_media_type("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            Compression::of_media_type("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
            None
        );
    }
}
