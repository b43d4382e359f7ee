//! Signed artifacts kept on a worker's own disk, so that loading one again
//! (after a restart, or once the in-memory cache let it go) reads a local
//! file instead of the object store.
//!
//! Measured with the 40 MB artifact of the Python example, a read from
//! JetStream takes ~70-130 ms right after the upload and ~100-200 ms once the
//! NATS server no longer holds the stream's blocks in memory (after a
//! restart, or some seconds later): most of a first call. A local copy is
//! read, checked and written to a memory file in ~30 ms.
//!
//! A kept file is the signature, then the artifact uncompressed (the object
//! store holds it compressed, `artifact_encoding.rs`; the signature covers
//! the artifact itself), and it is checked the same way on every load: a
//! file that does not verify (damaged, or written by anything but this
//! worker) is deleted and the artifact fetched again. Its content is copied
//! into a sealed memory file as it is hashed (`artifact_file.rs`), so what
//! the engine maps is what was verified, whatever happens to the file
//! afterwards. Files are written under a temporary name and renamed, so a
//! reader never sees half of one; the least recently used go first once the
//! directory holds more than its budget.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::artifact_file::{Artifact, Sink};
use crate::artifacts::{ArtifactVerifier, SignedArtifact, TAG_BYTES};
use crate::objects::{Check, absorb};

/// A directory of signed artifacts, at most `budget` bytes of them.
#[derive(Debug)]
pub struct LocalArtifacts {
    dir: PathBuf,
    budget: u64,
    /// Writes and evictions one at a time (loads need no lock: files only
    /// appear by rename).
    writing: Mutex<()>,
}

/// Bytes read from a kept file at a time.
const READ_BYTES: usize = 1 << 20;

