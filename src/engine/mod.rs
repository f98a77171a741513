//! The Docker Engine, through its API (bollard). Nothing else in offpack talks to the engine.

mod auth;
mod body;
mod build;
mod buildkit_proto;
mod facts;
mod raw;
mod run;

pub use auth::registry_credentials;
pub use body::{ChannelWriter, channel_body};
pub use build::{BuildOutcome, BuildRequest, BuildStep, Builder};
pub use facts::{EngineFacts, RegistryCheck};
pub use run::{Bind, RUN_LABEL, RUN_PID_LABEL, RunOutcome, RunSpec, containers_started};

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;
use bollard::models::ImageInspect;
use bollard::query_parameters::{CreateImageOptions, ImportImageOptions, TagImageOptions};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use offpack_bundle::Digest;
use offpack_ref::ImageRef;

use crate::reporter::Reporter;

/// A connection to one Docker Engine.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    endpoint: String,
}

/// What the engine knows of one image.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub id: Digest,
    pub repo_tags: Vec<String>,
    pub size: u64,
    pub os: String,
    pub architecture: String,
    /// Diff IDs of the layers, in order.
    pub layers: Vec<Digest>,
    /// The labels of the image's config (`docker image inspect -f '{{.Config.Labels}}'`).
    pub labels: BTreeMap<String, String>,
}

