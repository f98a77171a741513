//! containerd's API, for `offpack load --containerd`: the content store, images, leases,
//! snapshots and the differ, over containerd's gRPC socket (no `ctr`, no CLI). Every call names
//! the namespace it works in; calls made through [`Containerd::under_lease`] also name a lease,
//! so what they create survives garbage collection until the lease goes.

mod grpc;
pub mod proto;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};

pub use grpc::{CallError, Status};
use grpc::{Channel, frame};
use proto::*;

const CONTENT: &str = "/containerd.services.content.v1.Content";
const IMAGES: &str = "/containerd.services.images.v1.Images";
const LEASES: &str = "/containerd.services.leases.v1.Leases";
const SNAPSHOTS: &str = "/containerd.services.snapshots.v1.Snapshots";
const DIFF: &str = "/containerd.services.diff.v1.Diff";
const VERSION: &str = "/containerd.services.version.v1.Version";

/// `version.v1.VersionResponse`.
#[derive(Clone, PartialEq, prost::Message)]
struct VersionResponse {
    #[prost(string, tag = "1")]
    version: String,
}

/// A connection to one containerd, working in one namespace.
#[derive(Clone)]
pub struct Containerd {
    channel: Channel,
    socket: PathBuf,
    namespace: String,
    version: String,
}

/// What became of a blob sent to the content store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Written,
    /// containerd had it already (another load wrote it meanwhile).
    AlreadyPresent,
    /// Another writer holds the blob's write reference (another load writing the same blob,
    /// most likely): nothing was written, and the same write may be tried again.
    Locked,
}

/// The write reference of blob `digest`: the same in every load, so that two loads writing one
/// blob take turns and the second finds it committed instead of writing it twice.
pub fn write_reference(digest: &str) -> String {
    format!("offpack-load-{digest}")
}

impl Containerd {
    /// Connects to the containerd at `socket` and asks its version, so a socket that is not
    /// containerd's fails here, with what to do.
    pub async fn connect(socket: &Path, namespace: &str) -> Result<Containerd> {
        let unreachable = |e: &dyn std::fmt::Display| {
            anyhow!(
                "cannot reach containerd at {}: {e}; is it running? use --address to name its \
                 socket (default /run/containerd/containerd.sock)",
                socket.display()
            )
        };
        let channel = Channel::connect(socket, namespace)
            .await
            .map_err(|e| unreachable(&e))?;
        let answer: VersionResponse = channel
            .unary(&format!("{VERSION}/Version"), &Empty {})
            .await
            .map_err(|e| unreachable(&e))?;
        Ok(Containerd {
            channel,
            socket: socket.to_path_buf(),
            namespace: namespace.to_string(),
            version: answer.version,
        })
    }

    /// containerd's version, as it reports it (`1.6.20~ds1`).
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The same connection, every call under lease `id` (see [`Containerd::create_lease`]).
    pub fn under_lease(&self, id: &str) -> Containerd {
        Containerd {
            channel: self.channel.with_lease(id),
            ..self.clone()
        }
    }

    /// Calls lookup method `method`; `None` when containerd answers "not found".
    async fn lookup<Q: prost::Message, R: prost::Message + Default>(
        &self,
        method: String,
        request: &Q,
        what: impl FnOnce() -> String,
    ) -> Result<Option<R>> {
        match self.channel.unary::<_, R>(&method, request).await {
            Ok(answer) => Ok(Some(answer)),
            Err(e) if e.code() == Some(Status::NOT_FOUND) => Ok(None),
            Err(e) => Err(self.failed(what(), e)),
        }
    }

    fn failed(&self, what: String, err: CallError) -> anyhow::Error {
        anyhow::Error::new(err).context(format!(
            "containerd at {} (namespace {}): {what}",
            self.socket.display(),
            offpack_bundle::escape_controls(&self.namespace)
        ))
    }

    /// A lease: what calls under it create is kept until it is deleted or `labels`'
    /// `containerd.io/gc.expire` passes.
    pub async fn create_lease(&self, id: &str, labels: HashMap<String, String>) -> Result<()> {
        let request = CreateLeaseRequest {
            id: id.to_string(),
            labels,
        };
        self.channel
            .unary::<_, CreateLeaseResponse>(&format!("{LEASES}/Create"), &request)
            .await
            .map_err(|e| self.failed(format!("creating lease {id}"), e))?;
        Ok(())
    }

    pub async fn delete_lease(&self, id: &str) -> Result<()> {
        let request = DeleteLeaseRequest {
            id: id.to_string(),
            sync: false,
        };
        self.channel
            .unary::<_, Empty>(&format!("{LEASES}/Delete"), &request)
            .await
            .map_err(|e| self.failed(format!("deleting lease {id}"), e))?;
        Ok(())
    }

