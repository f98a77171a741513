//! `bundle`'s decisions: which images to pull (the pull policy), which services to build, which
//! stage cache images to keep, what the bundle records per image and per service, and by which
//! name the engine exports each image.
//!
//! They only ask the store; [`apply`] pulls and builds and [`export`] exports as they say.

pub mod apply;
pub mod export;
pub mod package_only;
pub mod packages;
pub mod proof;
pub mod target;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use offpack_bundle::{Delta, Digest, Manifest, Rebuild, RebuildService};

use super::ImageStore;
use crate::engine::ImageInfo;
use crate::fetch::export::ExportedImage;
use crate::load::chain;
use crate::load::inventory::Inventory;
use crate::ops::builder::BuilderChoice;
use crate::ops::pull_policy::PullPolicy;
use crate::project::ProjectOptions;

/// What `offpack bundle` is asked to do (what `cli::BundleArgs` converts into).
#[derive(Debug, Clone)]
pub struct BundleRequest {
    pub project: ProjectOptions,
    /// The bundle file to write (`-o`).
    pub output: PathBuf,
    /// Replace a file at the target that is not an earlier bundle.
    pub force: bool,
    pub pull: PullPolicy,
    pub build: bool,
    pub no_build: bool,
    pub platforms: Vec<String>,
    /// The far side's inventory (`--have`): its layers are left out.
    pub have: Option<PathBuf>,
    /// The secret key to sign with (`--sign`).
    pub sign: Option<PathBuf>,
    pub split: Option<u64>,
    pub level: i32,
    /// `--builder`: the builder the built services are built with (`auto`: BuildKit when the
    /// engine has it).
    pub builder: BuilderChoice,
    /// `--no-proof`: write the bundle even when the proof fails, i.e. when rebuilding a built
    /// service the way the far side will would run a step instead of taking it from cache, or
    /// would need what is not there offline. The failures are still reported.
    pub no_proof: bool,
    /// `--packages`: requirements and lock files whose packages the bundle carries too, for
    /// changes the far side plans to make.
    pub packages: Vec<PathBuf>,
    /// `--from-registry`: the images services run come from their registries, in their
    /// registry form (format 1.4), reached this way.
    pub from_registry: Option<crate::fetch::registry::RegistryAccess>,
}

/// What to do about one image the plan names.
#[derive(Debug, PartialEq, Eq)]
pub enum PullDecision {
    /// The engine has it (under the reference or an alias): this image ID.
    Present(Digest),
    /// Pull the reference.
    Pull,
}

/// Applies the pull policy to `reference` and its `aliases`.
pub async fn decide_pull(
    store: &impl ImageStore,
    reference: &str,
    aliases: &BTreeSet<String>,
    policy: PullPolicy,
) -> Result<PullDecision> {
    if policy == PullPolicy::Always {
        return Ok(PullDecision::Pull);
    }
    for name in std::iter::once(reference).chain(aliases.iter().map(String::as_str)) {
        if let Some(info) = store.image(name).await? {
            return Ok(PullDecision::Present(info.id));
        }
    }
    if policy == PullPolicy::Never {
        bail!("image {reference} is not in the engine and --pull never forbids pulling it");
    }
    Ok(PullDecision::Pull)
}

/// What to do about a service the project builds.
#[derive(Debug, PartialEq, Eq)]
pub enum BuildDecision {
    Build,
    /// Bundle the image the engine has under the service's first tag: this ID.
    UseExisting(Digest),
    /// `--no-build` and the engine lacks the image: not bundled (the far side must build it).
    LeaveOut,
}

/// `--build` builds every service, `--no-build` none; otherwise only those the engine lacks.
pub fn decide_build(existing: Option<&ImageInfo>, build: bool, no_build: bool) -> BuildDecision {
    match existing {
        _ if build => BuildDecision::Build,
        Some(existing) => BuildDecision::UseExisting(existing.id.clone()),
        None if no_build => BuildDecision::LeaveOut,
        None => BuildDecision::Build,
    }
}

/// What `bundle` says of a service [`BuildDecision::LeaveOut`] leaves out.
pub fn left_out_warning(service: &str, image: &str) -> String {
    format!(
        "service {service}: image {image} is not in the engine and --no-build was given; it is not \
         bundled, so the far side must build it"
    )
}

