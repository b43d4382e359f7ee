//! Module bytes in the `modules` object store, content addressed (named by
//! their sha256 digest); precompiled artifacts live in the same bucket (see
//! `artifacts.rs`).
//!
//! Objects are read chunk by chunk with direct gets on the bucket's stream,
//! not through async-nats's object reader: that one creates a JetStream
//! consumer per read and leaves it for the server to expire, so a burst of
//! first calls over many functions piled up consumers (400 after 400 reads
//! in a test; a burst of 500 in a release build hit the server's consumer
//! limit, and every uncached module failed for about a minute). A direct get
//! is a plain request any replica answers. The chunks of one object are
//! almost always consecutive in the stream, so after the first, the rest are
//! fetched by sequence number, many in flight (a 43 MB artifact in 128 KiB
//! chunks, one round trip each, made a ~200 ms read); at the first gap
//! (another object's chunk in between) the read goes on chunk by chunk. The
//! chunks are checked against the object's size and, while they arrive,
//! its SHA-256 digest, or for a signed artifact its signature over the
//! decoded artifact (which makes the digest redundant), and written to a
//! sink: memory, or for an artifact a memory file the engine maps
//! (`artifact_file.rs`).

use std::io::Write;

use async_nats::jetstream::object_store::{self, ObjectInfo};
use base64::Engine as _;
use futures::StreamExt as _;
use sha2::{Digest, Sha256};

use nimbus_core::subjects;

use crate::artifact_encoding::{Chunks, Decoded, decode, decode_limit};
use crate::failover::{NatsError, Retry};
use crate::{Storage, StoreError, unavailable};

impl Storage {
    /// The module stored under `digest`, if any.
    pub async fn module(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_object(digest).await
    }

    /// Write object `name` with `metadata` (`module_gc::pinned_metadata`:
    /// never reclaimed).
    pub(crate) async fn put_object(
        &self,
        name: &str,
        bytes: &[u8],
        metadata: std::collections::HashMap<String, String>,
    ) -> Result<(), StoreError> {
        // Not retried: async-nats reports a failed chunk only as text, so
        // whether JetStream received it is unknown. The upload answers 503.
        let mut reader = bytes;
        let meta = object_store::ObjectMetadata {
            name: name.to_owned(),
            chunk_size: Some(chunk_bytes(self.client.max_payload())),
            metadata,
            ..Default::default()
        };
        self.modules
            .put(meta, &mut reader)
            .await
            .map_err(|e| unavailable("write object", e))?;
        Ok(())
    }

    pub(crate) async fn get_object(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let sink = |size| Ok(Vec::with_capacity(size));
        self.read_object(name, |_| Check::Digest(Sha256::new()), sink)
            .await
            .map(|read| read.map(|(bytes, _)| bytes))
    }

