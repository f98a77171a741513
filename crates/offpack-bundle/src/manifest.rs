//! `offpack.json` (offpack's manifest) and the metadata derived from it: OCI image manifests, the OCI
//! `index.json` and Docker's `manifest.json`.

use std::collections::{BTreeMap, BTreeSet};

use offpack_dockerfile::Builder;
use offpack_ref::ImageRef;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::registry::{
    MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_INDEX, RegistryImage, RegistryIndex,
};
use crate::{BundleError, Digest};

/// The format version this crate writes.
pub const FORMAT_VERSION: &str = "1.4";
/// The major format version this crate reads.
pub const FORMAT_MAJOR: u32 = 1;

/// A blob named by digest and size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    /// The blob's digest (its entry is `blobs/sha256/<hex>`).
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// `offpack.json`: what the bundle holds. Unknown fields are ignored (minor versions only add fields).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// `"MAJOR.MINOR"`; [`FORMAT_VERSION`] when written by this crate.
    pub format_version: String,
    /// Version of the offpack that wrote the bundle.
    pub offpack_version: String,
    /// RFC 3339 UTC creation time (see [`rfc3339_utc_now`]).
    pub created: String,
    /// The Compose project.
    pub project: Project,
    /// Target platforms, `os/arch[/variant]`.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// The images.
    #[serde(default)]
    pub images: Vec<Image>,
    /// Language packages (wheels, npm tarballs) stored as blobs (spec 5.7); empty in bundles that
    /// carry none.
    #[serde(default)]
    pub packages: Vec<Package>,
    /// What the far side needs to load and rebuild single services (spec 5.5); empty in bundles
    /// that record no services.
    #[serde(default)]
    pub rebuild: Rebuild,
    /// Format 1.1: set when this is a delta bundle, which leaves out layers the far side already has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<Delta>,
}

/// What a delta bundle leaves out (format 1.1, spec 5.6).
///
/// The bundle's images still list every layer (in `offpack.json`, the OCI manifests and `manifest.json`),
/// but the blobs of `absent_layers` are deliberately not stored: the far side's engine holds them. Writer and
/// verifier accept exactly these blobs as missing; any other missing blob is still an error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// Free text: what the far side was said to have (e.g. the `--have` file's name and date).
    pub base: String,
    /// Layers (diff IDs) that images list but the bundle does not carry.
    pub absent_layers: Vec<Digest>,
}

/// `rebuild` in `offpack.json`: the bundle's services, so that the far side can load or rebuild
/// one service without the Compose project (spec 5.5).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rebuild {
    /// Service name → what it needs. Left out of `offpack.json` when empty, as bundles made
    /// before this field was specified wrote `"rebuild": {}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, RebuildService>,
}

/// One service under [`Rebuild::services`]. The fields are declared in alphabetical order, the
/// order in which bundles written while `rebuild` was a free-form map hold them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebuildService {
    /// Format 1.2, built services: the builder that built the image, so that a far-side rebuild
    /// uses the one whose cache the bundle carries. A value this version does not know reads as
    /// `None` (a later minor version may add one; SPEC 5.5).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "known_builder"
    )]
    pub builder: Option<Builder>,
    /// True when offpack built the service's image (it has a `build` section).
    pub built: bool,
    /// Images of the named intermediate stages of its build, for offline rebuilds from cache.
    #[serde(default)]
    pub cache_images: Vec<String>,
    /// The names the service's image has (for built services, the names offpack tags).
    pub image: Vec<String>,
    /// IDs of every image the service needs: its own and the images its build uses; each is the
    /// `id` of an image of the bundle.
    pub images: BTreeSet<Digest>,
    /// Format 1.2, built services: the build-inputs digest of the build that made the image
    /// (offpack's encoding, docs/decisions/0082-build-inputs-digest.md); the image carries it as
    /// its `dev.offpack.build-inputs` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Digest>,
}

/// `builder` as a string: `buildkit`/`classic`, another string reads as unknown (`None`).
fn known_builder<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Builder>, D::Error> {
    let name: Option<String> = Option::deserialize(d)?;
    Ok(match name.as_deref() {
        Some("buildkit") => Some(Builder::BuildKit),
        Some("classic") => Some(Builder::Classic),
        _ => None,
    })
}

