//! containerd's content store, snapshotter, differ and image records, for images that
//! travel with an apply. Every blob and snapshot hoist makes is labelled a GC root, so
//! containerd's collector never takes what a generation may still need; hoist removes them
//! itself when no kept generation uses them ([`crate::images`]).

use std::collections::HashMap;

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest, ViewSnapshotRequest,
};
use containerd_client::services::v1::{
    AbortRequest, ApplyRequest, CreateImageRequest, DeleteContentRequest, DeleteImageRequest, Image, InfoRequest,
    ListContentRequest, ReadContentRequest, WriteAction, WriteContentRequest,
};
use containerd_client::tonic::Code;
use containerd_client::types::{Descriptor, Mount};
use tokio_stream::StreamExt;

use crate::containerd::{ClientError, Containerd, req, rpc};

/// The snapshotter hoist unpacks into (overlay on the tmpfs root).
pub const SNAPSHOTTER: &str = "overlayfs";
/// Marks what containerd's collector must leave alone.
const GC_ROOT: &str = "containerd.io/gc.root";

fn root_label() -> HashMap<String, String> {
    HashMap::from([(GC_ROOT.to_string(), "hoist".to_string())])
}

/// containerd's answer to one message of a write: go on (`None`), or the blob is there
/// already (`Some(true)`).
fn answer<T>(reply: Option<Result<T, containerd_client::tonic::Status>>, digest: &str) -> Result<Option<bool>, String> {
    match reply {
        Some(Ok(_)) => Ok(None),
        Some(Err(s)) if s.code() == Code::AlreadyExists => Ok(Some(true)),
        Some(Err(s)) => Err(rpc("content write", digest, s).to_string()),
        None => Err(format!("content write {digest}: stream ended early")),
    }
}

fn closed(digest: &str) -> String {
    format!("content write {digest}: containerd closed the stream")
}

impl Containerd {
    fn content(&self) -> ContentClient<containerd_client::tonic::transport::Channel> {
        ContentClient::new(self.channel.clone())
    }

    fn snapshots(&self) -> SnapshotsClient<containerd_client::tonic::transport::Channel> {
        SnapshotsClient::new(self.channel.clone())
    }

    /// The size of a blob the store holds, or None.
    pub async fn blob_size(&self, digest: &str) -> Result<Option<u64>, ClientError> {
        match self.content().info(req(InfoRequest { digest: digest.to_string() })).await {
            Ok(r) => Ok(r.into_inner().info.map(|i| i.size as u64)),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(rpc("content info", digest, s)),
        }
    }

    /// Writes one blob from `chunks`; containerd checks the size and digest at commit and
    /// keeps nothing when they differ (a write that fails is aborted, so no partial data
    /// stays behind). True when the blob was there already.
    pub async fn write_blob(
        &self,
        digest: &str,
        size: u64,
        chunks: impl tokio_stream::Stream<Item = Result<Vec<u8>, String>> + Unpin,
    ) -> Result<bool, String> {
        let reference = format!("hoist-upload-{digest}");
        let result = self.write_blob_as(&reference, digest, size, chunks).await;
        if result.is_err() {
            let abort = AbortRequest { r#ref: reference };
            let _ = self.content().abort(req(abort)).await;
        }
        result
    }

    async fn write_blob_as(
        &self,
        reference: &str,
        digest: &str,
        size: u64,
        mut chunks: impl tokio_stream::Stream<Item = Result<Vec<u8>, String>> + Unpin,
    ) -> Result<bool, String> {
        let total = i64::try_from(size).map_err(|_| format!("size {size} too large"))?;
        let message = |action: WriteAction, offset: u64, data: Vec<u8>| WriteContentRequest {
            action: action as i32,
            r#ref: reference.to_string(),
            total,
            expected: digest.to_string(),
            offset: offset as i64,
            data,
            labels: if action == WriteAction::Commit { root_label() } else { HashMap::new() },
        };
        // The first message opens the write; containerd answers each message in turn.
        let (tx, rx) = tokio::sync::mpsc::channel::<WriteContentRequest>(4);
        tx.send(message(WriteAction::Stat, 0, Vec::new())).await.map_err(|e| e.to_string())?;
        let mut answers = match self.content().write(req(tokio_stream::wrappers::ReceiverStream::new(rx))).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == Code::AlreadyExists => return Ok(true),
            Err(s) => return Err(rpc("content write", digest, s).to_string()),
        };
        if let Some(existed) = answer(answers.next().await, digest)? {
            return Ok(existed);
        }
        // Start from 0: a write left half done by an earlier attempt is truncated.
        let mut offset: u64 = 0;
        while let Some(chunk) = chunks.next().await {
            let data = chunk?;
            let at = offset;
            offset += data.len() as u64;
            if offset > size {
                return Err(format!("blob {digest}: more than the {size} bytes announced"));
            }
            tx.send(message(WriteAction::Write, at, data)).await.map_err(|_| closed(digest))?;
            if let Some(existed) = answer(answers.next().await, digest)? {
                return Ok(existed);
            }
        }
        if offset != size {
            return Err(format!("blob {digest}: {offset} bytes sent, {size} announced"));
        }
        tx.send(message(WriteAction::Commit, offset, Vec::new())).await.map_err(|_| closed(digest))?;
        Ok(answer(answers.next().await, digest)?.unwrap_or(false))
    }