    /// Adds `resource` to lease `lease`, so that garbage collection keeps it while the lease
    /// lasts. containerd records the reference whether or not the resource exists yet.
    async fn add_to_lease(&self, lease: &str, resource: LeaseResource) -> Result<()> {
        let what = format!(
            "adding {} {} to lease {lease}",
            resource.r#type, resource.id
        );
        let request = AddResourceRequest {
            id: lease.to_string(),
            resource: Some(resource),
        };
        self.channel
            .unary::<_, Empty>(&format!("{LEASES}/AddResource"), &request)
            .await
            .map_err(|e| self.failed(what, e))?;
        Ok(())
    }

    /// Puts blob `digest` under lease `lease`.
    pub async fn lease_content(&self, lease: &str, digest: &str) -> Result<()> {
        let resource = LeaseResource {
            id: digest.to_string(),
            r#type: "content".to_string(),
        };
        self.add_to_lease(lease, resource).await
    }

    /// Puts snapshot `key` of `snapshotter` under lease `lease`.
    pub async fn lease_snapshot(&self, lease: &str, snapshotter: &str, key: &str) -> Result<()> {
        let resource = LeaseResource {
            id: key.to_string(),
            r#type: format!("snapshots/{snapshotter}"),
        };
        self.add_to_lease(lease, resource).await
    }

    /// How many bytes of blob `digest` the writer holding its write reference has written;
    /// `None` when nobody is writing it.
    pub async fn write_progress(&self, digest: &str) -> Result<Option<i64>> {
        let reference = write_reference(digest);
        let request = StatusRequest {
            r#ref: reference.clone(),
        };
        let answer: Option<StatusResponse> = self
            .lookup(format!("{CONTENT}/Status"), &request, || {
                format!("asking how far the write {reference} got")
            })
            .await?;
        Ok(answer.and_then(|a| a.status).map(|s| s.offset))
    }

    /// The content store's record of blob `digest`, if it holds the blob.
    pub async fn content_info(&self, digest: &str) -> Result<Option<ContentInfo>> {
        let request = InfoRequest {
            digest: digest.to_string(),
        };
        let answer: Option<InfoResponse> = self
            .lookup(format!("{CONTENT}/Info"), &request, || {
                format!("looking up blob {digest}")
            })
            .await?;
        Ok(answer.and_then(|a| a.info))
    }

    /// Sets `labels` on blob `digest`, leaving its other labels as they are.
    pub async fn set_content_labels(
        &self,
        digest: &str,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        let request = UpdateContentRequest {
            info: Some(ContentInfo {
                digest: digest.to_string(),
                size: 0,
                labels,
            }),
            update_mask: Some(FieldMask { paths }),
        };
        self.channel
            .unary::<_, UpdateContentResponse>(&format!("{CONTENT}/Update"), &request)
            .await
            .map_err(|e| self.failed(format!("labelling blob {digest}"), e))?;
        Ok(())
    }

    /// Writes blob `digest` of `size` bytes from `data` into the content store, committed with
    /// `labels`. containerd checks size and digest at the commit; `data` failing (a bundle
    /// blob that does not match its digest) aborts the write and is the error returned.
    pub async fn write_content(
        &self,
        digest: &str,
        size: u64,
        labels: HashMap<String, String>,
        data: impl Stream<Item = io::Result<Bytes>> + Send + 'static,
    ) -> Result<Written> {
        let reference = write_reference(digest);
        let total = size as i64;
        let mut offset = 0i64;
        let mut first = true;
        let expected = digest.to_string();
        let writes = {
            let reference = reference.clone();
            let expected = expected.clone();
            data.map(move |chunk| {
                let chunk = chunk?;
                let request = WriteContentRequest {
                    action: WRITE_ACTION_WRITE,
                    r#ref: reference.clone(),
                    total,
                    // The first message names the digest, so containerd answers "already
                    // exists" at once when it holds the blob.
                    expected: if std::mem::take(&mut first) {
                        expected.clone()
                    } else {
                        String::new()
                    },
                    offset,
                    data: chunk.clone(),
                    labels: HashMap::new(),
                };
                offset += chunk.len() as i64;
                Ok(frame(&request))
            })
        };
        let commit = WriteContentRequest {
            action: WRITE_ACTION_COMMIT,
            r#ref: reference,
            total,
            expected,
            // An offset of 0 would tell containerd to start the blob over.
            offset: total,
            data: Bytes::new(),
            labels,
        };
        let requests = writes.chain(stream::once(async move { Ok(frame(&commit)) }));
        let mut committed = false;
        let outcome = self
            .channel
            .streaming::<WriteContentResponse>(&format!("{CONTENT}/Write"), requests, |answer| {
                committed |= answer.action == WRITE_ACTION_COMMIT;
                Ok(())
            })
            .await;
        match outcome {
            Ok(()) if committed => Ok(Written::Written),
            Ok(()) => Err(anyhow!(
                "containerd ended the write of blob {digest} without committing it"
            )),
            Err(e) if e.code() == Some(Status::ALREADY_EXISTS) => Ok(Written::AlreadyPresent),
            // containerd locks a write reference for one writer at a time and answers the others
            // "unavailable" at once, before taking any data.
            Err(e) if e.code() == Some(Status::UNAVAILABLE) => Ok(Written::Locked),
            Err(e) => Err(self.failed(format!("writing blob {digest}"), e)),
        }
    }