/// The Compose project a bundle was made from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// Project name.
    pub name: String,
    /// Project files and their digests at bundling time.
    #[serde(default)]
    pub files: Vec<ProjectFile>,
}

/// One project file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectFile {
    /// Path relative to the project directory, `/`-separated.
    pub path: String,
    /// Digest of its content.
    pub sha256: Digest,
}

/// One image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Every reference of the image, familiar form (`python:3.11-slim`, mirror-prefixed names too).
    pub refs: Vec<String>,
    /// Image ID: `sha256:<config digest hex>`.
    pub id: Digest,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// The config blob.
    pub config: BlobRef,
    /// Uncompressed layer tars, in order (digests = diff IDs).
    pub layers: Vec<BlobRef>,
    /// The OCI image manifest blob. [`crate::BundleWriter::finish`] writes it and fills this in (any value
    /// given is replaced) unless the image has its [`Image::registry`] form, whose manifest is the
    /// registry's own blob, given here; always present in a bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci_manifest: Option<BlobRef>,
    /// Format 1.4: the image as its registry serves it (spec 5.8). Then `oci_manifest` is the
    /// registry's manifest and `layers` are its (usually compressed) blobs, whose diff IDs are here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryImage>,
}

/// A language package stored as a blob (spec 5.7): a Python wheel or sdist, an npm tarball. Several
/// packages may name the same blob (it is stored once).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// `pypi` or `npm` ([`ECOSYSTEM_PYPI`], [`ECOSYSTEM_NPM`]); readers skip packages of an
    /// ecosystem they do not know (a later minor version may add one).
    pub ecosystem: String,
    /// Package name as the index or registry spells it (npm: with its scope, `@scope/name`).
    pub name: String,
    /// Version.
    pub version: String,
    /// The file's name as the index or registry serves it: a plain file name, no directory
    /// (checked by [`Manifest::validate`], see [`check_package_filename`]).
    pub filename: String,
    /// The blob.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Services that need it.
    #[serde(default)]
    pub services: Vec<String>,
    /// Format 1.3, npm: the Subresource Integrity string of the tarball as the lock file has it
    /// (`sha512-…`), for packuments served behind the gap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<String>,
    /// Format 1.3, optional free text: the target a platform-specific package was fetched for
    /// (e.g. `cp311-manylinux_2_17_x86_64 linux/amd64` for a wheel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

/// [`Package::ecosystem`] of Python packages (wheels, sdists) from a PEP 503 index.
pub const ECOSYSTEM_PYPI: &str = "pypi";
/// [`Package::ecosystem`] of npm registry tarballs.
pub const ECOSYSTEM_NPM: &str = "npm";
/// The longest [`Package::filename`], in bytes (a file name on common file systems).
pub const MAX_PACKAGE_FILENAME: usize = 255;

/// Checks that `filename` is a plain file name that is safe to create in a directory and to
/// serve in a URL path: not empty, at most [`MAX_PACKAGE_FILENAME`] bytes, no `/` or `\`, no
/// `..`, not `.`, no NUL or other control character. Returns why not.
pub fn check_package_filename(filename: &str) -> Result<(), String> {
    if filename.is_empty() {
        return Err("it is empty".into());
    }
    if filename.len() > MAX_PACKAGE_FILENAME {
        return Err(format!(
            "it is {} bytes long, more than {MAX_PACKAGE_FILENAME}",
            filename.len()
        ));
    }
    if filename.contains(['/', '\\']) {
        return Err("it contains a path separator".into());
    }
    if filename == "." || filename.contains("..") {
        return Err("it contains `..` or is `.`".into());
    }
    if filename.chars().any(char::is_control) {
        return Err("it contains a control character".into());
    }
    Ok(())
}

impl Package {
    /// What spec 5.7 requires of a package's own fields (its blob is the bundle's to check): a
    /// non-empty ecosystem, name and version, and a plain file name. Returns why not.
    pub fn check(&self) -> Result<(), String> {
        for (field, value) in [
            ("ecosystem", &self.ecosystem),
            ("name", &self.name),
            ("version", &self.version),
        ] {
            if value.trim().is_empty() {
                return Err(format!("its {field} is empty"));
            }
        }
        check_package_filename(&self.filename)
            .map_err(|why| format!("its filename is not a plain file name: {why}"))
    }