    /// A whole blob, refused when it is larger than `max` bytes.
    pub async fn read_blob(&self, digest: &str, max: u64) -> Result<Vec<u8>, String> {
        match self.blob_size(digest).await.map_err(|e| e.to_string())? {
            None => return Err(format!("blob {digest} is not on the host")),
            Some(n) if n > max => return Err(format!("blob {digest}: {n} bytes, more than the {max} allowed")),
            Some(_) => {}
        }
        let mut stream = self
            .content()
            .read(req(ReadContentRequest { digest: digest.to_string(), offset: 0, size: 0 }))
            .await
            .map_err(|s| rpc("content read", digest, s).to_string())?
            .into_inner();
        let mut data = Vec::new();
        while let Some(part) = stream.next().await {
            let part = part.map_err(|s| rpc("content read", digest, s).to_string())?;
            data.extend_from_slice(&part.data);
            if data.len() as u64 > max {
                return Err(format!("blob {digest}: more than the {max} bytes allowed"));
            }
        }
        Ok(data)
    }

    /// Every blob hoist wrote (labelled a GC root by hoist): digest and when it was last
    /// written, in seconds since the epoch.
    pub async fn own_blobs(&self) -> Result<Vec<(String, i64)>, ClientError> {
        let filter = format!("labels.\"{GC_ROOT}\"==hoist");
        let mut stream = self
            .content()
            .list(req(ListContentRequest { filters: vec![filter] }))
            .await
            .map_err(|s| rpc("content list", "", s))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(part) = stream.next().await {
            let part = part.map_err(|s| rpc("content list", "", s))?;
            out.extend(part.info.into_iter().map(|i| (i.digest, i.updated_at.map_or(0, |t| t.seconds))));
        }
        Ok(out)
    }

    pub async fn delete_blob(&self, digest: &str) {
        let _ = self.content().delete(req(DeleteContentRequest { digest: digest.to_string() })).await;
    }

    pub async fn snapshot_exists(&self, key: &str) -> Result<bool, ClientError> {
        let request = StatSnapshotRequest { snapshotter: SNAPSHOTTER.into(), key: key.to_string() };
        match self.snapshots().stat(req(request)).await {
            Ok(_) => Ok(true),
            Err(s) if s.code() == Code::NotFound => Ok(false),
            Err(s) => Err(rpc("snapshot stat", key, s)),
        }
    }

    /// Applies one layer on top of `parent` and commits it as `name`; the digest of the
    /// uncompressed layer as the differ read it.
    pub async fn apply_layer(&self, layer: Descriptor, parent: &str, name: &str) -> Result<String, ClientError> {
        let key = format!("hoist-extract-{name}");
        let _ = self.remove_snapshot(&key).await;
        let prepare = PrepareSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: key.clone(),
            parent: parent.to_string(),
            labels: root_label(),
        };
        let mounts = self.snapshots().prepare(req(prepare)).await.map_err(|s| rpc("snapshot prepare", &key, s))?;
        let mounts = mounts.into_inner().mounts;
        let applied = DiffClient::new(self.channel.clone())
            .apply(req(ApplyRequest { diff: Some(layer), mounts, ..Default::default() }))
            .await;
        let applied = match applied {
            Ok(r) => r.into_inner().applied.map(|d| d.digest).unwrap_or_default(),
            Err(s) => {
                let _ = self.remove_snapshot(&key).await;
                return Err(rpc("diff apply", name, s));
            }
        };
        let commit = CommitSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            name: name.to_string(),
            key: key.clone(),
            labels: root_label(),
        };
        if let Err(s) = self.snapshots().commit(req(commit)).await {
            let _ = self.remove_snapshot(&key).await;
            if s.code() != Code::AlreadyExists {
                return Err(rpc("snapshot commit", name, s));
            }
        }
        Ok(applied)
    }

    /// A read-only view of a committed snapshot: the mounts that show it.
    pub async fn view(&self, key: &str, parent: &str) -> Result<Vec<Mount>, ClientError> {
        let _ = self.remove_snapshot(key).await;
        let view = ViewSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: key.to_string(),
            parent: parent.to_string(),
            labels: root_label(),
        };
        let resp = self.snapshots().view(req(view)).await.map_err(|s| rpc("snapshot view", key, s))?;
        Ok(resp.into_inner().mounts)
    }

    pub async fn remove_snapshot(&self, key: &str) -> Result<(), ClientError> {
        let request = RemoveSnapshotRequest { snapshotter: SNAPSHOTTER.into(), key: key.to_string() };
        match self.snapshots().remove(req(request)).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(rpc("snapshot remove", key, s)),
        }
    }

    /// Records the image under `name` (what `ctr -n hoist images ls` lists), replacing an
    /// older record of that name.
    pub async fn tag_image(&self, name: &str, target: Descriptor) -> Result<(), ClientError> {
        let mut images = ImagesClient::new(self.channel.clone());
        let _ = images.delete(req(DeleteImageRequest { name: name.to_string(), sync: false, target: None })).await;
        let image = Image { name: name.to_string(), labels: root_label(), target: Some(target), ..Default::default() };
        images
            .create(req(CreateImageRequest { image: Some(image), source_date_epoch: None }))
            .await
            .map_err(|s| rpc("image create", name, s))?;
        Ok(())
    }

    /// Removes the image record `name`. With `sync`, containerd also runs its garbage
    /// collection before answering, so the blob files and snapshot directories that no
    /// record refers to any more are gone from disk (on deletes alone it collects later).
    pub async fn untag_image(&self, name: &str, sync: bool) {
        let mut images = ImagesClient::new(self.channel.clone());
        let _ = images.delete(req(DeleteImageRequest { name: name.to_string(), sync, target: None })).await;
    }
}