impl Engine {
    /// Connects to the engine named by `DOCKER_HOST`, or the default socket, and checks that it answers.
    pub async fn connect() -> Result<Engine> {
        let endpoint = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
        let not_running = |detail: String| {
            anyhow!(
                "cannot reach the Docker Engine at {endpoint}: {detail}\n\
                 Start the engine (e.g. `systemctl start docker`) or point DOCKER_HOST at a running one."
            )
        };
        let docker = Docker::connect_with_defaults().map_err(|e| not_running(e.to_string()))?;
        match tokio::time::timeout(Duration::from_secs(10), docker.ping()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(not_running(e.to_string())),
            Err(_) => return Err(not_running("no answer within 10 s".into())),
        }
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| not_running(format!("API version negotiation failed: {e}")))?;
        Ok(Engine { docker, endpoint })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The engine's image of `reference` (a name or an ID), or `None` if it has none.
    pub async fn image(&self, reference: &str) -> Result<Option<ImageInfo>> {
        match self.docker.inspect_image(reference).await {
            Ok(inspect) => image_info(reference, inspect).map(Some),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("inspecting image {reference}")),
        }
    }

    /// Every image the engine holds (including intermediate ones), with its layers.
    pub async fn images(&self) -> Result<Vec<ImageInfo>> {
        let options = bollard::query_parameters::ListImagesOptions {
            all: true,
            ..Default::default()
        };
        let summaries = self
            .docker
            .list_images(Some(options))
            .await
            .context("listing the engine's images")?;
        let mut images = Vec::with_capacity(summaries.len());
        for summary in summaries {
            // An image removed between the list and the inspect is simply gone.
            if let Some(info) = self.image(&summary.id).await? {
                images.push(info);
            }
        }
        images.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(images)
    }

    /// Pulls `reference` with the engine's own pull, reporting bytes as layers download.
    pub async fn pull(&self, reference: &str, reporter: &dyn Reporter) -> Result<()> {
        let (from_image, tag) = api_name(reference)?;
        let options = CreateImageOptions {
            from_image: Some(from_image),
            tag: Some(tag),
            ..Default::default()
        };
        let credentials = registry_credentials(reference)?;
        let task = reporter.start(&format!("pull {reference}"), None);
        let mut stream = self.docker.create_image(Some(options), None, credentials);
        let mut layer_progress: HashMap<String, (u64, u64)> = HashMap::new();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| pull_error(reference, &e.to_string()))?;
            if let Some(detail) = info.error_detail {
                return Err(pull_error(reference, &detail.message.unwrap_or_default()));
            }
            if let (Some(id), Some(p)) = (info.id, info.progress_detail) {
                let entry = layer_progress.entry(id).or_default();
                if let Some(current) = p.current {
                    entry.0 = current.max(0) as u64;
                }
                if let Some(total) = p.total {
                    entry.1 = total.max(0) as u64;
                }
                let done: u64 = layer_progress.values().map(|(c, _)| c).sum();
                reporter.progress(task, done);
            }
        }
        reporter.finish(task, "pulled");
        Ok(())
    }

    /// The engine's image export (`docker save`) of `names`, as a byte stream.
    pub fn export(
        &self,
        names: &[String],
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + use<> {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        self.docker
            .export_images(&refs)
            .map(|r| r.map_err(std::io::Error::other))
    }

    /// Loads a `docker load` stream; returns what the engine said it loaded.
    pub async fn load<S>(&self, body: S) -> Result<Vec<String>>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        let mut stream = self.docker.import_image_stream(
            ImportImageOptions {
                quiet: true,
                ..Default::default()
            },
            body,
            None,
        );
        let mut loaded = Vec::new();
        while let Some(item) = stream.next().await {
            let info = item.context("the engine's image load failed")?;
            if let Some(detail) = info.error_detail {
                bail!(
                    "the engine refused the image load: {}",
                    detail.message.unwrap_or_default()
                );
            }
            if let Some(line) = info.stream {
                let line = line.trim();
                if !line.is_empty() {
                    loaded.push(line.to_string());
                }
            }
        }
        Ok(loaded)
    }

    /// Whether images `a` and `b` (names or IDs) hold the same image apart from BuildKit's inline
    /// cache metadata: the same layers, creation time and configuration. BuildKit writes the
    /// records of that metadata in an order that varies from build to build when a multi-stage
    /// build has records with equal digests, so a fully cached rebuild can get a new image ID for
    /// the very same image (measured on 20.10; docs/engine-support.md).
    pub async fn same_image(&self, a: &str, b: &str) -> Result<bool> {
        let inspect = |reference: &str| {
            let reference = reference.to_string();
            async move {
                self.docker
                    .inspect_image(&reference)
                    .await
                    .with_context(|| format!("inspecting image {reference}"))
            }
        };
        let (a, b) = (inspect(a).await?, inspect(b).await?);
        let content = |i: &ImageInspect| {
            (
                i.root_fs.as_ref().and_then(|r| r.layers.clone()),
                i.created.clone(),
                serde_json::to_value(&i.config).ok(),
                i.os.clone(),
                i.architecture.clone(),
            )
        };
        Ok(content(&a) == content(&b))
    }

    /// Removes image `id` if no name points to it any more (a build result offpack did not keep);
    /// an image still named or used is left alone.
    pub async fn remove_unnamed(&self, id: &str) -> Result<()> {
        let Some(info) = self.image(id).await? else {
            return Ok(());
        };
        if !info.repo_tags.is_empty() {
            return Ok(());
        }
        let options = bollard::query_parameters::RemoveImageOptions {
            force: false,
            noprune: false,
            ..Default::default()
        };
        // A child image or a container may still use it: then it stays, which is harmless.
        let _ = self.docker.remove_image(id, Some(options), None).await;
        Ok(())
    }

    /// Gives image `id` the name `reference` (`repo:tag`).
    pub async fn tag(&self, id: &str, reference: &str) -> Result<()> {
        let (repo, tag) = api_name(reference)?;
        self.docker
            .tag_image(
                id,
                Some(TagImageOptions {
                    repo: Some(repo),
                    tag: Some(tag),
                }),
            )
            .await
            .with_context(|| format!("tagging {id} as {reference}"))
    }

    /// The gateway address of the default bridge network (`172.17.0.1` on a stock engine): the
    /// host as build containers reach it, where a far-side rebuild serves packages. Engine 20.10
    /// names no gateway in the default bridge's IPAM config; the bridge then has the subnet's first
    /// address, which libnetwork gives it (docs/engine-support.md).
    pub async fn bridge_gateway(&self) -> Result<std::net::Ipv4Addr> {
        let network = self
            .docker
            .inspect_network(
                "bridge",
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .context("inspecting the engine's default bridge network")?;
        let configs = network
            .ipam
            .and_then(|ipam| ipam.config)
            .unwrap_or_default();
        let named = configs
            .iter()
            .filter_map(|c| c.gateway.as_deref())
            .find_map(|g| g.parse().ok());
        let first_of_subnet = || {
            configs
                .iter()
                .filter_map(|c| c.subnet.as_deref())
                .find_map(first_host_of)
        };
        named.or_else(first_of_subnet).ok_or_else(|| {
            anyhow::anyhow!(
                "the engine's default bridge network has no IPv4 subnet or gateway; build \
                 containers cannot reach offpack's package server"
            )
        })
    }

    pub(crate) fn docker(&self) -> &Docker {
        &self.docker
    }
}