    /// A name for messages: `ecosystem name version (filename)`, control characters escaped.
    pub fn display_name(&self) -> String {
        crate::escape_controls(&format!(
            "{} {} {} ({})",
            self.ecosystem, self.name, self.version, self.filename
        ))
        .into_owned()
    }
}

impl Manifest {
    /// An empty manifest for `project`, created now, format [`FORMAT_VERSION`].
    pub fn new(offpack_version: &str, project: &str) -> Self {
        Manifest {
            format_version: FORMAT_VERSION.to_owned(),
            offpack_version: offpack_version.to_owned(),
            created: rfc3339_utc_now(),
            project: Project {
                name: project.to_owned(),
                files: Vec::new(),
            },
            platforms: Vec::new(),
            images: Vec::new(),
            packages: Vec::new(),
            rebuild: Rebuild::default(),
            delta: None,
        }
    }

    /// True if `d` is a layer this (delta) bundle deliberately does not carry.
    pub fn is_absent(&self, d: &Digest) -> bool {
        self.delta
            .as_ref()
            .is_some_and(|delta| delta.absent_layers.contains(d))
    }

    /// Parses `offpack.json`, checking the major version first so a future format gets a clear message
    /// rather than a field error.
    pub fn from_json(bytes: &[u8]) -> Result<Self, BundleError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            BundleError::BadManifest(format!("offpack.json is not valid JSON: {e}"))
        })?;
        let version = value
            .get("format_version")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                BundleError::BadManifest("offpack.json has no `format_version` string".into())
            })?;
        check_format_version(version)?;
        let manifest: Manifest = serde_json::from_value(value)
            .map_err(|e| BundleError::BadManifest(format!("offpack.json is invalid: {e}")))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Serializes as pretty JSON with a final newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Checks what serde cannot: the creation time format, image IDs and platforms, packages'
    /// names, versions and file names, and that a delta's absent layers are layers.
    pub fn validate(&self) -> Result<(), BundleError> {
        if !is_rfc3339_utc(&self.created) {
            return Err(BundleError::BadManifest(format!(
                "offpack.json: `created` is `{}`, expected an RFC 3339 UTC time like 2026-01-31T12:00:00Z",
                self.created
            )));
        }
        for image in &self.images {
            if image.id != image.config.digest {
                return Err(BundleError::BadManifest(format!(
                    "offpack.json: image {} has id {} but its config is {}",
                    image.display_name(),
                    image.id,
                    image.config.digest
                )));
            }
            image.check_registry_form()?;
            parse_platform(&image.platform).ok_or_else(|| {
                BundleError::BadManifest(format!(
                    "offpack.json: image {} has platform `{}`, expected os/arch[/variant]",
                    image.display_name(),
                    image.platform
                ))
            })?;
        }
        for p in &self.packages {
            p.check().map_err(|why| {
                BundleError::BadManifest(format!(
                    "offpack.json: package {}: {why}",
                    p.display_name()
                ))
            })?;
        }
        if let Some(delta) = &self.delta {
            let mut seen = std::collections::HashSet::new();
            for d in &delta.absent_layers {
                if !seen.insert(d) {
                    return Err(BundleError::BadManifest(format!(
                        "offpack.json: delta.absent_layers lists {d} twice"
                    )));
                }
                let is_layer = self
                    .images
                    .iter()
                    .any(|i| i.layers.iter().any(|l| l.digest == *d));
                if !is_layer {
                    return Err(BundleError::BadManifest(format!(
                        "offpack.json: delta.absent_layers lists {d}, which is not a layer of any image"
                    )));
                }
            }
        }
        Ok(())
    }
}

impl RegistryIndex {
    /// The index blob.
    pub fn blob(&self) -> BlobRef {
        BlobRef {
            digest: self.digest.clone(),
            size: self.size,
        }
    }
}

