//! Sending images to a host that lacks them, before `hoist apply` applies: the host is
//! asked which blobs of the config's images it does not hold (`MissingBlobs`), and each of
//! those is streamed to it (`UploadBlob`) in chunks of at most [`CHUNK`] bytes, read from
//! its file as it goes, so a big layer is never held in memory. The host checks every blob
//! against its digest and size and keeps only what matches; a refusal aborts the apply
//! before anything changes.

use std::collections::HashSet;
use std::io::{self, Read, Write};

use anyhow::{Context, bail};
use hoist_api::pb;
use hoist_api::pb::control_client::ControlClient;
use hoist_images::oci::{Blob, BlobData, Transfer};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::conn::status_err;

/// Data per `BlobChunk`, well under the API's 4 MiB message cap.
pub const CHUNK: usize = 1 << 20;
const _: () = assert!(CHUNK * 2 < hoist_api::MAX_MESSAGE, "a chunk and its header fit a message with room");

/// What travelled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub blobs: usize,
    pub bytes: u64,
    /// Every blob of the images the host did not hold, sent or already there.
    pub image_bytes: u64,
}

impl Sent {
    /// The first line of `hoist apply --json`.
    pub fn json(&self) -> String {
        format!(r#"{{"sent_bytes":{},"image_bytes":{},"blobs_sent":{}}}"#, self.bytes, self.image_bytes, self.blobs)
    }

    /// The line that ends the upload on stderr.
    pub fn summary(&self) -> String {
        if self.image_bytes == 0 {
            return "images: the host holds them all already".to_string();
        }
        let blobs = if self.blobs == 1 { "blob" } else { "blobs" };
        let mut line = format!("sent {} {blobs}, {} of {}", self.blobs, size(self.bytes), size(self.image_bytes));
        if self.bytes < self.image_bytes {
            line.push_str(" (the host already had the rest)");
        }
        line
    }
}

/// "512 B", "12.3 kB", "12.3 MB" (powers of ten).
pub fn size(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", bytes as f64 / 1e3),
        _ => format!("{:.1} MB", bytes as f64 / 1e6),
    }
}

/// The blobs to upload for the digests the host says it lacks, each once, and the total
/// size of the images that travel (every image the host does not hold, `held` being those
/// it does).
fn plan<'a>(transfers: &'a [Transfer], missing: &[String], held: &[String]) -> anyhow::Result<(Vec<&'a Blob>, u64)> {
    let missing: HashSet<&str> = missing.iter().map(String::as_str).collect();
    let held: HashSet<&str> = held.iter().map(String::as_str).collect();
    let mut uploads = Vec::new();
    let mut counted = HashSet::new();
    let mut image_bytes = 0;
    for t in transfers {
        if held.contains(t.image.as_str()) {
            continue;
        }
        for b in &t.blobs {
            if counted.insert(b.digest.as_str()) {
                image_bytes += b.size;
                if missing.contains(b.digest.as_str()) {
                    uploads.push(b);
                }
            }
        }
    }
    if let Some(unknown) = missing.iter().find(|d| !counted.contains(*d)) {
        bail!("the host asked for blob {unknown}, which is in none of the images");
    }
    Ok((uploads, image_bytes))
}

/// Asks the host what it lacks of `transfers` and sends it, with progress on `log`.
pub async fn send_images(
    client: &mut ControlClient<Channel>,
    transfers: &[Transfer],
    log: &mut impl Write,
) -> anyhow::Result<Sent> {
    if transfers.is_empty() {
        return Ok(Sent::default());
    }
    let mut images = Vec::new();
    let mut seen = HashSet::new();
    for t in transfers.iter().filter(|t| seen.insert(t.image.as_str())) {
        images
            .push(pb::ImageBlobs { image: t.image.clone(), blobs: t.blobs.iter().map(|b| b.digest.clone()).collect() });
    }
    let missing = client
        .missing_blobs(pb::MissingBlobsRequest { images })
        .await
        .map_err(status_err)
        .context("asking the host which image blobs it lacks")?
        .into_inner();
    let (uploads, image_bytes) = plan(transfers, &missing.missing, &missing.held)?;
    let mut sent = Sent { image_bytes, ..Sent::default() };
    for blob in uploads {
        write!(log, "sending {} {} ({})... ", blob.kind, crate::apply::short(&blob.digest), size(blob.size))?;
        log.flush()?;
        match upload(client, blob).await {
            Ok(_) => writeln!(log, "done")?,
            Err(e) => {
                writeln!(log, "failed")?;
                return Err(e);
            }
        }
        sent.blobs += 1;
        sent.bytes += blob.size;
    }
    writeln!(log, "{}", sent.summary())?;
    Ok(sent)
}

