//! Where a fetched artifact is written while its chunks arrive. On Linux, a
//! memory file (memfd), sealed against any change once the artifact's seal
//! verifies, which the engine maps as it would a file on disk: the native
//! code is not copied again into fresh memory, and only the pages an
//! invocation uses are ever touched. Elsewhere, or when the kernel refuses a
//! memory file, plain memory.

use std::fs::File;
use std::io::{self, Write};

/// A verified artifact.
#[derive(Debug)]
pub enum Artifact {
    /// A sealed memory file holding the artifact, from its first byte.
    File(File),
    /// The artifact in memory.
    Bytes(bytes::Bytes),
}

impl Artifact {
    /// Another handle on the same artifact (no copy).
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(match self {
            Self::File(file) => Self::File(file.try_clone()?),
            Self::Bytes(bytes) => Self::Bytes(bytes.clone()),
        })
    }
}

/// What an artifact's content is written to while it arrives.
pub(crate) enum Sink {
    File(File),
    Memory(Vec<u8>),
}

impl Sink {
    /// A sink for an artifact of about `size` bytes.
    pub(crate) fn new(size: usize) -> io::Result<Self> {
        #[cfg(target_os = "linux")]
        if let Ok(file) = memory_file() {
            return Ok(Self::File(file));
        }
        Ok(Self::Memory(Vec::with_capacity(size)))
    }

    /// The artifact written, made unchangeable.
    pub(crate) fn finish(self) -> io::Result<Artifact> {
        match self {
            Self::File(file) => {
                #[cfg(target_os = "linux")]
                seal(&file)?;
                Ok(Artifact::File(file))
            }
            Self::Memory(bytes) => Ok(Artifact::Bytes(bytes.into())),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Self::File(file) => file.write(bytes),
            Self::Memory(memory) => memory.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(target_os = "linux")]
fn memory_file() -> io::Result<File> {
    use rustix::fs::{MemfdFlags, memfd_create};
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    // Since Linux 6.3 a memory file can be made non-executable (and is by
    // default under `vm.memfd_noexec`); this one holds code to run. Older
    // kernels do not know the flag, and never forbid it.
    let fd = memfd_create("nimbus-artifact", flags | MemfdFlags::EXEC)
        .or_else(|_| memfd_create("nimbus-artifact", flags))?;
    Ok(File::from(fd))
}

/// No more writes, no resizing, no removing these seals: what the engine
/// maps stays what was verified.
#[cfg(target_os = "linux")]
fn seal(file: &File) -> io::Result<()> {
    use rustix::fs::{SealFlags, fcntl_add_seals};
    fcntl_add_seals(
        file,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
    )?;
    Ok(())
}