impl Image {
    /// The layers' diff IDs (the config's `rootfs.diff_ids`): the layer blobs' digests, or for the
    /// registry form the digests of what they decompress to.
    pub fn diff_ids(&self) -> Vec<Digest> {
        match &self.registry {
            Some(r) => r.layers.iter().map(|l| l.diff_id.clone()).collect(),
            None => self.layers.iter().map(|l| l.digest.clone()).collect(),
        }
    }

    /// The media type of the manifest `oci_manifest` names.
    pub fn manifest_media_type(&self) -> &str {
        self.registry
            .as_ref()
            .map_or(OCI_MANIFEST_MEDIA_TYPE, |r| r.media_type.as_str())
    }

    /// What serde cannot check of the registry form: one entry per layer, known media types, and
    /// repository digests that name the manifest or the index.
    fn check_registry_form(&self) -> Result<(), BundleError> {
        let Some(r) = &self.registry else {
            return Ok(());
        };
        let name = self.display_name();
        let bad =
            |why: String| BundleError::BadManifest(format!("offpack.json: image {name}: {why}"));
        if r.layers.len() != self.layers.len() {
            return Err(bad(format!(
                "registry.layers has {} entries for {} layers",
                r.layers.len(),
                self.layers.len()
            )));
        }
        if ![OCI_MANIFEST_MEDIA_TYPE, MEDIA_DOCKER_MANIFEST].contains(&r.media_type.as_str()) {
            return Err(bad(format!(
                "registry.media_type `{}` is not an image manifest media type",
                r.media_type
            )));
        }
        if let Some(index) = &r.index {
            if ![MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST].contains(&index.media_type.as_str()) {
                return Err(bad(format!(
                    "registry.index.media_type `{}` is not an index media type",
                    index.media_type
                )));
            }
        }
        for (i, l) in r.layers.iter().enumerate() {
            if crate::registry::Compression::of_media_type(&l.media_type).is_none() {
                return Err(bad(format!(
                    "layer {} has media type `{}`, not a layer offpack can load",
                    i + 1,
                    l.media_type
                )));
            }
        }
        let manifest_digest = self.oci_manifest.as_ref().map(|m| &m.digest);
        for rd in &r.repo_digests {
            let digest = rd
                .rsplit_once('@')
                .and_then(|(_, d)| d.parse::<Digest>().ok());
            let names_ours = digest.as_ref().is_some_and(|d| {
                Some(d) == manifest_digest || r.index.as_ref().is_some_and(|i| i.digest == *d)
            });
            if !names_ours {
                return Err(bad(format!(
                    "repository digest `{rd}` names neither its manifest nor its index"
                )));
            }
        }
        Ok(())
    }

    /// A name for messages: the first reference, or the ID.
    pub fn display_name(&self) -> String {
        self.refs
            .first()
            .cloned()
            .unwrap_or_else(|| self.id.to_string())
    }
}

/// Checks `MAJOR.MINOR` against [`FORMAT_MAJOR`].
pub(crate) fn check_format_version(version: &str) -> Result<(), BundleError> {
    let unsupported = || BundleError::UnsupportedVersion {
        found: version.to_owned(),
        supported: format!("{FORMAT_MAJOR}.x"),
    };
    let (major, minor) = version.split_once('.').ok_or_else(unsupported)?;
    let major: u32 = major.parse().map_err(|_| unsupported())?;
    minor.parse::<u32>().map_err(|_| unsupported())?;
    if major != FORMAT_MAJOR {
        return Err(unsupported());
    }
    Ok(())
}

/// The current time as RFC 3339 UTC with seconds precision, e.g. `2026-11-23T14:37:40Z`.
pub fn rfc3339_utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339_from_unix(secs)
}