/// One `UploadBlob` call. The chunks are read on a blocking thread and handed over a small
/// channel, so at most a few chunks are in memory at once.
async fn upload(client: &mut ControlClient<Channel>, blob: &Blob) -> anyhow::Result<pb::UploadBlobReply> {
    let context = || format!("sending blob {}", blob.digest);
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let owned = blob.clone();
    let reader = tokio::task::spawn_blocking(move || -> io::Result<()> {
        for chunk in Chunks::new(&owned, owned.data.open()?) {
            if tx.blocking_send(chunk?).is_err() {
                // The call ended early; its status says why.
                return Ok(());
            }
        }
        Ok(())
    });
    let reply = client.upload_blob(ReceiverStream::new(rx)).await;
    // A local read error cut the stream short: it, not the host's complaint about a short
    // blob, is the cause.
    if let Err(e) = reader.await.context("the blob reader panicked")? {
        return Err(anyhow::Error::new(e).context(format!("reading {}", source(&blob.data)))).with_context(context);
    }
    match reply {
        Ok(reply) => Ok(reply.into_inner()),
        Err(status) if status.message().is_empty() => Err(status_err(status)).with_context(context),
        Err(status) => Err(anyhow::anyhow!("{}", status.message())).with_context(context),
    }
}

fn source(data: &BlobData) -> String {
    match data {
        BlobData::File { path, offset: 0, .. } => path.display().to_string(),
        BlobData::File { path, offset, .. } => format!("{} at offset {offset}", path.display()),
        BlobData::Memory(_) => "memory".to_string(),
    }
}

/// The messages of one upload: the first names the blob and carries the first data, the
/// rest carry at most [`CHUNK`] bytes each. An empty blob is one message with the header.
/// A reader that ends before `size` bytes (or goes past) is an error.
struct Chunks<R> {
    header: Option<(String, String)>,
    reader: R,
    size: u64,
    read: u64,
    max: usize,
    done: bool,
}

impl<R: Read> Chunks<R> {
    fn new(blob: &Blob, reader: R) -> Self {
        Self::with_max(blob, reader, CHUNK)
    }

    fn with_max(blob: &Blob, reader: R, max: usize) -> Self {
        Chunks {
            header: Some((blob.digest.clone(), blob.media_type.clone())),
            reader,
            size: blob.size,
            read: 0,
            max,
            done: false,
        }
    }

    fn fill(&mut self) -> io::Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(self.max);
        (&mut self.reader).take(self.max as u64).read_to_end(&mut buf)?;
        self.read += buf.len() as u64;
        if self.read > self.size || (buf.is_empty() && self.read < self.size) {
            let read = self.read;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{read} bytes or more, expected {} (did it change?)", self.size),
            ));
        }
        Ok(buf)
    }
}

impl<R: Read> Iterator for Chunks<R> {
    type Item = io::Result<pb::BlobChunk>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let data = match self.fill() {
            Ok(data) => data,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        match self.header.take() {
            Some((digest, media_type)) => Some(Ok(pb::BlobChunk { digest, size: self.size, media_type, data })),
            None if data.is_empty() => {
                self.done = true;
                None
            }
            None => Some(Ok(pb::BlobChunk { data, ..Default::default() })),
        }
    }
}

#[cfg(test)]
mod tests {
    use hoist_images::oci::BlobKind;

    use super::*;

    fn blob(digest: &str, size: u64) -> Blob {
        Blob {
            digest: digest.to_string(),
            size,
            media_type: "application/vnd.oci.image.layer.v1.tar".to_string(),
            kind: BlobKind::Layer,
            data: BlobData::Memory(Vec::new()),
        }
    }

    fn chunks(data: &[u8], size: u64, max: usize) -> Vec<io::Result<pb::BlobChunk>> {
        Chunks::with_max(&blob("sha256:aa", size), data, max).collect()
    }

