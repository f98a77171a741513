//! Building blocks for test vectors and tests: lets a generator write deliberately broken bundles.
//! Not part of the stable API.

use std::io::Read;
use std::path::Path;

use crate::manifest::BlobRef;
use crate::{
    BundleError, BundleReader, BundleWriter, Digest, INDEX_VERSION, Image, Index, IndexEntry,
};

/// Adds `config` to the bundle as a blob and returns the `linux/amd64` image it describes, named
/// `refs`, made of `layers` (already added), for the manifest given to [`BundleWriter::finish`].
pub fn add_image(
    w: &mut BundleWriter,
    refs: &[&str],
    config: &[u8],
    layers: Vec<BlobRef>,
) -> Result<Image, BundleError> {
    let digest = w.add_blob_bytes(config)?;
    Ok(Image {
        refs: refs.iter().map(|r| (*r).to_owned()).collect(),
        id: digest.clone(),
        platform: "linux/amd64".into(),
        config: BlobRef {
            digest,
            size: config.len() as u64,
        },
        layers,
        oci_manifest: None,
        registry: None,
    })
}

/// A tar entry to assemble: header bytes as given, data, and what the index should say about it.
#[derive(Clone, Debug)]
pub struct RawEntry {
    /// The 512-byte header, written as is.
    pub header: [u8; 512],
    /// The data; padded with zeros to a block.
    pub data: Vec<u8>,
    /// The index entry's path; `None` leaves the entry out of the index (directories).
    pub index_path: Option<String>,
    /// The index entry's size.
    pub index_size: u64,
    /// The index entry's digest.
    pub index_digest: Option<Digest>,
    /// Store the header in a raw frame of its own (as `add_blob` does).
    pub raw_header: bool,
}

impl RawEntry {
    /// A regular file with a canonical header and a truthful index entry.
    pub fn regular(path: &str, data: Vec<u8>) -> Self {
        RawEntry {
            header: crate::tarhdr::regular_header(path, data.len() as u64),
            index_path: Some(path.to_owned()),
            index_size: data.len() as u64,
            index_digest: Some(Digest::of_bytes(&data)),
            data,
            raw_header: false,
        }
    }
}

/// A canonical header with any type flag.
pub fn header(name: &str, size: u64, typeflag: u8) -> [u8; 512] {
    crate::tarhdr::header_with_type(name, size, typeflag)
}

/// Recomputes a header's checksum after editing it.
pub fn set_checksum(h: &mut [u8; 512]) {
    crate::tarhdr::set_checksum(h)
}

/// Assembles a bundle: each entry as one frame (or raw header frame + one frame), the end-of-archive frame,
/// and a trailer with an index built from the entries' `index_*` fields and `manifest`.
pub fn assemble(entries: &[RawEntry], manifest: BlobRef) -> Vec<u8> {
    let mut out = Vec::new();
    let mut tar_offset = 0u64;
    let mut index_entries = Vec::new();
    for e in entries {
        let start = out.len() as u64;
        let mut body = Vec::new();
        if e.raw_header {
            out.extend_from_slice(&crate::frame::raw_header_frame(&e.header));
        } else {
            body.extend_from_slice(&e.header);
        }
        body.extend_from_slice(&e.data);
        body.resize(
            body.len() + crate::tarhdr::padding(e.data.len() as u64) as usize,
            0,
        );
        if !body.is_empty() {
            out.extend_from_slice(&zstd::encode_all(&body[..], 3).unwrap_or_default());
        }
        if let Some(path) = &e.index_path {
            index_entries.push(IndexEntry {
                path: path.clone(),
                digest: e.index_digest.clone(),
                offset: start,
                compressed_len: out.len() as u64 - start,
                size: e.index_size,
                tar_offset,
            });
        }
        tar_offset += 512 + e.data.len() as u64 + crate::tarhdr::padding(e.data.len() as u64);
    }
    out.extend_from_slice(&zstd::encode_all(&[0u8; 1024][..], 3).unwrap_or_default());
    let index = Index {
        index_version: INDEX_VERSION,
        entries: index_entries,
        manifest,
        signature: None,
    };
    out.extend_from_slice(&crate::frame::trailer(
        &serde_json::to_vec(&index).unwrap_or_default(),
    ));
    out
}