    /// The object `name`, checked as it arrives with what `check` makes and
    /// written to what `sink` makes, both for its size (fresh ones per
    /// attempt), and the check's verdict.
    pub(crate) async fn read_object<S: Write + Send + 'static>(
        &self,
        name: &str,
        check: impl Fn(usize) -> Check + Send + Sync,
        sink: impl Fn(usize) -> std::io::Result<S> + Send + Sync,
    ) -> Result<Option<(S, Check)>, StoreError> {
        self.ride_out(Retry::Idempotent, "read object", || async {
            let info = match self.modules.info(name).await {
                Ok(info) if !info.deleted => info,
                Ok(_) => return Ok(None),
                Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(NatsError::new(e)),
            };
            let sink = sink(info.size).map_err(NatsError::new)?;
            let (check, sink) = match self.read_chunks(&info, check(info.size), sink).await {
                Ok(read) => read,
                // Deleted while being read (a sweep, `module_gc.rs`): gone,
                // as if the read had come a moment later.
                Err(e) if self.is_gone(&info).await => {
                    tracing::debug!(object = %info.name, error = %e, "an object was deleted while read");
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            if let Check::Digest(hasher) = &check {
                let digest = format!(
                    "SHA-256={}",
                    base64::engine::general_purpose::URL_SAFE.encode(hasher.clone().finalize())
                );
                if info.digest.as_deref().is_some_and(|d| d != digest) {
                    return Err(NatsError::new(CorruptObject(info.name.clone())));
                }
            }
            Ok(Some((sink, check)))
        })
        .await
    }

    /// Whether object `name` is stored (and not deleted).
    pub async fn has_object(&self, name: &str) -> Result<bool, StoreError> {
        match self.modules.info(name).await {
            Ok(info) => Ok(!info.deleted),
            Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => Ok(false),
            Err(e) => Err(unavailable("read an object's info", e)),
        }
    }

    /// Whether the object `info` describes is deleted since.
    async fn is_gone(&self, info: &ObjectInfo) -> bool {
        match self.modules.info(&info.name).await {
            Ok(now) => now.deleted,
            Err(e) => e.kind() == object_store::InfoErrorKind::NotFound,
        }
    }

    /// The object's chunks, in order, fed to `check` and their content
    /// written to `sink`, then checked against the object's size. A big
    /// object is checked (and an artifact decoded) and written on blocking
    /// threads while its next chunks arrive (decoding, hashing and writing
    /// the 40 MB artifact of the Python example takes ~60 ms of CPU, which
    /// would otherwise add to its time on the wire); a small one, after its
    /// chunks arrived, on this task.
    async fn read_chunks<S: Write + Send + 'static>(
        &self,
        info: &ObjectInfo,
        check: Check,
        sink: S,
    ) -> Result<(Check, S), NatsError> {
        let started = std::time::Instant::now();
        let in_flight = chunks_in_flight(info);
        let (chunks, mut arrived) = tokio::sync::mpsc::channel::<bytes::Bytes>(in_flight);
        let mut received_ms = f64::NAN;
        let inline = info.chunks <= in_flight && info.size <= INLINE_BYTES && !check.decodes_much();
        let absorbed = if inline {
            // Every chunk fits in the channel: receive, then absorb.
            let received = self.receive_chunks(info, &chunks).await;
            drop(chunks);
            received?;
            absorb(check, sink, || arrived.try_recv().ok())
        } else {
            let writer = tokio::task::spawn_blocking(move || {
                absorb(check, sink, || arrived.blocking_recv())
            });
            let received = self.receive_chunks(info, &chunks).await;
            drop(chunks);
            received_ms = started.elapsed().as_secs_f64() * 1e3;
            let absorbed = writer.await.map_err(NatsError::new)?;
            received?;
            absorbed
        };
        let (check, sink, size) = absorbed.map_err(NatsError::new)?;
        tracing::debug!(
            object = %info.name,
            bytes = info.size,
            received_ms,
            read_ms = started.elapsed().as_secs_f64() * 1e3,
            "read an object"
        );
        if size != info.size {
            return Err(NatsError::new(CorruptObject(info.name.clone())));
        }
        Ok((check, sink))
    }

    /// Fetch the object's chunks in order into `chunks` (until it closes).
    async fn receive_chunks(
        &self,
        info: &ObjectInfo,
        chunks: &tokio::sync::mpsc::Sender<bytes::Bytes>,
    ) -> Result<(), NatsError> {
        let subject = subjects::object_chunks(subjects::MODULES_BUCKET, &info.nuid);
        let (mut read, mut next) = (0, None);
        if info.chunks > 0 {
            let first = self
                .modules_stream
                .direct_get_next_for_subject(subject.as_str(), None)
                .await
                .map_err(NatsError::new)?;
            (read, next) = (1, Some(first.sequence + 1));
            if chunks.send(first.payload).await.is_err() {
                return Ok(()); // the writer failed: it says why
            }
            // The rest, by sequence, while they are consecutive. An error
            // here only ends the fast path: the slow one reports real ones.
            let rest = first.sequence + 1..first.sequence + info.chunks as u64;
            let mut in_order = futures::stream::iter(rest)
                .map(|sequence| self.modules_stream.direct_get(sequence))
                .buffered(chunks.max_capacity());
            while let Some(Ok(chunk)) = in_order.next().await {
                if chunk.subject.as_str() != subject {
                    break;
                }
                (read, next) = (read + 1, Some(chunk.sequence + 1));
                if chunks.send(chunk.payload).await.is_err() {
                    return Ok(());
                }
            }
        }
        for _ in read..info.chunks {
            let chunk = self
                .modules_stream
                .direct_get_next_for_subject(subject.as_str(), next)
                .await
                .map_err(NatsError::new)?;
            next = Some(chunk.sequence + 1);
            if chunks.send(chunk.payload).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// Feed the chunks `next` yields to `check` and their content to `sink`:
/// both back, and the bytes fed. A compressed artifact's content is decoded
/// on the way (`artifact_encoding.rs`); one that does not decode is marked
/// so in `check`, and its remaining chunks are read and dropped.
pub(crate) fn absorb<S: Write + Send>(
    mut check: Check,
    mut sink: S,
    mut next: impl FnMut() -> Option<bytes::Bytes>,
) -> std::io::Result<(Check, S, usize)> {
    if let Check::Seal {
        tag,
        hasher,
        compressed: Some(stored_bytes),
        undecodable,
    } = &mut check
    {
        let (limit, beside) = (decode_limit(*stored_bytes), *stored_bytes > INLINE_BYTES);
        let mut stored = Chunks::new(&mut next, crate::artifacts::TAG_BYTES, tag);
        let decoded = decode(&mut stored, limit, beside, |content| {
            hasher.update(content);
            sink.write_all(content)
        })?;
        let mut size = stored.size;
        if let Decoded::Invalid(why) = decoded {
            *undecodable = Some(why);
        }
        while let Some(payload) = next() {
            size += payload.len();
        }
        return Ok((check, sink, size));
    }
    let mut size = 0;
    while let Some(payload) = next() {
        size += payload.len();
        sink.write_all(check.update(&payload))?;
    }
    Ok((check, sink, size))
}

/// Objects of at most this size are checked and written after they
/// arrived, on the reading task; bigger ones on a blocking thread while
/// they arrive (and artifacts of more than this, decoded on two).
const INLINE_BYTES: usize = 2 << 20;

/// Artifacts of at most this size stored are decoded on the reading task
/// too: a module's is usually a few kilobytes, and threads to start and
/// hand over to cost more, on a busy machine, than decoding; what one may
/// decode to is bounded (`decode_limit`: 20 MiB for 256 KiB, ~15 ms).
const INLINE_DECODE: usize = 256 << 10;

/// Chunk reads in flight at once on the fast path, and chunks the writer
/// may lag behind: up to 32 MiB of them, at most 16.
fn chunks_in_flight(info: &ObjectInfo) -> usize {
    let chunk = info.size.div_ceil(info.chunks.max(1)).max(1);
    ((32 << 20) / chunk).clamp(2, 16)
}

/// Bytes per chunk written: a power of two at most half the largest message
/// the server takes (room for headers) and at most 1 MiB. Fewer, bigger
/// chunks read faster: the Python example's 21 MB artifact, read alone,
/// took ~35-50 ms in 512 KiB chunks (NATS's default 1 MB limit), ~37 ms in
/// 1 MiB ones (the shipped configs allow 8 MB) and ~25-32 ms in 4 MiB ones,
/// 16 in flight; but a chunk is decoded only once it arrived whole, so on a
/// worker, where decoding shares the cores, 1 MiB and 4 MiB chunks made
/// first calls alike. Chunks are stored whole: every server of a cluster
/// should allow the same size.
fn chunk_bytes(max_payload: usize) -> usize {
    let mut chunk = 1 << 20;
    while chunk > 1024 && chunk > max_payload / 2 {
        chunk /= 2;
    }
    chunk
}

#[cfg(test)]
#[test]
fn chunks_are_at_most_half_the_largest_message_and_1_mib() {
    assert_eq!(chunk_bytes(1 << 20), 512 << 10);
    assert_eq!(chunk_bytes(8 << 20), 1 << 20);
    assert_eq!(chunk_bytes(64 << 20), 1 << 20);
    assert_eq!(chunk_bytes(1_000_000), 256 << 10);
    assert_eq!(chunk_bytes(100 << 10), 32 << 10);
}

/// What an object's bytes are checked against while they arrive.
pub(crate) enum Check {
    /// The SHA-256 digest recorded with the object.
    Digest(Sha256),
    /// A signed artifact's signature (its first bytes, collected here) and
    /// the hash of the artifact, the rest, which is compressed (then: the
    /// object's size, which bounds what it may decode to) or not
    /// (`artifacts.rs`, `artifact_encoding.rs`).
    Seal {
        tag: Vec<u8>,
        hasher: Box<blake3::Hasher>,
        compressed: Option<usize>,
        /// Why the compressed rest did not decode, if it did not.
        undecodable: Option<String>,
    },
}

impl Check {
    /// The check of a signed artifact stored as it is.
    pub(crate) fn seal() -> Self {
        Self::Seal {
            tag: Vec::with_capacity(crate::artifacts::TAG_BYTES),
            hasher: Box::new(blake3::Hasher::new()),
            compressed: None,
            undecodable: None,
        }
    }

    /// The check of a signed artifact stored compressed, in an object of
    /// `stored` bytes: what it may decode to is bounded
    /// (`artifact_encoding::decode_limit`).
    pub(crate) fn compressed_seal(stored: usize) -> Self {
        let mut check = Self::seal();
        if let Self::Seal { compressed, .. } = &mut check {
            *compressed = Some(stored);
        }
        check
    }

    /// Whether the content is decoded on the way from more than
    /// `INLINE_DECODE` bytes.
    fn decodes_much(&self) -> bool {
        matches!(
            self,
            Self::Seal {
                compressed: Some(stored),
                ..
            } if *stored > INLINE_DECODE
        )
    }

    /// Check `bytes`, the object's next ones; what of them is content (a
    /// seal's tag is not).
    fn update<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        match self {
            Self::Digest(hasher) => {
                hasher.update(bytes);
                bytes
            }
            Self::Seal { tag, hasher, .. } => {
                let in_tag = (crate::artifacts::TAG_BYTES - tag.len()).min(bytes.len());
                tag.extend_from_slice(&bytes[..in_tag]);
                hasher.update(&bytes[in_tag..]);
                &bytes[in_tag..]
            }
        }
    }
}

/// An object whose chunks do not add up to its recorded size and digest.
#[derive(Debug, thiserror::Error)]
#[error("object {0} does not match its recorded size and digest")]
struct CorruptObject(String);