    #[test]
    fn a_blob_is_cut_into_chunks_after_a_header() {
        let data: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        let list: Vec<pb::BlobChunk> = chunks(&data, 2500, 1000).into_iter().map(|c| c.expect("chunk")).collect();
        assert_eq!(list.iter().map(|c| c.data.len()).collect::<Vec<_>>(), [1000, 1000, 500]);
        assert_eq!((list[0].digest.as_str(), list[0].size), ("sha256:aa", 2500));
        assert_eq!(list[0].media_type, "application/vnd.oci.image.layer.v1.tar");
        assert!(list[1..].iter().all(|c| c.digest.is_empty() && c.size == 0 && c.media_type.is_empty()));
        assert_eq!(list.concat_data(), data);

        // Exactly a multiple of the chunk size: no empty message at the end.
        let list = chunks(&data[..2000], 2000, 1000);
        assert_eq!(list.len(), 2);
        // The real size: 1 MiB of data, well under the 4 MiB message cap.
        let big = vec![7u8; 2 * CHUNK + 3];
        let list: Vec<pb::BlobChunk> =
            Chunks::new(&blob("sha256:bb", big.len() as u64), big.as_slice()).map(|c| c.expect("chunk")).collect();
        assert!(list.iter().all(|c| c.data.len() <= CHUNK));
        assert_eq!(list.concat_data(), big);
    }

    #[test]
    fn an_empty_blob_is_one_header() {
        let list = chunks(b"", 0, 1000);
        assert_eq!(list.len(), 1);
        let first = list.into_iter().next().expect("one").expect("ok");
        assert_eq!((first.digest.as_str(), first.size, first.data.len()), ("sha256:aa", 0, 0));
    }

    #[test]
    fn a_blob_that_changed_size_is_an_error() {
        let short = chunks(b"abc", 5, 2);
        assert!(short[0].is_ok() && short[1].is_ok());
        let err = short[2].as_ref().expect_err("short");
        assert!(err.to_string().contains("expected 5"), "{err}");
        assert_eq!(short.len(), 3);
        let long = chunks(b"abcdef", 4, 3);
        assert!(long[1].is_err(), "past the size");
    }

    trait Concat {
        fn concat_data(&self) -> Vec<u8>;
    }

    impl Concat for Vec<pb::BlobChunk> {
        fn concat_data(&self) -> Vec<u8> {
            self.iter().flat_map(|c| c.data.iter().copied()).collect()
        }
    }

    #[test]
    fn only_images_the_host_lacks_count() {
        let t = |image: &str, blobs: &[(&str, u64)]| Transfer {
            image: image.to_string(),
            manifest: image.to_string(),
            blobs: blobs.iter().map(|(d, s)| blob(d, *s)).collect(),
        };
        let transfers = [
            // Held by the host (built in: its blobs are not in the content store), and it
            // shares the base layer with m1 and m3, which the host lacks.
            t("m2", &[("m2", 1), ("c2", 10), ("base", 1000)]),
            t("m1", &[("m1", 1), ("c1", 10), ("base", 1000), ("app", 200)]),
            t("m3", &[("m3", 2), ("c3", 20), ("base", 1000), ("tool", 50)]),
        ];
        let missing = ["m1", "c1", "base", "app", "m3", "c3", "tool"].map(String::from);
        let held = ["m2".to_string()];
        let (uploads, image_bytes) = plan(&transfers, &missing, &held).expect("plan");
        let digests: Vec<&str> = uploads.iter().map(|b| b.digest.as_str()).collect();
        assert_eq!(digests, ["m1", "c1", "base", "app", "m3", "c3", "tool"]);
        // m1 and m3 with base counted once; m2 not at all.
        assert_eq!(image_bytes, 1 + 10 + 1000 + 200 + 2 + 20 + 50);
        let all = ["m1", "m2", "m3"].map(String::from);
        let (uploads, image_bytes) = plan(&transfers, &[], &all).expect("nothing missing");
        assert!(uploads.is_empty());
        assert_eq!(image_bytes, 0);
        let err = plan(&transfers, &["zz".to_string()], &[]).expect_err("unknown digest");
        assert_eq!(err.to_string(), "the host asked for blob zz, which is in none of the images");
    }

