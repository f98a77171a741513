//! The far side's contract for rebuilds: what `bundle` records per service under `rebuild` in
//! offpack.json, and what `load --service` reads back from it.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, anyhow};
use offpack_bundle::{Manifest, escape_controls};
use serde::{Deserialize, Serialize};

/// What the far side needs to know per service, kept under `rebuild` in offpack.json.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RebuildMeta {
    pub services: BTreeMap<String, ServiceMeta>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceMeta {
    /// The names the service's image has (for built services, the names offpack tags).
    pub image: Vec<String>,
    pub built: bool,
    /// IDs of every image the service needs: its own and the images its build uses.
    pub images: BTreeSet<String>,
    /// Images of the named intermediate stages of its build, for offline rebuilds from cache.
    #[serde(default)]
    pub cache_images: Vec<String>,
}

impl RebuildMeta {
    /// The metadata as `Manifest.rebuild` holds it.
    pub fn to_manifest_map(&self) -> Result<serde_json::Map<String, serde_json::Value>> {
        match serde_json::to_value(self)? {
            serde_json::Value::Object(map) => Ok(map),
            _ => unreachable!("RebuildMeta serializes to an object"),
        }
    }

    /// The metadata `manifest` carries.
    pub fn from_manifest(manifest: &Manifest) -> Result<RebuildMeta> {
        serde_json::from_value(serde_json::Value::Object(manifest.rebuild.clone()))
            .context("the bundle's rebuild metadata is not what this offpack writes")
    }
}

/// IDs of the images `services` need (all images when `services` is empty).
pub fn images_for_services(manifest: &Manifest, services: &[String]) -> Result<BTreeSet<String>> {
    if services.is_empty() {
        return Ok(manifest.images.iter().map(|i| i.id.to_string()).collect());
    }
    let meta = RebuildMeta::from_manifest(manifest)?;
    let mut ids = BTreeSet::new();
    for service in services {
        let entry = meta.services.get(service).ok_or_else(|| {
            let known: Vec<_> = meta.services.keys().map(|s| escape_controls(s)).collect();
            anyhow!(
                "the bundle has no service `{}`; it has: {}",
                escape_controls(service),
                known.join(", ")
            )
        })?;
        ids.extend(entry.images.iter().cloned());
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuild_meta_keeps_the_bundle_format() {
        let mut meta = RebuildMeta::default();
        meta.services.insert(
            "web".into(),
            ServiceMeta {
                image: vec!["shop-web:latest".into()],
                built: true,
                images: ["sha256:aa".to_string(), "sha256:bb".into()].into(),
                cache_images: vec!["shop-web:offpack-stage-deps".into()],
            },
        );
        let map = meta.to_manifest_map().unwrap();
        assert_eq!(
            serde_json::Value::Object(map.clone()).to_string(),
            r#"{"services":{"web":{"built":true,"cache_images":["shop-web:offpack-stage-deps"],"image":["shop-web:latest"],"images":["sha256:aa","sha256:bb"]}}}"#
        );
        let mut manifest = Manifest::new("0", "shop");
        manifest.rebuild = map;
        assert_eq!(RebuildMeta::from_manifest(&manifest).unwrap(), meta);
    }
}