/// What the engine's inspect of `reference` says; an ID or a layer that is not a sha256 digest
/// means an engine offpack cannot work with, which is said rather than the image left half known.
fn image_info(reference: &str, inspect: ImageInspect) -> Result<ImageInfo> {
    let digest = |what: &str, value: &str| -> Result<Digest> {
        value.parse().map_err(|_| {
            anyhow!(
                "the engine gave image {reference} the {what} `{value}`, which is not a sha256 digest; \
                 offpack needs an engine that names images and layers by sha256 digests, as the Docker Engine does"
            )
        })
    };
    let id = digest("ID", inspect.id.as_deref().unwrap_or_default())?;
    let layers = inspect
        .root_fs
        .and_then(|r| r.layers)
        .unwrap_or_default()
        .iter()
        .map(|layer| digest("layer", layer))
        .collect::<Result<_>>()?;
    let labels = inspect
        .config
        .and_then(|c| c.labels)
        .unwrap_or_default()
        .into_iter()
        .collect();
    Ok(ImageInfo {
        id,
        repo_tags: inspect.repo_tags.unwrap_or_default(),
        size: inspect.size.unwrap_or_default().max(0) as u64,
        os: inspect.os.unwrap_or_default(),
        architecture: inspect.architecture.unwrap_or_default(),
        layers,
        labels,
    })
}

fn pull_error(reference: &str, detail: &str) -> anyhow::Error {
    anyhow!(
        "cannot pull {reference}: {}\nIs the registry reachable and are you logged in (`docker login`)? \
         On an air-gapped machine, load the image from a bundle instead.",
        detail.trim()
    )
}

/// The repository and the tag (or digest) the API takes for `reference`: `node:18` →
/// (`node`, `18`); `repo:tag@digest` → the digest, which the engine heeds. A name without either
/// gets `latest` from the parse, as the Docker CLI gives it: an API pull without a tag would
/// fetch every tag.
fn api_name(reference: &str) -> Result<(String, String)> {
    let parsed = ImageRef::parse(reference)?;
    let name = parsed.familiar_name();
    let tag_or_digest = parsed
        .digest
        .or(parsed.tag)
        .unwrap_or_else(|| "latest".to_string());
    Ok((name, tag_or_digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_name_handles_ports_and_digests() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let api = |r: &str| api_name(r).unwrap();
        let pair = |repo: &str, tag: &str| (repo.to_string(), tag.to_string());
        assert_eq!(api("node:18"), pair("node", "18"));
        assert_eq!(
            api("localhost:5000/app"),
            pair("localhost:5000/app", "latest")
        );
        assert_eq!(
            api("localhost:5000/app:v1"),
            pair("localhost:5000/app", "v1")
        );
        assert_eq!(api("node"), pair("node", "latest"));
        assert_eq!(api(&format!("node:18@{digest}")), pair("node", &digest));
        assert_eq!(api("shop-web:latest"), pair("shop-web", "latest"));
        let err = api_name("Shop/Web").unwrap_err().to_string();
        assert!(err.contains("Shop/Web"), "{err}");
    }
}

/// The first host address of an IPv4 subnet (`172.17.0.0/16` → `172.17.0.1`).
fn first_host_of(cidr: &str) -> Option<std::net::Ipv4Addr> {
    let (address, bits) = cidr.split_once('/')?;
    let address: std::net::Ipv4Addr = address.parse().ok()?;
    let bits: u32 = bits.parse().ok()?;
    if bits > 30 {
        return None;
    }
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    Some(std::net::Ipv4Addr::from((u32::from(address) & mask) + 1))
}

#[cfg(test)]
mod bridge_tests {
    #[test]
    fn the_gateway_is_the_subnets_first_host() {
        assert_eq!(
            super::first_host_of("172.17.0.0/16"),
            Some("172.17.0.1".parse().unwrap())
        );
        assert_eq!(
            super::first_host_of("10.1.2.0/24"),
            Some("10.1.2.1".parse().unwrap())
        );
        assert_eq!(super::first_host_of("fd00::/64"), None);
        assert_eq!(super::first_host_of("10.0.0.0/32"), None);
    }
}