    #[test]
    fn summaries() {
        let sent = Sent { blobs: 3, bytes: 12_345_678, image_bytes: 98_700_000 };
        assert_eq!(sent.summary(), "sent 3 blobs, 12.3 MB of 98.7 MB (the host already had the rest)");
        assert_eq!(sent.json(), r#"{"sent_bytes":12345678,"image_bytes":98700000,"blobs_sent":3}"#);
        let all = Sent { blobs: 1, bytes: 2_500, image_bytes: 2_500 };
        assert_eq!(all.summary(), "sent 1 blob, 2.5 kB of 2.5 kB");
        assert_eq!(Sent::default().summary(), "images: the host holds them all already");
        assert_eq!(size(999), "999 B");
    }

    /// A host that holds some blobs, keeps what is uploaded, and refuses some digests.
    #[derive(Default)]
    struct FakeHost {
        held: std::sync::Mutex<HashSet<String>>,
        refuse: HashSet<String>,
        got: std::sync::Mutex<Vec<Got>>,
    }

    /// An upload as the host saw it: the first chunk's header, all the data, data per message.
    #[derive(Clone)]
    struct Got {
        digest: String,
        size: u64,
        media_type: String,
        data: Vec<u8>,
        sizes: Vec<usize>,
    }

    type Empty<T> = tokio_stream::Empty<Result<T, tonic::Status>>;

    fn no<T>() -> Result<tonic::Response<T>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this fake"))
    }

    #[tonic::async_trait]
    impl pb::control_server::Control for FakeHost {
        type LogsStream = Empty<pb::LogLine>;
        type EventsStream = Empty<pb::Event>;
        type ApplyStream = Empty<pb::ApplyProgress>;
        type RollbackStream = Empty<pb::ApplyProgress>;
        async fn status(&self, _: Request<pb::StatusRequest>) -> Reply<pb::StatusReply> {
            no()
        }
        async fn describe(&self, _: Request<pb::ServiceRequest>) -> Reply<pb::ServiceDetail> {
            no()
        }
        async fn start(&self, _: Request<pb::ServiceRequest>) -> Reply<pb::ActionReply> {
            no()
        }
        async fn stop(&self, _: Request<pb::ServiceRequest>) -> Reply<pb::ActionReply> {
            no()
        }
        async fn restart(&self, _: Request<pb::ServiceRequest>) -> Reply<pb::ActionReply> {
            no()
        }
        async fn logs(&self, _: Request<pb::LogsRequest>) -> Reply<Self::LogsStream> {
            no()
        }
        async fn events(&self, _: Request<pb::EventsRequest>) -> Reply<Self::EventsStream> {
            no()
        }
        async fn exec(&self, _: Request<pb::ExecRequest>) -> Reply<pb::ExecReply> {
            no()
        }
        async fn shutdown(&self, _: Request<pb::ShutdownRequest>) -> Reply<pb::ActionReply> {
            no()
        }
        async fn version(&self, _: Request<pb::VersionRequest>) -> Reply<pb::VersionReply> {
            no()
        }
        async fn plan(&self, _: Request<pb::ApplyRequest>) -> Reply<pb::PlanReply> {
            no()
        }
        async fn apply(&self, _: Request<pb::ApplyRequest>) -> Reply<Self::ApplyStream> {
            no()
        }
        async fn confirm(&self, _: Request<pb::ConfirmRequest>) -> Reply<pb::ActionReply> {
            no()
        }
        async fn rollback(&self, _: Request<pb::RollbackRequest>) -> Reply<Self::RollbackStream> {
            no()
        }
        async fn history(&self, _: Request<pb::HistoryRequest>) -> Reply<pb::HistoryReply> {
            no()
        }
        async fn missing_blobs(&self, r: Request<pb::MissingBlobsRequest>) -> Reply<pb::MissingBlobsReply> {
            let have = self.held.lock().expect("lock");
            let images = r.into_inner().images;
            let held: Vec<String> =
                images.iter().filter(|i| i.blobs.iter().all(|b| have.contains(b))).map(|i| i.image.clone()).collect();
            let mut missing: Vec<String> =
                images.into_iter().flat_map(|i| i.blobs).filter(|b| !have.contains(b)).collect();
            missing.sort();
            missing.dedup();
            Ok(tonic::Response::new(pb::MissingBlobsReply { missing, held }))
        }
        async fn upload_blob(&self, r: Request<tonic::Streaming<pb::BlobChunk>>) -> Reply<pb::UploadBlobReply> {
            let mut stream = r.into_inner();
            let first = stream.message().await?.ok_or_else(|| tonic::Status::invalid_argument("no chunks"))?;
            if self.refuse.contains(&first.digest) {
                return Err(tonic::Status::invalid_argument(format!("{}: content does not match", first.digest)));
            }
            let mut sizes = vec![first.data.len()];
            let mut data = first.data;
            while let Some(chunk) = stream.message().await? {
                sizes.push(chunk.data.len());
                data.extend_from_slice(&chunk.data);
            }
            self.held.lock().expect("lock").insert(first.digest.clone());
            let size = data.len() as u64;
            let got = Got { digest: first.digest.clone(), size: first.size, media_type: first.media_type, data, sizes };
            self.got.lock().expect("lock").push(got);
            Ok(tonic::Response::new(pb::UploadBlobReply { digest: first.digest, size, existed: false }))
        }
    }

