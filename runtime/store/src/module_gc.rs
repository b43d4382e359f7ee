//! Reclaiming modules and artifacts no function uses any more.
//!
//! Modules are content addressed and shared: two functions (of any users)
//! with the same bytes have one object, so deleting a function cannot delete
//! its module. A sweep ([`Storage::collect_garbage`], run by API servers)
//! lists the digests every function names, then deletes each object (module,
//! or artifact of a module) that none names and that nobody wrote or
//! *touched* within a grace period.
//!
//! The race it must not lose: an upload of bytes that are already stored
//! writes no new object, only the function that names it, and a sweep that
//! listed the references before that function existed would delete the
//! object under it. So an upload touches the object first (a new revision of
//! its metadata, [`Storage::put_module`]) and writes the function after, and
//! the sweep deletes with a compare-and-set: the deletion marker is published
//! only if the object's metadata is still the revision the sweep judged old
//! (`Nats-Expected-Last-Subject-Sequence`). Three cases, whatever the timing:
//! - the touch came before the sweep read the metadata: the object is young,
//!   kept (the grace period covers the upload's few steps between its touch
//!   and its function, so the sweep's reference list, read first, is not
//!   stale by more than that);
//! - the touch came after the read and before the delete: the revision
//!   moved, the delete is refused, the object kept;
//! - the touch came after the delete: it finds the object deleted and writes
//!   it again (the upload holds the bytes).
//!
//! A JavaScript function's module is a script that names its interpreter
//! inside its bytes: the interpreters of JavaScript functions count as used
//! (read from their scripts, remembered by digest), and the interpreter an
//! API server installs at start is marked pinned, used or not. Sweeps on
//! several API servers at once are safe: of two deletes of one revision,
//! one is refused.
//!
//! A delete publishes the deletion marker, then purges the object's chunks
//! and its metadata up to the marker: nothing of it is left, and a later
//! write of the same name is a first write (async-nats then purges nothing,
//! which a worker, storing an artifact, may not do). Ages are measured on
//! the server's timestamps of the metadata messages, not on clocks of
//! writers.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::header::{NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, NATS_ROLLUP};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::object_store::ObjectInfo;
use base64::Engine as _;
use futures::StreamExt as _;
use nimbus_core::script::ScriptModule;
use nimbus_core::{FunctionMeta, Runtime, subjects};

use crate::codec::decode;
use crate::failover::Retry;
use crate::functions::ID_COUNTER_KEY;
use crate::{Storage, StoreError, unavailable};

/// Script digests whose interpreter a store remembers, at most.
pub(crate) const KNOWN_INTERPRETERS: usize = 100_000;

/// The metadata key that marks an object pinned.
pub(crate) const PINNED: &str = "nimbus-pinned";

/// What a sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Objects deleted.
    pub reclaimed: usize,
    /// Their bytes.
    pub reclaimed_bytes: u64,
    /// Objects no function names that were written or touched within the
    /// grace period, kept for now.
    pub young: usize,
}

/// An object a sweep judged garbage: unreferenced and old when its metadata
/// was read at revision `sequence`.
#[derive(Debug, Clone)]
pub struct Garbage {
    info: ObjectInfo,
    sequence: u64,
}

impl Garbage {
    /// The object's name (a module digest, or an artifact name).
    pub fn name(&self) -> &str {
        &self.info.name
    }
}

/// An object's metadata as stored: its content, its revision (the stream
/// sequence of the message) and when the server stored it.
struct Meta {
    info: ObjectInfo,
    sequence: u64,
    written: time::OffsetDateTime,
}

/// The module digest an object belongs to: its own name for a module, the
/// part before the first `.` for an artifact (`<digest>.sealed-...`).
fn module_of(name: &str) -> &str {
    name.split_once('.').map_or(name, |(digest, _)| digest)
}

fn meta_subject(name: &str) -> String {
    format!(
        "$O.{}.M.{}",
        subjects::MODULES_BUCKET,
        base64::engine::general_purpose::URL_SAFE.encode(name)
    )
}

fn is_wrong_sequence(e: &async_nats::jetstream::context::PublishError) -> bool {
    e.kind() == PublishErrorKind::WrongLastSequence
}

impl Storage {
    /// Store module bytes under `digest`, or, if they are stored already,
    /// touch them (see the module docs): after this, a sweep keeps the object
    /// for at least its grace period. `pinned` objects are never reclaimed.
    pub async fn put_module(
        &self,
        digest: &str,
        bytes: &[u8],
        pinned: bool,
    ) -> Result<(), StoreError> {
        if self.touch_object(digest, pinned).await? {
            return Ok(());
        }
        let metadata = if pinned {
            pinned_metadata()
        } else {
            Default::default()
        };
        self.put_object(digest, bytes, metadata).await
    }