/// Builds a trailer around arbitrary index JSON.
pub fn trailer(index_json: &[u8]) -> Vec<u8> {
    crate::frame::trailer(index_json)
}

/// Every entry of a valid bundle with its data, in archive order.
pub fn read_entries(path: &Path) -> Result<Vec<(IndexEntry, Vec<u8>)>, BundleError> {
    let reader = BundleReader::open(path)?;
    let mut out = Vec::new();
    for e in &reader.index().entries {
        let mut data = Vec::new();
        reader
            .entry(&e.path)?
            .read_to_end(&mut data)
            .map_err(|err| BundleError::io(path, err))?;
        out.push((e.clone(), data));
    }
    Ok(out)
}

/// The trailer's index, as JSON, of a bundle's bytes.
pub fn index_of(bytes: &[u8]) -> Result<serde_json::Value, BundleError> {
    let (start, end) = index_span(bytes)?;
    serde_json::from_slice(&bytes[start..end]).map_err(|e| BundleError::BadIndex(e.to_string()))
}

/// Replaces the trailer's index with an edited one (its hash recomputed), e.g. to graft another
/// bundle's signature on.
pub fn rewrite_index(
    bytes: &mut Vec<u8>,
    edit: impl FnOnce(&mut serde_json::Value),
) -> Result<(), BundleError> {
    let mut index = index_of(bytes)?;
    let (start, _) = index_span(bytes)?;
    edit(&mut index);
    let json = serde_json::to_vec(&index).map_err(|e| BundleError::BadIndex(e.to_string()))?;
    bytes.truncate(start - crate::frame::SKIPPABLE_HEADER_LEN as usize);
    bytes.extend_from_slice(&crate::frame::trailer(&json));
    Ok(())
}

/// Where the index JSON lies in a bundle's bytes.
fn index_span(bytes: &[u8]) -> Result<(usize, usize), BundleError> {
    let bad = || BundleError::BadIndex("no trailer".into());
    let len_pos = bytes
        .len()
        .checked_sub(crate::frame::FOOTER_LEN as usize)
        .ok_or_else(bad)?;
    let len =
        u64::from_le_bytes(bytes[len_pos..len_pos + 8].try_into().map_err(|_| bad())?) as usize;
    let start = len_pos.checked_sub(len).ok_or_else(bad)?;
    Ok((start, len_pos))
}

/// A layer tar holding one file `name` with `content`.
pub fn layer_tar(name: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, name, content)
        .and_then(|()| b.into_inner())
        .unwrap_or_default()
}

/// A layer of [`add_registry_image`]: the uncompressed tar and how the registry compressed it.
pub struct RegistryLayerInput<'a> {
    /// The uncompressed layer tar.
    pub tar: &'a [u8],
    /// How the registry stores it.
    pub compression: crate::Compression,
}

/// Two layers as a registry may hold them: `a` gzip-compressed, `b` zstd-compressed.
pub fn gzip_then_zstd<'a>(a: &'a [u8], b: &'a [u8]) -> [RegistryLayerInput<'a>; 2] {
    [
        RegistryLayerInput {
            tar: a,
            compression: crate::Compression::Gzip,
        },
        RegistryLayerInput {
            tar: b,
            compression: crate::Compression::Zstd,
        },
    ]
}