    type Reply<T> = Result<tonic::Response<T>, tonic::Status>;
    use tonic::Request;

    async fn serve(host: std::sync::Arc<FakeHost>) -> ControlClient<Channel> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("listen");
        let addr = listener.local_addr().expect("addr");
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let server =
            pb::control_server::ControlServer::from_arc(host).max_decoding_message_size(hoist_api::MAX_MESSAGE);
        tokio::spawn(tonic::transport::Server::builder().serve_with_incoming(server, incoming));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        ControlClient::new(channel)
    }

    /// A layout whose layer is more than two chunks even gzipped.
    fn layout(dir: &std::path::Path) -> Transfer {
        let mut x: u32 = 1;
        let noise: Vec<u8> = (0..3 * CHUNK)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        let mut tree = hoist_images::tree::Tree::new();
        tree.insert_file("data", 0o644, noise);
        let _ = std::fs::remove_dir_all(dir);
        hoist_images::oci::create_oci_layout(dir, "v1", &tree, &Default::default()).expect("layout");
        hoist_images::oci::blobs(&hoist_config::ImageSource::Oci { dir: dir.to_path_buf(), tag: None }).expect("blobs")
    }

    #[tokio::test]
    async fn only_missing_blobs_travel_in_chunks() {
        let dir = std::env::temp_dir().join(format!("hoist-send-test-{}", std::process::id()));
        let t = layout(&dir);
        let (manifest, config, layer) = (&t.blobs[0], &t.blobs[1], &t.blobs[2]);
        let host = std::sync::Arc::new(FakeHost::default());
        host.held.lock().expect("lock").insert(config.digest.clone());
        let mut client = serve(host.clone()).await;

        let mut log = Vec::new();
        let sent = send_images(&mut client, std::slice::from_ref(&t), &mut log).await.expect("sent");
        assert_eq!(sent, Sent { blobs: 2, bytes: manifest.size + layer.size, image_bytes: t.size() });
        let got = host.got.lock().expect("lock").clone();
        let digests: Vec<&str> = got.iter().map(|g| g.digest.as_str()).collect();
        assert_eq!(digests, [manifest.digest.as_str(), layer.digest.as_str()]);
        let Got { size, media_type, data, sizes, .. } = &got[1];
        assert_eq!((*size, media_type.as_str()), (layer.size, layer.media_type.as_str()));
        assert_eq!(data, &std::fs::read(dir.join("blobs/sha256").join(&layer.digest[7..])).expect("layer"));
        assert!(sizes.len() >= 3 && sizes.iter().all(|s| *s <= CHUNK), "{sizes:?}");
        let log = String::from_utf8(log).expect("utf-8");
        assert!(log.contains(&format!("sending layer {}", crate::apply::short(&layer.digest))), "{log}");
        assert!(log.ends_with("(the host already had the rest)\n"), "{log}");

        // Now the host holds it all: nothing travels.
        let mut log = Vec::new();
        let again = send_images(&mut client, std::slice::from_ref(&t), &mut log).await.expect("again");
        assert_eq!(again, Sent::default());
        assert_eq!(host.got.lock().expect("lock").len(), 2);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_refused_blob_stops_the_apply() {
        let dir = std::env::temp_dir().join(format!("hoist-send-refused-{}", std::process::id()));
        let t = layout(&dir);
        let layer = t.blobs[2].digest.clone();
        let host = std::sync::Arc::new(FakeHost { refuse: HashSet::from([layer.clone()]), ..FakeHost::default() });
        let mut client = serve(host).await;
        let mut log = Vec::new();
        let err = send_images(&mut client, std::slice::from_ref(&t), &mut log).await.expect_err("refused");
        assert_eq!(format!("{err:#}"), format!("sending blob {layer}: {layer}: content does not match"));
        let log = String::from_utf8(log).expect("utf-8");
        assert!(log.ends_with("... failed\n"), "{log}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