/// What to do about the cache image of a named stage of a service's build. A stage image is
/// rebuilt with its final image, so the two always match.
pub fn decide_stage(
    existing: Option<&ImageInfo>,
    service_built_now: bool,
    no_build: bool,
) -> BuildDecision {
    match existing {
        Some(existing) if !service_built_now => BuildDecision::UseExisting(existing.id.clone()),
        None if no_build => BuildDecision::LeaveOut,
        _ => BuildDecision::Build,
    }
}

/// What the bundle will hold: every image by ID with the names it records for it, and the
/// per-service rebuild metadata, filled in as images are found, pulled and built.
#[derive(Debug, Default)]
pub struct BundleContents {
    /// Image ID → every name the bundle records for it.
    pub refs: BTreeMap<Digest, BTreeSet<String>>,
    pub meta: Rebuild,
    /// Service → the ID of the image offpack built for it.
    pub built: BTreeMap<String, Digest>,
    /// `--from-registry`: images to take from their registries, with the services that run them.
    pub from_registry: Vec<(crate::fetch::registry::Wanted, BTreeSet<String>)>,
}

impl BundleContents {
    /// An image the plan names (`reference` and its `aliases`), used by `used_by`.
    pub fn add_image<'a>(
        &mut self,
        id: &Digest,
        reference: &str,
        aliases: &BTreeSet<String>,
        used_by: impl IntoIterator<Item = &'a String>,
    ) {
        let names = self.refs.entry(id.clone()).or_default();
        names.insert(reference.to_string());
        names.extend(aliases.iter().cloned());
        for service in used_by {
            self.service(service).images.insert(id.clone());
        }
    }

    /// A service that runs an image it does not build.
    pub fn set_service_image(&mut self, service: &str, image: &str) {
        self.service(service).image = vec![image.to_string()];
    }

    /// The image built (or found) for `service`, under its `tags`.
    pub fn add_built(&mut self, service: &str, tags: &[String], id: &Digest) {
        let entry = self.service(service);
        entry.image = tags.to_vec();
        entry.built = true;
        entry.images.insert(id.clone());
        self.built.insert(service.to_string(), id.clone());
        self.refs
            .entry(id.clone())
            .or_default()
            .extend(tags.iter().cloned());
    }

    /// The builder `service` was built with and its build inputs digest, for `rebuild --changed`.
    pub fn set_inputs(&mut self, service: &str, builder: crate::engine::Builder, inputs: &Digest) {
        let entry = self.service(service);
        entry.builder = Some(builder);
        entry.inputs = Some(inputs.clone());
    }

    /// The cache image `tag` (familiar form `name`) of a named stage of `service`'s build.
    pub fn add_stage(&mut self, service: &str, tag: &str, name: String, id: &Digest) {
        let entry = self.service(service);
        entry.cache_images.push(tag.to_string());
        entry.images.insert(id.clone());
        self.refs.entry(id.clone()).or_default().insert(name);
    }

    /// `service` runs the image `built_by` builds: it needs that image too.
    pub fn add_runs_built(&mut self, service: &str, built_by: &str) {
        if let Some(id) = self.built.get(built_by).cloned() {
            self.service(service).images.insert(id);
        }
    }

    /// Fills `manifest` with the images the engine exported, each with every name recorded for
    /// it and the platform the engine gives it (`infos`), the platforms and the rebuild
    /// metadata; an error when the export lacks an image or holds one offpack did not ask for.
    pub fn fill_manifest(
        &self,
        manifest: &mut Manifest,
        exported: &[ExportedImage],
        infos: &BTreeMap<Digest, ImageInfo>,
    ) -> Result<()> {
        let mut platforms = BTreeSet::new();
        for image in exported {
            let id = &image.config.0;
            let not_asked =
                || anyhow!("the engine exported image {id}, which offpack did not ask for");
            let names = self.refs.get(id).ok_or_else(not_asked)?;
            let info = infos.get(id).ok_or_else(not_asked)?;
            let platform = format!("{}/{}", info.os, info.architecture);
            platforms.insert(platform.clone());
            manifest
                .images
                .push(image.to_bundle_image(names.iter().cloned().collect(), platform));
        }
        for id in self.refs.keys() {
            if !manifest.images.iter().any(|i| &i.id == id) {
                bail!(
                    "the engine's export did not contain image {id}; the bundle would be incomplete"
                );
            }
        }
        manifest.images.sort_by(|a, b| a.refs.cmp(&b.refs));
        manifest.platforms = platforms.into_iter().collect();
        manifest.rebuild = self.meta.clone();
        Ok(())
    }

    fn service(&mut self, service: &str) -> &mut RebuildService {
        self.meta.services.entry(service.to_string()).or_default()
    }
}