impl LocalArtifacts {
    /// Keep artifacts in `dir` (created readable by this user only unless it
    /// exists), at most `budget` bytes of them. Partial files a killed
    /// worker left behind (ten minutes old) are removed.
    pub fn open(dir: impl Into<PathBuf>, budget: u64) -> io::Result<Self> {
        let dir = dir.into();
        if !dir.is_dir() {
            // Readable by this user only; a directory that exists already
            // (a volume mounted for it) is used as it is.
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(&dir)?;
        }
        // Partial files a killed writer left; not ones another worker
        // sharing the directory is writing now.
        let stale = SystemTime::now() - STALE_PARTIAL;
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified < stale);
            if is_partial(&name.to_string_lossy()) && old {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            dir,
            budget,
            writing: Mutex::default(),
        })
    }

    /// The artifact `name` (an object name, `artifact_name`) if it is kept
    /// here and its signature verifies. Blocking: call it off the runtime.
    pub fn load(&self, name: &str, verifier: &ArtifactVerifier) -> Option<Artifact> {
        let path = self.path(name)?;
        // Regular files only (not a link, nor a pipe a read would wait on).
        if !fs::symlink_metadata(&path).ok()?.is_file() {
            return None;
        }
        let mut file = File::open(&path).ok()?;
        let read = (|| {
            let size = file.metadata()?.len();
            let check = Check::seal();
            let sink = Sink::new((size as usize).saturating_sub(TAG_BYTES))?;
            let mut failed = None;
            let mut rest = (&mut file).take(size);
            let (check, sink, _) = absorb(check, sink, || {
                let mut chunk = Vec::with_capacity(READ_BYTES);
                match (&mut rest).take(READ_BYTES as u64).read_to_end(&mut chunk) {
                    Ok(0) => None,
                    Ok(_) => Some(chunk.into()),
                    Err(e) => {
                        failed = Some(e);
                        None
                    }
                }
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
            Ok((check, sink))
        })();
        let (check, sink) = match read {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(%name, error = %e, "could not read a kept artifact");
                return None;
            }
        };
        if check.signature_of(name, verifier).is_none() {
            tracing::warn!(%name, "removing a kept artifact whose signature does not verify");
            let _ = fs::remove_file(&path);
            return None;
        }
        match sink.finish() {
            Ok(artifact) => {
                // Recently used: evicted last.
                let _ = file.set_modified(SystemTime::now());
                Some(artifact)
            }
            Err(e) => {
                tracing::warn!(%name, error = %e, "could not seal a kept artifact's copy");
                None
            }
        }
    }

    /// Keep `signed`, a verified artifact, as `name`; then drop the least
    /// recently used files over the budget. Blocking: call it off the
    /// runtime. An artifact bigger than the whole budget is not kept.
    pub fn keep(&self, name: &str, signed: &SignedArtifact) -> io::Result<()> {
        let _writing = self.writing.lock().expect("local artifacts lock");
        let path = self
            .path(name)
            .ok_or_else(|| io::Error::other("not an artifact's name"))?;
        if path.exists() {
            return Ok(());
        }
        // A name of its own, created new: workers of one process, or of
        // several (containers all run as pid 1), may share the directory.
        let partial = tempfile::Builder::new()
            .prefix(&format!("{name}."))
            .suffix(PARTIAL)
            .tempfile_in(&self.dir)?;
        let (mut file, partial) = partial.into_parts();
        let partial = partial.keep().map_err(|e| e.error)?;
        let written = (|| {
            file.write_all(&signed.signature)?;
            let size = match &signed.artifact {
                Artifact::Bytes(bytes) => {
                    file.write_all(bytes)?;
                    bytes.len() as u64
                }
                Artifact::File(source) => copy_all(source, &mut file)?,
            };
            if size + TAG_BYTES as u64 > self.budget {
                return Err(io::Error::other("bigger than the cache's budget"));
            }
            fs::rename(&partial, &path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&partial);
            return written;
        }
        self.evict()
    }

    /// Where the artifact `name` is kept; `None` for a name that is not a
    /// plain file name (object names never are: digest, engine key).
    fn path(&self, name: &str) -> Option<PathBuf> {
        let plain = !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\']);
        plain.then(|| self.dir.join(name))
    }

    /// Remove the least recently used artifacts until the rest fit the
    /// budget. Only artifacts' files are counted and removed (the directory
    /// may hold other things); one gone meanwhile (another worker's
    /// eviction, a refused load) is skipped.
    fn evict(&self) -> io::Result<()> {
        let mut kept = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !name.contains(ARTIFACT_MARK) || is_partial(&name) {
                continue;
            }
            let metadata = match entry.metadata() {
                Ok(metadata) if metadata.is_file() => metadata,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let used = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            kept.push((used, metadata.len(), entry.path()));
        }
        kept.sort_by_key(|(used, _, _)| std::cmp::Reverse(*used));
        let mut total = 0;
        for (_, size, path) in kept {
            total += size;
            if total > self.budget {
                match fs::remove_file(path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// What every artifact's name holds (`artifact_name`).
const ARTIFACT_MARK: &str = ".sealed-v";

/// How a file being written ends.
const PARTIAL: &str = ".partial";

/// Partial files older than this are a killed writer's.
const STALE_PARTIAL: std::time::Duration = std::time::Duration::from_secs(600);

/// Whether `name` is an artifact's file being written.
fn is_partial(name: &str) -> bool {
    name.contains(ARTIFACT_MARK) && name.ends_with(PARTIAL)
}

/// Copy all of `source` (read by position: a memory file the engine may
/// have mapped, whose offset is not ours to move) to `sink`; the bytes
/// copied.
fn copy_all(source: &File, sink: &mut File) -> io::Result<u64> {
    let mut buffer = vec![0; READ_BYTES];
    let mut offset = 0;
    loop {
        let n = source.read_at(&mut buffer, offset)?;
        if n == 0 {
            return Ok(offset);
        }
        sink.write_all(&buffer[..n])?;
        offset += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Seek as _};

    use super::*;
    use crate::artifacts::ArtifactKey;

    fn key() -> ArtifactKey {
        ArtifactKey::from_secret(&"k".repeat(40)).unwrap()
    }

    fn signed(name: &str, content: &[u8]) -> SignedArtifact {
        let signature = key().sign(name, &blake3::hash(content));
        SignedArtifact {
            artifact: Artifact::Bytes(content.to_vec().into()),
            signature: signature.to_bytes().to_vec(),
        }
    }

    fn content(artifact: Artifact) -> Vec<u8> {
        match artifact {
            Artifact::Bytes(bytes) => bytes.to_vec(),
            Artifact::File(mut file) => {
                let mut bytes = Vec::new();
                file.rewind().unwrap();
                file.read_to_end(&mut bytes).unwrap();
                bytes
            }
        }
    }

    /// Bigger than one read, not a multiple of it.
    fn big(seed: u8) -> Vec<u8> {
        (0..READ_BYTES * 2 + 1234)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn a_kept_artifact_loads_back_verified() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalArtifacts::open(dir.path(), 1 << 30).unwrap();
        let bytes = big(1);
        assert!(local.load("a.sealed-v4-k", &key().verifier()).is_none());
        local
            .keep("a.sealed-v4-k", &signed("a.sealed-v4-k", &bytes))
            .unwrap();
        let loaded = local.load("a.sealed-v4-k", &key().verifier()).unwrap();
        assert_eq!(content(loaded), bytes);
        // Another key's verifier refuses it, and the file goes.
        let other = ArtifactKey::from_secret(&"o".repeat(40)).unwrap();
        assert!(local.load("a.sealed-v4-k", &other.verifier()).is_none());
        assert!(!dir.path().join("a.sealed-v4-k").exists());
    }

    #[test]
    fn a_changed_or_renamed_file_is_refused_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalArtifacts::open(dir.path(), 1 << 30).unwrap();
        let bytes = big(2);
        local
            .keep("a.sealed-v4-k", &signed("a.sealed-v4-k", &bytes))
            .unwrap();
        local
            .keep("b.sealed-v4-k", &signed("b.sealed-v4-k", &bytes))
            .unwrap();
        // One byte of native code changed.
        let path = dir.path().join("a.sealed-v4-k");
        let mut kept = fs::read(&path).unwrap();
        let last = kept.len() - 1;
        kept[last] ^= 1;
        fs::write(&path, kept).unwrap();
        assert!(local.load("a.sealed-v4-k", &key().verifier()).is_none());
        assert!(!path.exists());
        // Another artifact's file under this name: the signature covers
        // the name.
        fs::copy(
            dir.path().join("b.sealed-v4-k"),
            dir.path().join("c.sealed-v4-k"),
        )
        .unwrap();
        assert!(local.load("c.sealed-v4-k", &key().verifier()).is_none());
        assert!(local.load("b.sealed-v4-k", &key().verifier()).is_some());
        // Only regular files are read.
        #[cfg(unix)]
        {
            let link = dir.path().join("d.sealed-v4-k");
            std::os::unix::fs::symlink(dir.path().join("b.sealed-v4-k"), &link).unwrap();
            assert!(local.load("d.sealed-v4-k", &key().verifier()).is_none());
        }
        // Names that are not plain file names are never looked up.
        assert!(local.load("../b", &key().verifier()).is_none());
        assert!(local.keep("../x", &signed("../x", &bytes)).is_err());
    }

    #[test]
    fn the_least_recently_used_go_past_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let one = (big(0).len() + TAG_BYTES) as u64;
        let local = LocalArtifacts::open(dir.path(), 2 * one).unwrap();
        // Not an artifact: never counted nor removed.
        fs::write(dir.path().join("notes.txt"), vec![0; one as usize]).unwrap();
        let name = |n: &str| format!("{n}.sealed-v4-k");
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        for (n, short) in ["a", "b"].into_iter().enumerate() {
            local
                .keep(&name(short), &signed(&name(short), &big(n as u8)))
                .unwrap();
            let file = File::options()
                .write(true)
                .open(dir.path().join(name(short)))
                .unwrap();
            file.set_modified(old + std::time::Duration::from_secs(n as u64))
                .unwrap();
        }
        // "a" is used again: "b" is now the least recently used.
        assert!(local.load(&name("a"), &key().verifier()).is_some());
        local
            .keep(&name("c"), &signed(&name("c"), &big(3)))
            .unwrap();
        let kept = |short: &str| dir.path().join(name(short)).exists();
        assert_eq!((kept("a"), kept("b"), kept("c")), (true, false, true));
        // One bigger than the whole budget is not kept at all.
        let huge = vec![7; 2 * one as usize];
        assert!(local.keep(&name("d"), &signed(&name("d"), &huge)).is_err());
        assert!(!kept("d"));
        assert!(dir.path().join("notes.txt").exists());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            3,
            "no partial file left"
        );
    }

    #[test]
    fn partial_files_of_a_killed_worker_are_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join("a.sealed-v4-k.x1.partial");
        let fresh = dir.path().join("b.sealed-v4-k.x2.partial");
        for path in [&stale, &fresh] {
            fs::write(path, b"half").unwrap();
        }
        let old = SystemTime::now() - 2 * STALE_PARTIAL;
        File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(old)
            .unwrap();
        fs::write(dir.path().join("c.sealed-v4-k"), b"kept").unwrap();
        LocalArtifacts::open(dir.path(), 1 << 30).unwrap();
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        // Another worker may still be writing the fresh one.
        assert_eq!(names, ["b.sealed-v4-k.x2.partial", "c.sealed-v4-k"]);
    }
}
