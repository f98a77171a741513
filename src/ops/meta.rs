//! The far side's use of the rebuild contract: which images `load --service` needs, read from
//! `rebuild` in offpack.json (typed and specified in the bundle crate as
//! [`offpack_bundle::Rebuild`]).

use std::collections::BTreeSet;

use anyhow::{Result, anyhow};
use offpack_bundle::{Digest, Manifest, escape_controls};

/// IDs of the images `services` need (all images when `services` is empty).
pub fn images_for_services(manifest: &Manifest, services: &[String]) -> Result<BTreeSet<Digest>> {
    if services.is_empty() {
        return Ok(manifest.images.iter().map(|i| i.id.clone()).collect());
    }
    let recorded = &manifest.rebuild.services;
    let mut ids = BTreeSet::new();
    for service in services {
        let entry = recorded.get(service).ok_or_else(|| {
            let known: Vec<_> = recorded.keys().map(|s| escape_controls(s)).collect();
            let known = if known.is_empty() {
                "no services".to_string()
            } else {
                known.join(", ")
            };
            anyhow!(
                "the bundle has no service `{}`; it has: {}",
                escape_controls(service),
                known
            )
        })?;
        ids.extend(entry.images.iter().cloned());
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use offpack_bundle::{Digest, RebuildService};

    fn digest(seed: &str) -> Digest {
        Digest::of_bytes(seed.as_bytes())
    }

    #[test]
    fn rebuild_metadata_keeps_the_bundle_format() {
        let mut manifest = Manifest::new("0", "shop");
        manifest.rebuild.services.insert(
            "web".into(),
            RebuildService {
                image: vec!["shop-web:latest".into()],
                built: true,
                images: [digest("b"), digest("a")].into(),
                cache_images: vec!["shop-web:offpack-stage-deps".into()],
                ..Default::default()
            },
        );
        let json = serde_json::to_value(&manifest).unwrap();
        let (a, b) = (digest("a"), digest("b"));
        let (first, second) = if a < b { (a, b) } else { (b, a) };
        assert_eq!(
            json["rebuild"].to_string(),
            format!(
                r#"{{"services":{{"web":{{"built":true,"cache_images":["shop-web:offpack-stage-deps"],"image":["shop-web:latest"],"images":["{first}","{second}"]}}}}}}"#
            )
        );
        let read = Manifest::from_json(&serde_json::to_vec(&manifest).unwrap()).unwrap();
        assert_eq!(read.rebuild, manifest.rebuild);
    }

    #[test]
    fn a_service_names_the_images_it_needs() {
        let mut manifest = Manifest::new("0", "shop");
        manifest.rebuild.services.insert(
            "web".into(),
            RebuildService {
                images: [digest("web"), digest("python")].into(),
                ..Default::default()
            },
        );
        let ids = images_for_services(&manifest, &["web".into()]).unwrap();
        assert_eq!(ids, [digest("python"), digest("web")].into());
        let err = images_for_services(&manifest, &["db".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the bundle has no service `db`; it has: web"
        );
    }
}