/// The name to export each image by, and what the engine says of it (platform, layers), for
/// the manifest and for `--have`.
#[derive(Debug, Default)]
pub struct ExportPlan {
    pub names: Vec<String>,
    pub infos: BTreeMap<Digest, ImageInfo>,
}

/// Exports by a name the engine knows for each image, so its tags come along; by ID when that
/// name moved to another image (the recorded names are kept in the manifest either way).
pub async fn plan_export(
    store: &impl ImageStore,
    refs: &BTreeMap<Digest, BTreeSet<String>>,
) -> Result<ExportPlan> {
    let mut plan = ExportPlan::default();
    for (id, names) in refs {
        let name = names
            .iter()
            .find(|n| !n.contains('@'))
            .cloned()
            .unwrap_or_else(|| id.to_string());
        let info = match store.image(&name).await? {
            Some(info) if info.id == *id => {
                plan.names.push(name);
                info
            }
            _ => {
                plan.names.push(id.to_string());
                store.image(&id.to_string()).await?.ok_or_else(|| {
                    anyhow!("image {id} disappeared from the engine while bundling")
                })?
            }
        };
        plan.infos.insert(id.clone(), info);
    }
    Ok(plan)
}

/// What a delta bundle made against the inventory `have` records: the layers it leaves out.
pub fn delta_against(have: &Path, leave_out: &HashSet<Digest>) -> Delta {
    let mut absent: Vec<Digest> = leave_out.iter().cloned().collect();
    absent.sort();
    Delta {
        base: format!("the engine inventoried in {}", have.display()),
        absent_layers: absent,
    }
}

/// Layers of the images to bundle that the far side's engine holds on the same chain, per its
/// inventory (`offpack inventory > have.json` there).
pub fn layers_the_far_side_has<'a>(
    have: &Path,
    inventory: &Inventory,
    images: impl Iterator<Item = &'a ImageInfo>,
) -> Result<HashSet<Digest>> {
    if !inventory.supports_delta() {
        bail!(
            "{}: the far side's engine uses the containerd image store, which does not skip the layers \
             it holds when loading; bundle without --have",
            have.display()
        );
    }
    let present = inventory.chains();
    let lists: Vec<&[Digest]> = images.map(|i| i.layers.as_slice()).collect();
    Ok(chain::layers_to_omit(&lists, &present))
}