/// `secs` since the Unix epoch as RFC 3339 UTC with seconds precision.
pub fn rfc3339_from_unix(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 20 || !digits(0..4) || !digits(5..7) || !digits(8..10) || !digits(11..13) {
        return false;
    }
    if !digits(14..16) || !digits(17..19) {
        return false;
    }
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return false;
    }
    match &b[19..] {
        [b'Z'] => true,
        [b'.', rest @ .., b'Z'] => !rest.is_empty() && rest.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// `os/arch[/variant]` → (os, arch, variant).
fn parse_platform(p: &str) -> Option<(&str, &str, Option<&str>)> {
    let mut parts = p.split('/');
    let os = parts.next().filter(|s| !s.is_empty())?;
    let arch = parts.next().filter(|s| !s.is_empty())?;
    let variant = match parts.next() {
        Some(v) if !v.is_empty() => Some(v),
        Some(_) => return None,
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some((os, arch, variant))
}

pub(crate) const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_TAR_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// The exact `oci-layout` content.
pub(crate) const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The OCI image manifest of `image` (section 5.2 of the spec).
pub(crate) fn oci_manifest_json(image: &Image) -> Vec<u8> {
    let layers: Vec<Value> = image
        .layers
        .iter()
        .map(|l| json!({"mediaType": OCI_LAYER_TAR_MEDIA_TYPE, "digest": l.digest, "size": l.size}))
        .collect();
    let value = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": OCI_CONFIG_MEDIA_TYPE, "digest": image.config.digest, "size": image.config.size},
        "layers": layers,
    });
    serde_json::to_vec(&value).unwrap_or_default()
}

/// `index.json` (section 5.3). Images must have `oci_manifest` set.
pub(crate) fn oci_index_value(manifest: &Manifest) -> Value {
    let mut descriptors = Vec::new();
    for image in &manifest.images {
        let Some(oci) = &image.oci_manifest else {
            continue;
        };
        let mut base = Map::new();
        base.insert("mediaType".into(), image.manifest_media_type().into());
        base.insert("digest".into(), oci.digest.to_string().into());
        base.insert("size".into(), oci.size.into());
        if let Some((os, arch, variant)) = parse_platform(&image.platform) {
            let mut platform = Map::new();
            platform.insert("architecture".into(), arch.into());
            platform.insert("os".into(), os.into());
            if let Some(v) = variant {
                platform.insert("variant".into(), v.into());
            }
            base.insert("platform".into(), Value::Object(platform));
        }
        if image.refs.is_empty() {
            descriptors.push(Value::Object(base.clone()));
        }
        for reference in &image.refs {
            let (full, ref_name) = oci_names(reference);
            let mut d = base.clone();
            d.insert(
                "annotations".into(),
                json!({
                    "io.containerd.image.name": full,
                    "org.opencontainers.image.ref.name": ref_name,
                }),
            );
            descriptors.push(Value::Object(d));
        }
    }
    json!({"schemaVersion": 2, "mediaType": OCI_INDEX_MEDIA_TYPE, "manifests": descriptors})
}

/// Docker's `manifest.json` (section 5.4).
pub(crate) fn docker_manifest_value(manifest: &Manifest) -> Value {
    let items: Vec<Value> = manifest
        .images
        .iter()
        .map(|image| {
            let tags: Vec<&String> = image.refs.iter().filter(|r| !r.contains('@')).collect();
            let layers: Vec<String> = image.layers.iter().map(|l| l.digest.blob_path()).collect();
            json!({"Config": image.config.digest.blob_path(), "RepoTags": tags, "Layers": layers})
        })
        .collect();
    Value::Array(items)
}