    /// Give object `name`'s metadata a new revision stamped now (and the
    /// pinned mark if `pin`, for objects stored before marks existed);
    /// `false` if there is no such object (or it was deleted).
    pub(crate) async fn touch_object(&self, name: &str, pin: bool) -> Result<bool, StoreError> {
        let subject = meta_subject(name);
        // A refused attempt means someone else wrote the metadata since it
        // was read: another touch or a new write (then the object is as
        // fresh as ours would have made it), or a sweep's delete (then it
        // is gone). Read it again.
        let mut first_read = None;
        for attempt in 0..8u32 {
            let Some(meta) = self.object_meta(&subject).await? else {
                return Ok(false);
            };
            let (mut info, sequence) = (meta.info, meta.sequence);
            if info.deleted {
                return Ok(false);
            }
            let pinned = !pin || info.metadata.contains_key(PINNED);
            if first_read.is_some_and(|first| sequence > first) && pinned {
                return Ok(true); // written by someone else since we began
            }
            first_read.get_or_insert(sequence);
            info.modified = Some(time::OffsetDateTime::now_utc());
            if pin {
                info.metadata.extend(pinned_metadata());
            }
            match self.publish_meta(&subject, &info, sequence).await {
                Ok(_) => return Ok(true),
                Err(e) if is_wrong_sequence(&e) => {
                    tokio::time::sleep(std::time::Duration::from_millis(5 << attempt.min(5))).await;
                }
                Err(e) => return Err(unavailable("touch an object", e)),
            }
        }
        Err(unavailable(
            "touch an object",
            std::io::Error::other("its metadata kept changing"),
        ))
    }

    /// The object metadata on `subject`, if any.
    async fn object_meta(&self, subject: &str) -> Result<Option<Meta>, StoreError> {
        use async_nats::jetstream::stream::DirectGetErrorKind;
        let message = self
            .ride_out_raw(Retry::Idempotent, "read object metadata", || {
                self.modules_stream.direct_get_last_for_subject(subject)
            })
            .await;
        let message = match message {
            Ok(message) => message,
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(unavailable("read object metadata", e)),
        };
        Ok(Some(Meta {
            info: decode(subject, &message.payload)?,
            sequence: message.sequence,
            written: message.time,
        }))
    }