    /// The snapshot `key` of `snapshotter`, if there is one.
    pub async fn stat_snapshot(
        &self,
        snapshotter: &str,
        key: &str,
    ) -> Result<Option<SnapshotInfo>> {
        let request = SnapshotKeyRequest {
            snapshotter: snapshotter.to_string(),
            key: key.to_string(),
        };
        let answer: Option<StatSnapshotResponse> = self
            .lookup(format!("{SNAPSHOTS}/Stat"), &request, || {
                format!("looking up snapshot {key} in snapshotter {snapshotter}")
            })
            .await?;
        Ok(answer.and_then(|a| a.info))
    }

    /// An active snapshot `key` on `parent` (empty: none); how to mount it.
    pub async fn prepare_snapshot(
        &self,
        snapshotter: &str,
        key: &str,
        parent: &str,
    ) -> Result<Vec<Mount>> {
        let request = PrepareSnapshotRequest {
            snapshotter: snapshotter.to_string(),
            key: key.to_string(),
            parent: parent.to_string(),
            labels: HashMap::new(),
        };
        let answer: PrepareSnapshotResponse = self
            .channel
            .unary(&format!("{SNAPSHOTS}/Prepare"), &request)
            .await
            .map_err(|e| {
                self.failed(
                    format!("preparing a snapshot on {parent:?} in snapshotter {snapshotter}"),
                    e,
                )
            })?;
        Ok(answer.mounts)
    }

    /// Commits active snapshot `key` as `name`; false when a snapshot `name` exists already
    /// (another load committed the same layers meanwhile).
    pub async fn commit_snapshot(&self, snapshotter: &str, name: &str, key: &str) -> Result<bool> {
        let request = CommitSnapshotRequest {
            snapshotter: snapshotter.to_string(),
            name: name.to_string(),
            key: key.to_string(),
            labels: HashMap::new(),
        };
        match self
            .channel
            .unary::<_, Empty>(&format!("{SNAPSHOTS}/Commit"), &request)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some(Status::ALREADY_EXISTS) => Ok(false),
            Err(e) => Err(self.failed(
                format!("committing snapshot {name} in snapshotter {snapshotter}"),
                e,
            )),
        }
    }

    pub async fn remove_snapshot(&self, snapshotter: &str, key: &str) -> Result<()> {
        let request = SnapshotKeyRequest {
            snapshotter: snapshotter.to_string(),
            key: key.to_string(),
        };
        self.channel
            .unary::<_, Empty>(&format!("{SNAPSHOTS}/Remove"), &request)
            .await
            .map_err(|e| self.failed(format!("removing snapshot {key}"), e))?;
        Ok(())
    }

    /// Applies layer `layer` (a blob of the content store) onto `mounts`; the descriptor of
    /// what was applied, whose digest is the layer's diff ID.
    pub async fn apply_layer(&self, layer: &Descriptor, mounts: Vec<Mount>) -> Result<Descriptor> {
        let request = ApplyRequest {
            diff: Some(layer.clone()),
            mounts,
        };
        let answer: ApplyResponse = self
            .channel
            .unary(&format!("{DIFF}/Apply"), &request)
            .await
            .map_err(|e| self.failed(format!("unpacking layer {}", layer.digest), e))?;
        answer.applied.with_context(|| {
            format!(
                "containerd unpacked layer {} but named no result",
                layer.digest
            )
        })
    }

    /// Image `name`, if containerd has one by that name.
    pub async fn image(&self, name: &str) -> Result<Option<Image>> {
        let request = GetImageRequest {
            name: name.to_string(),
        };
        let answer: Option<GetImageResponse> = self
            .lookup(format!("{IMAGES}/Get"), &request, || {
                format!("looking up image {name}")
            })
            .await?;
        Ok(answer.and_then(|a| a.image))
    }

    /// Names `target` `name`: creates the image, or points the existing one at `target`.
    pub async fn put_image(&self, name: &str, target: Descriptor) -> Result<()> {
        let image = Image {
            name: name.to_string(),
            labels: HashMap::new(),
            target: Some(target),
        };
        let create = CreateImageRequest {
            image: Some(image.clone()),
        };
        match self
            .channel
            .unary::<_, ImageResponse>(&format!("{IMAGES}/Create"), &create)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.code() == Some(Status::ALREADY_EXISTS) => {}
            Err(e) => return Err(self.failed(format!("creating image {name}"), e)),
        }
        let update = UpdateImageRequest {
            image: Some(image),
            update_mask: Some(FieldMask {
                paths: vec!["target".into()],
            }),
        };
        self.channel
            .unary::<_, ImageResponse>(&format!("{IMAGES}/Update"), &update)
            .await
            .map_err(|e| self.failed(format!("updating image {name}"), e))?;
        Ok(())
    }
}