/// The two names spec 5.3 gives a reference in `index.json`: the fully qualified reference
/// (`python:3.11` → `docker.io/library/python:3.11`) and the written tag, or the fully qualified
/// reference when none was written (`redis`, `redis@sha256:…`). A reference Docker would not
/// accept has no normal form: it is given as written, so that verify still compares like with like.
fn oci_names(reference: &str) -> (String, String) {
    match ImageRef::parse_with_implicit_tag(reference) {
        Ok((parsed, implicit_tag)) => {
            let full = parsed.to_string();
            let ref_name = match parsed.tag {
                Some(tag) if !implicit_tag => tag,
                _ => full.clone(),
            };
            (full, ref_name)
        }
        Err(_) => (reference.to_owned(), reference.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> Digest {
        Digest::from_hex(&c.to_string().repeat(64)).unwrap()
    }

    fn image() -> Image {
        Image {
            refs: vec![
                "python:3.11-slim".into(),
                "mirror.local/library/python:3.11-slim".into(),
            ],
            id: digest('c'),
            platform: "linux/arm64/v8".into(),
            config: BlobRef {
                digest: digest('c'),
                size: 10,
            },
            layers: vec![BlobRef {
                digest: digest('1'),
                size: 20,
            }],
            oci_manifest: Some(BlobRef {
                digest: digest('e'),
                size: 30,
            }),
            registry: None,
        }
    }

    #[test]
    fn normalizes_references_like_docker() {
        let full = |r: &str| oci_names(r).0;
        let ref_name = |r: &str| oci_names(r).1;
        assert_eq!(
            full("python:3.11-slim"),
            "docker.io/library/python:3.11-slim"
        );
        assert_eq!(ref_name("python:3.11-slim"), "3.11-slim");
        assert_eq!(full("redis"), "docker.io/library/redis:latest");
        assert_eq!(ref_name("redis"), "docker.io/library/redis:latest");
        assert_eq!(ref_name("redis:latest"), "latest");
        assert_eq!(full("bitnami/redis:7"), "docker.io/bitnami/redis:7");
        assert_eq!(full("localhost/app"), "localhost/app:latest");
        assert_eq!(full("docker.io/python"), "docker.io/library/python:latest");
        let pinned = format!("redis@sha256:{}", "a".repeat(64));
        assert_eq!(full(&pinned), format!("docker.io/library/{pinned}"));
        assert_eq!(ref_name(&pinned), format!("docker.io/library/{pinned}"));
        let tagged_and_pinned = format!("redis:7@sha256:{}", "a".repeat(64));
        assert_eq!(ref_name(&tagged_and_pinned), "7");
        assert_eq!(full("reg.local:5000/a/b:1"), "reg.local:5000/a/b:1");
        assert_eq!(ref_name("reg.local:5000/a/b"), "reg.local:5000/a/b:latest");
        assert_eq!(full("localhost:5000/app:v1"), "localhost:5000/app:v1");
        assert_eq!(oci_names("Not A Ref").0, "Not A Ref");
    }

    #[test]
    fn docker_manifest_lists_tags_and_blob_paths() {
        let mut m = Manifest::new("0.1.0", "shop");
        let mut img = image();
        img.refs.push("python@sha256:".to_owned() + &"a".repeat(64));
        m.images.push(img);
        let v = docker_manifest_value(&m);
        assert_eq!(v[0]["Config"], format!("blobs/sha256/{}", "c".repeat(64)));
        assert_eq!(v[0]["RepoTags"].as_array().unwrap().len(), 2);
        assert_eq!(
            v[0]["Layers"][0],
            format!("blobs/sha256/{}", "1".repeat(64))
        );
    }

    #[test]
    fn oci_index_has_one_descriptor_per_reference() {
        let mut m = Manifest::new("0.1.0", "shop");
        m.images.push(image());
        let v = oci_index_value(&m);
        let manifests = v["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 2);
        assert_eq!(
            manifests[0]["annotations"]["io.containerd.image.name"],
            "docker.io/library/python:3.11-slim"
        );
        assert_eq!(
            manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
            "3.11-slim"
        );
        assert_eq!(manifests[0]["platform"]["variant"], "v8");
    }

    #[test]
    fn refuses_other_major_versions_naming_both() {
        let json = br#"{"format_version":"2.0","something":"else"}"#;
        let err = Manifest::from_json(json).unwrap_err();
        assert_eq!(err.kind(), "unsupported-version");
        let msg = err.to_string();
        assert!(msg.contains("2.0") && msg.contains("1.x"), "{msg}");
    }

    #[test]
    fn ignores_unknown_fields_of_same_major() {
        let mut m = Manifest::new("0.1.0", "shop");
        m.images.push(image());
        let mut v: Value = serde_json::from_slice(&m.to_json()).unwrap();
        v["format_version"] = "1.7".into();
        v["future_field"] = json!({"x": 1});
        v["images"][0]["future"] = 3.into();
        let parsed = Manifest::from_json(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(parsed.images, m.images);
    }

    #[test]
    fn reads_bundles_whose_rebuild_is_absent_or_empty_as_no_services() {
        let m = Manifest::new("0.1.0", "shop");
        let json = m.to_json();
        assert!(
            String::from_utf8_lossy(&json).contains(r#""rebuild": {}"#),
            "an empty rebuild is written as before"
        );
        let mut v: Value = serde_json::from_slice(&json).unwrap();
        v.as_object_mut().unwrap().remove("rebuild");
        for json in [json, serde_json::to_vec(&v).unwrap()] {
            assert_eq!(
                Manifest::from_json(&json).unwrap().rebuild,
                Rebuild::default()
            );
        }
    }

    #[test]
    fn rebuild_services_round_trip_and_must_name_image_ids() {
        let mut m = Manifest::new("0.1.0", "shop");
        m.rebuild.services.insert(
            "web".into(),
            RebuildService {
                built: true,
                cache_images: vec!["shop-web:offpack-stage-deps".into()],
                image: vec!["shop-web:latest".into()],
                images: [digest('a'), digest('b')].into(),
                ..RebuildService::default()
            },
        );
        let parsed = Manifest::from_json(&m.to_json()).unwrap();
        assert_eq!(parsed.rebuild, m.rebuild);

        let mut v: Value = serde_json::from_slice(&m.to_json()).unwrap();
        v["rebuild"]["services"]["web"]["images"] = json!(["not-an-id"]);
        let err = Manifest::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(err.to_string().contains("not-an-id"), "{err}");
    }

    #[test]
    fn builder_and_inputs_are_optional_and_a_later_builder_reads_as_unknown() {
        let mut m = Manifest::new("0.1.0", "shop");
        m.rebuild.services.insert(
            "web".into(),
            RebuildService {
                builder: Some(Builder::BuildKit),
                built: true,
                images: [digest('a')].into(),
                inputs: Some(digest('c')),
                ..RebuildService::default()
            },
        );
        m.rebuild
            .services
            .insert("db".into(), RebuildService::default());
        let json = m.to_json();
        let text = String::from_utf8_lossy(&json);
        assert!(text.contains(r#""builder": "buildkit""#), "{text}");
        assert_eq!(
            text.matches("builder").count(),
            1,
            "left out when None: {text}"
        );
        assert_eq!(Manifest::from_json(&json).unwrap().rebuild, m.rebuild);

        let mut v: Value = serde_json::from_slice(&json).unwrap();
        v["rebuild"]["services"]["web"]["builder"] = "buildx-2030".into();
        let parsed = Manifest::from_json(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(parsed.rebuild.services["web"].builder, None);
        assert_eq!(parsed.rebuild.services["web"].inputs, Some(digest('c')));

        v["rebuild"]["services"]["web"]["builder"] = 3.into();
        assert!(Manifest::from_json(&serde_json::to_vec(&v).unwrap()).is_err());
        v["rebuild"]["services"]["web"]["builder"] = "classic".into();
        v["rebuild"]["services"]["web"]["inputs"] = "sha256:short".into();
        let err = Manifest::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(err.to_string().contains("sha256:short"), "{err}");
    }

    #[test]
    fn a_1_1_service_reads_without_builder_or_inputs() {
        let json = format!(
            r#"{{"format_version":"1.1","offpack_version":"0.1.0","created":"2026-01-01T00:00:00Z",
            "project":{{"name":"shop","files":[]}},"platforms":[],"images":[],"packages":[],
            "rebuild":{{"services":{{"web":{{"built":true,"cache_images":[],"image":["shop-web"],"images":["{}"]}}}}}}}}"#,
            digest('a')
        );
        let web = &Manifest::from_json(json.as_bytes())
            .unwrap()
            .rebuild
            .services["web"];
        assert_eq!((web.builder, &web.inputs), (None, &None));
    }

    #[test]
    fn validates_created_and_ids() {
        let mut m = Manifest::new("0.1.0", "shop");
        assert!(m.validate().is_ok());
        m.created = "yesterday".into();
        assert_eq!(m.validate().unwrap_err().kind(), "bad-manifest");
        m.created = "2026-01-31T12:00:00.123Z".into();
        assert!(m.validate().is_ok());
        let mut img = image();
        img.id = digest('d');
        m.images.push(img);
        assert!(m.validate().unwrap_err().to_string().contains("has id"));
    }

    fn package(filename: &str) -> Package {
        Package {
            ecosystem: ECOSYSTEM_PYPI.into(),
            name: "requests".into(),
            version: "2.32.3".into(),
            filename: filename.into(),
            digest: digest('a'),
            size: 64,
            services: vec!["backend".into()],
            integrity: None,
            platform: None,
        }
    }

    #[test]
    fn packages_round_trip_and_leave_out_integrity_and_platform_when_none() {
        let mut m = Manifest::new("0.1.0", "shop");
        m.packages.push(package("requests-2.32.3-py3-none-any.whl"));
        m.packages.push(Package {
            ecosystem: ECOSYSTEM_NPM.into(),
            name: "@scope/left-pad".into(),
            version: "1.3.0".into(),
            filename: "left-pad-1.3.0.tgz".into(),
            integrity: Some("sha512-AAAA".into()),
            platform: Some("linux/amd64".into()),
            ..package("x")
        });
        let json = m.to_json();
        let text = String::from_utf8_lossy(&json);
        assert_eq!(text.matches("\"integrity\"").count(), 1, "{text}");
        assert_eq!(text.matches("\"platform\"").count(), 1, "{text}");
        assert_eq!(Manifest::from_json(&json).unwrap().packages, m.packages);
    }

    #[test]
    fn a_1_2_package_reads_without_the_new_fields_and_an_unknown_ecosystem_is_kept() {
        let json = format!(
            r#"{{"format_version":"1.2","offpack_version":"0.1.0","created":"2026-01-01T00:00:00Z",
            "project":{{"name":"shop","files":[]}},"platforms":[],"images":[],"rebuild":{{}},
            "packages":[{{"ecosystem":"cargo-2031","name":"x","version":"1","filename":"x-1.crate",
            "digest":"{}","size":3}}]}}"#,
            digest('b')
        );
        let m = Manifest::from_json(json.as_bytes()).unwrap();
        assert_eq!(m.packages[0].ecosystem, "cargo-2031");
        assert_eq!(
            (&m.packages[0].integrity, &m.packages[0].services),
            (&None, &vec![])
        );
    }

    #[test]
    fn package_file_names_must_be_plain() {
        for good in [
            "requests-2.32.3-py3-none-any.whl",
            "left-pad-1.3.0.tgz",
            "a",
            "x.tar.gz",
            "\u{e9}t\u{e9}-1.0.tgz",
        ] {
            assert!(check_package_filename(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_PACKAGE_FILENAME + 1);
        for bad in [
            "",
            ".",
            "..",
            "../evil.whl",
            "a/b.whl",
            "a\\b.whl",
            "x..y.whl",
            "nul\0.whl",
            "line\nbreak.whl",
            "esc\u{1b}[2J.whl",
            "c1\u{9b}.whl",
            long.as_str(),
        ] {
            assert!(check_package_filename(bad).is_err(), "{bad:?}");
        }
        assert!(check_package_filename(&"a".repeat(MAX_PACKAGE_FILENAME)).is_ok());
    }

    #[test]
    fn validate_refuses_bad_packages_naming_them() {
        let mut m = Manifest::new("0.1.0", "shop");
        m.packages.push(package("requests-2.32.3-py3-none-any.whl"));
        assert!(m.validate().is_ok());
        m.packages[0].filename = "../../../etc/cron.d/x".into();
        let err = m.validate().unwrap_err();
        assert_eq!(err.kind(), "bad-manifest");
        assert!(
            err.to_string().contains("requests 2.32.3") && err.to_string().contains("filename"),
            "{err}"
        );
        m.packages[0].filename = "ok.whl".into();
        m.packages[0].version = " ".into();
        assert!(
            m.validate()
                .unwrap_err()
                .to_string()
                .contains("version is empty")
        );
        m.packages[0].version = "1".into();
        m.packages[0].name = String::new();
        assert!(
            m.validate()
                .unwrap_err()
                .to_string()
                .contains("name is empty")
        );
        m.packages[0].name = "n".into();
        m.packages[0].ecosystem = String::new();
        assert!(
            m.validate()
                .unwrap_err()
                .to_string()
                .contains("ecosystem is empty")
        );
    }

    #[test]
    fn formats_unix_times() {
        assert_eq!(rfc3339_from_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_from_unix(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_from_unix(1_795_444_660), "2026-11-23T14:37:40Z");
    }
}