/// Adds an image in its registry form (format 1.4) the way a registry serves it: compressed layer
/// blobs, a config, a Docker schema 2 manifest and, with `platforms` of more than one entry, an
/// OCI index listing one manifest per platform (every manifest names the same config and layers;
/// only the first is carried, as with `--platform` choosing one). `diff_ids`, when given, replaces
/// the config's diff IDs (to make a broken image).
pub fn add_registry_image(
    w: &mut BundleWriter,
    repository: &str,
    tag: &str,
    layers: &[RegistryLayerInput<'_>],
    platforms: &[&str],
    diff_ids: Option<Vec<Digest>>,
) -> Result<Image, BundleError> {
    use std::io::Write as _;
    let mut blobs = Vec::new();
    let mut registry_layers = Vec::new();
    for layer in layers {
        let (bytes, media_type) = match layer.compression {
            crate::Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(layer.tar)
                    .map_err(|e| BundleError::io("gzip", e))?;
                let bytes = e.finish().map_err(|e| BundleError::io("gzip", e))?;
                (bytes, "application/vnd.docker.image.rootfs.diff.tar.gzip")
            }
            crate::Compression::Zstd => (
                zstd::encode_all(layer.tar, 3).map_err(|e| BundleError::io("zstd", e))?,
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
            crate::Compression::None => {
                (layer.tar.to_vec(), "application/vnd.oci.image.layer.v1.tar")
            }
        };
        let digest = w.add_blob_bytes(&bytes)?;
        blobs.push(BlobRef {
            digest,
            size: bytes.len() as u64,
        });
        registry_layers.push(crate::RegistryLayer {
            media_type: media_type.into(),
            diff_id: Digest::of_bytes(layer.tar),
            diff_size: layer.tar.len() as u64,
        });
    }
    let diff_ids =
        diff_ids.unwrap_or_else(|| registry_layers.iter().map(|l| l.diff_id.clone()).collect());
    for (l, d) in registry_layers.iter_mut().zip(&diff_ids) {
        l.diff_id = d.clone();
    }
    let (os, arch) = platforms[0].split_once('/').unwrap_or(("linux", "amd64"));
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch, "os": os,
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap_or_default();
    let config_digest = w.add_blob_bytes(&config)?;
    let layer_descriptors: Vec<serde_json::Value> = blobs
        .iter()
        .zip(&registry_layers)
        .map(|(b, l)| serde_json::json!({"mediaType": l.media_type, "size": b.size, "digest": b.digest}))
        .collect();
    let manifest_for = |platform: &str| {
        // The platform only tells the manifests apart (as two builds of one image would).
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::MEDIA_DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "size": config.len(), "digest": config_digest},
            "layers": layer_descriptors,
            "annotations": {"dev.offpack.test.platform": platform},
        }))
        .unwrap_or_default()
    };
    let manifest = manifest_for(platforms[0]);
    let manifest_digest = w.add_blob_bytes(&manifest)?;
    let mut repo_digests = vec![format!("{repository}@{manifest_digest}")];
    let index = if platforms.len() > 1 {
        let descriptors: Vec<serde_json::Value> = platforms
            .iter()
            .map(|p| {
                let m = manifest_for(p);
                let (os, arch) = p.split_once('/').unwrap_or(("linux", "amd64"));
                serde_json::json!({"mediaType": crate::MEDIA_DOCKER_MANIFEST, "size": m.len(),
                    "digest": Digest::of_bytes(&m), "platform": {"architecture": arch, "os": os}})
            })
            .collect();
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": crate::MEDIA_OCI_INDEX, "manifests": descriptors,
        }))
        .unwrap_or_default();
        let digest = w.add_blob_bytes(&index)?;
        repo_digests.push(format!("{repository}@{digest}"));
        Some(crate::RegistryIndex {
            digest,
            size: index.len() as u64,
            media_type: crate::MEDIA_OCI_INDEX.into(),
        })
    } else {
        None
    };
    Ok(Image {
        refs: vec![format!("{repository}:{tag}")],
        id: config_digest.clone(),
        platform: platforms[0].into(),
        config: BlobRef {
            digest: config_digest,
            size: config.len() as u64,
        },
        layers: blobs,
        oci_manifest: Some(BlobRef {
            digest: manifest_digest,
            size: manifest.len() as u64,
        }),
        registry: Some(crate::RegistryImage {
            media_type: crate::MEDIA_DOCKER_MANIFEST.into(),
            repo_digests,
            layers: registry_layers,
            index,
        }),
    })
}