    /// Publish `info` as the object's metadata, replacing what it had, if
    /// its revision is still `sequence`.
    async fn publish_meta(
        &self,
        subject: &str,
        info: &ObjectInfo,
        sequence: u64,
    ) -> Result<u64, async_nats::jetstream::context::PublishError> {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_ROLLUP, "sub");
        headers.insert(
            NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            sequence.to_string().as_str(),
        );
        let payload = bytes::Bytes::from(serde_json::to_vec(info).expect("object info serialises"));
        // Sent again only if surely not delivered: a resent touch or delete
        // that had landed would be refused as a stale revision.
        self.ride_out_raw(Retry::Undelivered, "write object metadata", || async {
            self.js
                .publish_with_headers(subject.to_owned(), headers.clone(), payload.clone())
                .await?
                .await
                .map(|ack| ack.sequence)
        })
        .await
    }

    /// The digests of the modules functions use (every user's), with the
    /// interpreters their scripts name.
    async fn referenced_digests(&self) -> Result<HashSet<String>, StoreError> {
        Ok(self.referenced_modules().await?.0)
    }

    /// [`Storage::referenced_digests`], and which of them are scripts
    /// (JavaScript functions' modules).
    pub(crate) async fn referenced_modules(
        &self,
    ) -> Result<(HashSet<String>, HashSet<String>), StoreError> {
        let filter = format!("{}>", self.functions.prefix);
        let stored = self
            .ride_out(Retry::Idempotent, "list functions", || {
                self.last_per_subject(&filter)
            })
            .await?;
        let mut digests = HashSet::new();
        let mut scripts = Vec::new();
        for (subject, value) in stored {
            if subject.ends_with(ID_COUNTER_KEY) {
                continue;
            }
            let meta: FunctionMeta = decode(&subject, &value)?;
            if meta.runtime == Runtime::Js {
                scripts.push(meta.digest.clone());
            }
            digests.insert(meta.digest);
        }
        for script in &scripts {
            if let Some(interpreter) = self.interpreter_of(script).await? {
                digests.insert(interpreter);
            }
        }
        Ok((digests, scripts.into_iter().collect()))
    }

    /// The interpreter script module `digest` names (`None` if it is no
    /// script, or gone). Remembered: a digest's bytes never change.
    async fn interpreter_of(&self, digest: &str) -> Result<Option<String>, StoreError> {
        if let Some(known) = self.interpreters.lock().expect("lock").get(digest) {
            return Ok(Some(known.clone()));
        }
        let Some(bytes) = self.module(digest).await? else {
            return Ok(None);
        };
        let Ok(Some(script)) = ScriptModule::decode(&bytes) else {
            return Ok(None);
        };
        let interpreter = script.interpreter.to_owned();
        let mut known = self.interpreters.lock().expect("lock");
        if known.len() >= KNOWN_INTERPRETERS {
            known.clear();
        }
        known.insert(digest.to_owned(), interpreter.clone());
        Ok(Some(interpreter))
    }

    /// The objects no function names, that nobody wrote or touched within
    /// `grace` (see the module docs for the order of the reads), and how
    /// many unreferenced ones are younger.
    pub async fn garbage(&self, grace: Duration) -> Result<(Vec<Garbage>, usize), StoreError> {
        // Ages are counted from before the references were read, and the
        // references are read before each object's metadata: the order the
        // race argument in the module docs needs.
        let now = time::OffsetDateTime::now_utc();
        let referenced = self.referenced_digests().await?;
        let mut objects = Vec::new();
        let mut list = self
            .modules
            .list()
            .await
            .map_err(|e| unavailable("list objects", e))?;
        while let Some(info) = list.next().await {
            objects.push(info.map_err(|e| unavailable("list objects", e))?);
        }
        let pinned: HashSet<&str> = objects
            .iter()
            .filter(|info| info.metadata.contains_key(PINNED))
            .map(|info| module_of(&info.name))
            .collect();
        let (mut garbage, mut young) = (Vec::new(), 0);
        for listed in &objects {
            let digest = module_of(&listed.name);
            if referenced.contains(digest) || pinned.contains(digest) {
                continue;
            }
            let Some(meta) = self.object_meta(&meta_subject(&listed.name)).await? else {
                continue;
            };
            if meta.info.deleted {
                continue;
            }
            if Duration::try_from(now - meta.written).unwrap_or_default() < grace {
                young += 1;
                continue;
            }
            garbage.push(Garbage {
                info: meta.info,
                sequence: meta.sequence,
            });
        }
        Ok((garbage, young))
    }

    /// Delete `garbage` unless its metadata moved since it was judged (a
    /// touch): whether it was deleted.
    pub async fn reclaim(&self, garbage: &Garbage) -> Result<bool, StoreError> {
        let subject = meta_subject(&garbage.info.name);
        let marker = ObjectInfo {
            chunks: 0,
            size: 0,
            deleted: true,
            modified: Some(time::OffsetDateTime::now_utc()),
            ..garbage.info.clone()
        };
        let marker = match self.publish_meta(&subject, &marker, garbage.sequence).await {
            Ok(sequence) => sequence,
            Err(e) if is_wrong_sequence(&e) => return Ok(false),
            Err(e) => return Err(unavailable("delete an object", e)),
        };
        // The marker makes the object unreadable; now free its chunks, then
        // its metadata up to the marker (a write after the marker stays). If
        // a purge fails, what it would have freed stays until purged by hand
        // (logged; a later sweep skips a deleted object).
        let chunks = subjects::object_chunks(subjects::MODULES_BUCKET, &garbage.info.nuid);
        for (filter, below) in [(chunks, None), (subject, Some(marker + 1))] {
            let purge = self.modules_stream.purge().filter(&filter);
            let purged = match below {
                Some(sequence) => purge.sequence(sequence).await,
                None => purge.await,
            };
            if let Err(e) = purged {
                tracing::warn!(object = %garbage.info.name, %filter, error = %e, "could not purge a deleted object");
            }
        }
        Ok(true)
    }

    /// One sweep: delete every object no function names and nobody wrote or
    /// touched within `grace`.
    pub async fn collect_garbage(&self, grace: Duration) -> Result<Sweep, StoreError> {
        let (garbage, young) = self.garbage(grace).await?;
        let mut sweep = Sweep {
            young,
            ..Sweep::default()
        };
        for object in &garbage {
            if self.reclaim(object).await? {
                sweep.reclaimed += 1;
                sweep.reclaimed_bytes += object.info.size as u64;
                tracing::info!(object = %object.name(), bytes = object.info.size, "reclaimed an unused object");
            }
        }
        Ok(sweep)
    }
}

/// The metadata that marks an object pinned (see [`Storage::put_module`]).
pub(crate) fn pinned_metadata() -> std::collections::HashMap<String, String> {
    [(PINNED.to_owned(), "true".to_owned())].into()
}