/// The secret key `--sign` names (read before any slow work, so a wrong key fails at once).
pub fn signing_key(request: &BundleRequest) -> Result<Option<offpack_bundle::SigningKey>> {
    let Some(key_path) = &request.sign else {
        return Ok(None);
    };
    let text = offpack_fs::read_to_string(key_path, offpack_fs::KEY)?;
    let key = offpack_bundle::SigningKey::from_text(&text).with_context(|| {
        format!(
            "{} is not a secret key from `offpack keygen`",
            key_path.display()
        )
    })?;
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::fake::{FakeStore, image_digest as id};

    fn run<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn pull_policy_missing_pulls_only_what_the_engine_lacks() {
        let store = FakeStore::default().with("redis", &["r1"], &["docker.io/library/redis:7"]);
        let aliases = names(&["docker.io/library/redis:7"]);
        assert_eq!(
            run(decide_pull(
                &store,
                "redis:7",
                &aliases,
                PullPolicy::Missing
            ))
            .unwrap(),
            PullDecision::Present(id("redis")),
            "found under an alias"
        );
        assert_eq!(
            run(decide_pull(
                &store,
                "node:18",
                &names(&[]),
                PullPolicy::Missing
            ))
            .unwrap(),
            PullDecision::Pull
        );
    }

    #[test]
    fn pull_policy_always_pulls_even_what_the_engine_has() {
        let store = FakeStore::default().with("redis", &["r1"], &["redis:7"]);
        assert_eq!(
            run(decide_pull(
                &store,
                "redis:7",
                &names(&[]),
                PullPolicy::Always
            ))
            .unwrap(),
            PullDecision::Pull
        );
    }

    #[test]
    fn pull_policy_never_refuses_a_missing_image() {
        let store = FakeStore::default().with("redis", &["r1"], &["redis:7"]);
        assert_eq!(
            run(decide_pull(
                &store,
                "redis:7",
                &names(&[]),
                PullPolicy::Never
            ))
            .unwrap(),
            PullDecision::Present(id("redis"))
        );
        let err = run(decide_pull(
            &store,
            "node:18",
            &names(&[]),
            PullPolicy::Never,
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "image node:18 is not in the engine and --pull never forbids pulling it"
        );
    }

    #[test]
    fn build_flags_decide_which_services_are_built() {
        let store = FakeStore::default().with("web", &["w1"], &["shop-web:latest"]);
        let existing = run(store.image("shop-web:latest")).unwrap();
        let existing = existing.as_ref();
        assert_eq!(
            decide_build(existing, false, false),
            BuildDecision::UseExisting(id("web"))
        );
        assert_eq!(decide_build(existing, true, false), BuildDecision::Build);
        assert_eq!(
            decide_build(existing, false, true),
            BuildDecision::UseExisting(id("web"))
        );
        assert_eq!(decide_build(None, false, false), BuildDecision::Build);
        assert_eq!(decide_build(None, false, true), BuildDecision::LeaveOut);

        assert_eq!(
            decide_stage(existing, false, false),
            BuildDecision::UseExisting(id("web"))
        );
        assert_eq!(decide_stage(existing, true, false), BuildDecision::Build);
        assert_eq!(decide_stage(None, false, true), BuildDecision::LeaveOut);
        assert_eq!(decide_stage(None, false, false), BuildDecision::Build);
    }

    #[test]
    fn no_build_with_a_missing_image_leaves_the_service_out() {
        let mut contents = BundleContents::default();
        contents.add_image(
            &id("redis"),
            "redis:7",
            &names(&[]),
            ["cache".to_string()].iter(),
        );
        // What the command does with LeaveOut: it warns and records nothing for the service.
        assert_eq!(decide_build(None, false, true), BuildDecision::LeaveOut);
        assert_eq!(
            left_out_warning("web", "shop-web:latest"),
            "service web: image shop-web:latest is not in the engine and --no-build was given; \
             it is not bundled, so the far side must build it"
        );
        contents.add_runs_built("worker", "web");
        assert_eq!(contents.refs.keys().collect::<Vec<_>>(), [&id("redis")]);
        assert!(!contents.meta.services.contains_key("web"));
        assert!(!contents.meta.services.contains_key("worker"));
    }

    #[test]
    fn contents_record_names_and_rebuild_metadata() {
        let mut contents = BundleContents::default();
        contents.add_image(
            &id("python"),
            "python:3.11-slim",
            &names(&["docker.io/library/python:3.11-slim"]),
            ["web".to_string()].iter(),
        );
        contents.set_service_image("cache", "redis:7");
        contents.add_image(
            &id("redis"),
            "redis:7",
            &names(&[]),
            ["cache".to_string()].iter(),
        );
        let tags = vec!["shop-web:latest".to_string()];
        contents.add_built("web", &tags, &id("web"));
        contents.add_stage(
            "web",
            "shop-web:offpack-stage-deps",
            "shop-web:offpack-stage-deps".into(),
            &id("deps"),
        );
        contents.add_runs_built("worker", "web");

        let web = &contents.meta.services["web"];
        assert!(web.built);
        assert_eq!(web.image, tags);
        assert_eq!(web.cache_images, ["shop-web:offpack-stage-deps"]);
        let ids =
            |seeds: &[&str]| -> BTreeSet<Digest> { seeds.iter().map(|seed| id(seed)).collect() };
        assert_eq!(web.images, ids(&["python", "web", "deps"]));
        assert_eq!(contents.meta.services["worker"].images, ids(&["web"]));
        assert_eq!(contents.meta.services["cache"].image, ["redis:7"]);
        assert!(!contents.meta.services["cache"].built);
        assert_eq!(
            contents.refs[&id("python")],
            names(&["python:3.11-slim", "docker.io/library/python:3.11-slim"])
        );
        assert_eq!(contents.refs.len(), 4);
    }

    fn exported(seed: &str, layers: &[&str]) -> ExportedImage {
        let digest = |text: String| text.parse::<Digest>().unwrap();
        ExportedImage {
            config: (id(seed), 10),
            layers: layers
                .iter()
                .map(|l| (digest(crate::ops::fake::layer(l)), 100))
                .collect(),
            repo_tags: Vec::new(),
        }
    }

    #[test]
    fn the_manifest_holds_exactly_the_images_asked_for() {
        let store = FakeStore::default()
            .with("redis", &["r1"], &["redis:7"])
            .with("web", &["r1", "w1"], &["shop-web:latest"]);
        let mut contents = BundleContents::default();
        contents.add_image(
            &id("redis"),
            "redis:7",
            &names(&[]),
            ["cache".to_string()].iter(),
        );
        contents.add_built("web", &["shop-web:latest".to_string()], &id("web"));
        let infos = run(plan_export(&store, &contents.refs)).unwrap().infos;

        let mut manifest = Manifest::new("0", "shop");
        let export = [exported("web", &["r1", "w1"]), exported("redis", &["r1"])];
        contents
            .fill_manifest(&mut manifest, &export, &infos)
            .unwrap();
        let refs: Vec<_> = manifest.images.iter().map(|i| i.refs.clone()).collect();
        assert_eq!(
            refs,
            [
                vec!["redis:7".to_string()],
                vec!["shop-web:latest".to_string()]
            ]
        );
        assert_eq!(manifest.platforms, ["linux/amd64"]);
        assert_eq!(manifest.rebuild, contents.meta);

        let mut manifest = Manifest::new("0", "shop");
        let err = contents
            .fill_manifest(&mut manifest, &export[..1], &infos)
            .unwrap_err();
        assert!(
            err.to_string().contains("the bundle would be incomplete"),
            "{err}"
        );
        let mut manifest = Manifest::new("0", "shop");
        let extra = [
            exported("web", &["w1"]),
            exported("redis", &["r1"]),
            exported("other", &[]),
        ];
        let err = contents
            .fill_manifest(&mut manifest, &extra, &infos)
            .unwrap_err();
        assert!(
            err.to_string().contains("which offpack did not ask for"),
            "{err}"
        );
    }

    #[test]
    fn a_delta_records_the_layers_left_out_in_order() {
        let (a, b) = (Digest::of_bytes(b"a"), Digest::of_bytes(b"b"));
        let delta = delta_against(Path::new("have.json"), &[b.clone(), a.clone()].into());
        assert_eq!(delta.base, "the engine inventoried in have.json");
        let mut sorted = vec![a, b];
        sorted.sort();
        assert_eq!(delta.absent_layers, sorted);
    }

    #[test]
    fn an_image_is_exported_by_tag_unless_the_tag_moved() {
        let store = FakeStore::default()
            .with("redis", &["r1"], &["redis:7"])
            .with("old-web", &["w1"], &[])
            .with("new-web", &["w2"], &["shop-web:latest"]);
        let refs: BTreeMap<Digest, BTreeSet<String>> = [
            (id("redis"), names(&["redis@sha256:ab", "redis:7"])),
            (id("old-web"), names(&["shop-web:latest"])),
        ]
        .into();
        let plan = run(plan_export(&store, &refs)).unwrap();
        let mut expected = vec!["redis:7".to_string(), id("old-web").to_string()];
        // `names` follows the IDs' order.
        if id("old-web") < id("redis") {
            expected.reverse();
        }
        assert_eq!(plan.names, expected);
        assert_eq!(plan.infos[&id("old-web")].id, id("old-web"));

        let gone: BTreeMap<Digest, BTreeSet<String>> = [(id("gone"), names(&["gone:1"]))].into();
        let err = run(plan_export(&store, &gone)).unwrap_err();
        assert!(
            err.to_string()
                .contains("disappeared from the engine while bundling"),
            "{err}"
        );
    }
}
