//! How an artifact is stored: LZ4-compressed (the standard frame format,
//! independent 256 KiB blocks, no checksums: the signature covers the
//! content), behind its signature. Native code compresses about 2x (the
//! Python example: 40.6 MB -> 21.1 MB), and LZ4 decodes at ~1.5 GB/s here
//! against ~320 MB/s for reading chunks from JetStream: a fetched artifact
//! arrives in about half the time, and costs half the disk (times the
//! stream's replicas) and half the network between hosts. zstd compressed
//! more (15.8 MB) but decoded at ~500 MB/s, slower than the wire it saves.
//!
//! The signature is over the artifact itself, not its compressed form, so a
//! worker's own copy (`local_artifacts.rs`) is kept uncompressed and loads
//! without decoding. A fetched artifact is decoded as its chunks arrive,
//! before the signature can be checked (which is what refuses a cut or
//! changed one): the decoded size is bounded ([`decode_limit`]), so a
//! forged object cannot make a worker write much more than its own size
//! before it is refused.

use std::io::{self, Read, Write};

use lz4_flex::frame::{BlockSize, FrameDecoder, FrameEncoder, FrameInfo};

/// The most an artifact stored in `stored` bytes may decode to: 16 times
/// that, plus 16 MiB (native code compresses ~2x, a small artifact's page
/// padding more), and never more than 1 GiB (the Python example's artifact
/// is 40.6 MB). LZ4 can expand ~250x: without a bound, a forged object of
/// a few MB could fill a worker's memory before its signature fails.
pub(crate) fn decode_limit(stored: usize) -> u64 {
    (stored as u64)
        .saturating_mul(16)
        .saturating_add(16 << 20)
        .min(1 << 30)
}

/// Bytes decoded at a time: one block (the most the decoder hands out at
/// once).
const BLOCK: BlockSize = BlockSize::Max256KB;
const DECODE_BYTES: usize = 256 << 10;

/// `prefix`, then `artifact` compressed.
pub(crate) fn encode(prefix: &[u8], artifact: &[u8]) -> io::Result<Vec<u8>> {
    let mut info = FrameInfo::new();
    info.block_size = BLOCK;
    info.content_size = Some(artifact.len() as u64);
    let mut stored = Vec::with_capacity(prefix.len() + artifact.len() / 2);
    stored.extend_from_slice(prefix);
    let mut encoder = FrameEncoder::with_frame_info(info, stored);
    encoder.write_all(artifact)?;
    encoder.finish().map_err(io::Error::other)
}

/// Decode the compressed artifact `stored` reads, handing each piece to
/// `content`: the bytes decoded. Refuses ([`Decoded::Invalid`]) anything
/// but one frame and more than `limit` bytes ([`decode_limit`]); a frame
/// cut at a block's end decodes, short (the signature refuses it). An error
/// is `content`'s. With `beside`, `content` runs on a thread of its own
/// while the next pieces are decoded: for a big artifact decoding (~27 ms
/// for the Python example's) and hashing and writing (~30 ms) take about
/// as long; a small one is decoded on the calling thread, with no thread
/// to start.
pub(crate) fn decode(
    stored: impl Read,
    limit: u64,
    beside: bool,
    mut content: impl FnMut(&[u8]) -> io::Result<()> + Send,
) -> io::Result<Decoded> {
    if !beside {
        return decode_into_buffers(stored, limit, |buffer, read| {
            content(&buffer[..read])?;
            Ok(buffer)
        });
    }
    let (full, to_consume) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(2);
    let (spare, spares) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let consumer = scope.spawn(move || {
            for (buffer, read) in to_consume {
                content(&buffer[..read])?;
                let _ = spare.send(buffer);
            }
            Ok::<_, io::Error>(())
        });
        let decoded = decode_into_buffers(stored, limit, |buffer, read| {
            full.send((buffer, read))
                .map_err(|_| io::Error::other("stopped writing an artifact"))?;
            Ok(spares.try_recv().unwrap_or_else(|_| vec![0; DECODE_BYTES]))
        });
        drop(full);
        let consumed = consumer.join().expect("an artifact's writer panicked");
        // The writer's error explains a decoder that could not hand on.
        consumed?;
        decoded
    })
}

/// The decoding loop: each buffer filled (with how many bytes) is handed to
/// `exchange`, which gives back one to fill next.
fn decode_into_buffers(
    stored: impl Read,
    limit: u64,
    mut exchange: impl FnMut(Vec<u8>, usize) -> io::Result<Vec<u8>>,
) -> io::Result<Decoded> {
    let mut decoder = FrameDecoder::new(stored);
    let mut buffer = vec![0; DECODE_BYTES];
    let mut decoded = 0;
    loop {
        // (What it reads from, [`Chunks`], never fails.)
        let read = match decoder.read(&mut buffer) {
            // The decoder reads no further than the frame's end.
            Ok(0) if decoder.get_mut().read(&mut [0])? != 0 => {
                return Ok(Decoded::Invalid("bytes after the frame".into()));
            }
            Ok(0) => return Ok(Decoded::Whole(decoded)),
            Ok(read) => read,
            Err(e) => return Ok(Decoded::Invalid(e.to_string())),
        };
        decoded += read as u64;
        if decoded > limit {
            return Ok(Decoded::Invalid(format!(
                "decodes to more than {limit} bytes"
            )));
        }
        buffer = exchange(buffer, read)?;
    }
}

/// What [`decode`] made of a stored artifact.
#[derive(Debug, PartialEq)]
pub(crate) enum Decoded {
    /// One whole frame, of this many bytes.
    Whole(u64),
    /// Not an artifact this platform stored: why.
    Invalid(String),
}

/// The bytes of a stored object, chunk by chunk as `next` yields them,
/// read as a stream (what [`decode`] reads); `skip` leading bytes (the
/// signature) go to `skipped` instead. Counts what it was given.
pub(crate) struct Chunks<'a, N> {
    next: N,
    skip: usize,
    skipped: &'a mut Vec<u8>,
    pending: bytes::Bytes,
    pub(crate) size: usize,
}

impl<'a, N: FnMut() -> Option<bytes::Bytes>> Chunks<'a, N> {
    pub(crate) fn new(next: N, skip: usize, skipped: &'a mut Vec<u8>) -> Self {
        Self {
            next,
            skip,
            skipped,
            pending: bytes::Bytes::new(),
            size: 0,
        }
    }
}

impl<N: FnMut() -> Option<bytes::Bytes>> Read for Chunks<'_, N> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        while self.pending.is_empty() {
            let Some(mut chunk) = (self.next)() else {
                return Ok(0);
            };
            self.size += chunk.len();
            let skipped = (self.skip - self.skipped.len()).min(chunk.len());
            self.skipped.extend_from_slice(&chunk.split_to(skipped));
            self.pending = chunk;
        }
        let read = buffer.len().min(self.pending.len());
        buffer[..read].copy_from_slice(&self.pending.split_to(read));
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact() -> Vec<u8> {
        (0..600_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    /// `stored` cut into chunks of `size` bytes.
    fn chunked(stored: &[u8], size: usize) -> impl FnMut() -> Option<bytes::Bytes> {
        let mut chunks: Vec<bytes::Bytes> = stored
            .chunks(size)
            .map(bytes::Bytes::copy_from_slice)
            .collect();
        chunks.reverse();
        move || chunks.pop()
    }

    fn decoded(stored: &[u8], chunk: usize) -> Result<(Vec<u8>, Vec<u8>, usize), String> {
        let mut tag = Vec::new();
        let mut reader = Chunks::new(chunked(stored, chunk), 3, &mut tag);
        let mut content = Vec::new();
        let decoded = decode(&mut reader, 1 << 30, chunk.is_multiple_of(2), |bytes| {
            content.extend_from_slice(bytes);
            Ok(())
        })
        .unwrap();
        let size = reader.size;
        match decoded {
            Decoded::Whole(length) => assert_eq!(length, content.len() as u64),
            Decoded::Invalid(why) => return Err(why),
        }
        Ok((tag, content, size))
    }

    #[test]
    fn an_artifact_decodes_to_itself_whatever_the_chunks() {
        let artifact = artifact();
        let stored = encode(b"sig", &artifact).unwrap();
        assert!(stored.len() < artifact.len() / 2, "{} bytes", stored.len());
        for chunk in [1, 2, 7, 4096, 1 << 20] {
            let (tag, content, size) = decoded(&stored, chunk).unwrap();
            assert_eq!(tag, b"sig");
            assert!(content == artifact, "chunks of {chunk}");
            assert_eq!(size, stored.len());
        }
        let empty = encode(b"sig", b"").unwrap();
        assert_eq!(decoded(&empty, 5).unwrap().1, b"");
    }

    #[test]
    fn cut_changed_or_extended_frames_are_refused() {
        let artifact = artifact();
        let stored = encode(b"sig", &artifact).unwrap();
        // A frame cut at a block's end decodes, short: its signature, over
        // the whole artifact, fails then (`artifacts.rs`). (Without its end
        // mark, the last 4 bytes, it is still the whole artifact.)
        for cut in [5, 6, stored.len() / 2, stored.len() - 10] {
            let decoded = decoded(&stored[..stored.len() - cut], 4096);
            assert!(
                decoded.is_err() || decoded.unwrap().1 != artifact,
                "cut {cut}"
            );
        }
        let mut extended = stored.clone();
        extended.extend_from_slice(b"more bytes than a frame header");
        assert!(decoded(&extended, 4096).is_err());
        // The frame's magic number, and its declared size (after the
        // magic and two flag bytes).
        for at in [3, 3 + 4 + 2] {
            let mut changed = stored.clone();
            changed[at] ^= 1;
            assert!(decoded(&changed, 4096).is_err(), "byte {at}");
        }
    }

    #[test]
    fn an_object_that_is_not_a_frame_is_read_to_its_end_and_marked() {
        use crate::objects::{Check, absorb};
        // The layout before compression: signature, then plain code.
        let stored: Vec<u8> = [vec![7; crate::artifacts::TAG_BYTES], artifact()].concat();
        let (check, written, size) = absorb(
            Check::compressed_seal(stored.len()),
            Vec::new(),
            chunked(&stored, 1000),
        )
        .unwrap();
        assert_eq!(size, stored.len());
        assert!(written.is_empty());
        assert!(matches!(
            check,
            Check::Seal {
                undecodable: Some(_),
                ..
            }
        ));
        // And a frame is decoded to what is written.
        let artifact = artifact();
        let stored = encode(&[7; crate::artifacts::TAG_BYTES], &artifact).unwrap();
        let (check, written, size) = absorb(
            Check::compressed_seal(stored.len()),
            Vec::new(),
            chunked(&stored, 1000),
        )
        .unwrap();
        assert_eq!((size, written == artifact), (stored.len(), true));
        assert!(matches!(
            check,
            Check::Seal {
                undecodable: None,
                ..
            }
        ));
    }

    #[test]
    fn the_bound_grows_with_the_object_up_to_1_gib() {
        assert_eq!(decode_limit(0), 16 << 20);
        assert_eq!(decode_limit(21 << 20), (21 * 16 + 16) << 20);
        assert_eq!(decode_limit(100 << 20), 1 << 30);
    }

    #[test]
    fn decoding_stops_past_the_bound() {
        // Zeros compress ~250x: a forged object's bomb, against a bound of
        // 4 MiB.
        let limit = 4 << 20;
        let bomb = encode(b"sig", &vec![0; 16 << 20]).unwrap();
        assert!(bomb.len() < 100 << 10, "{} bytes", bomb.len());
        let mut seen = 0u64;
        let mut tag = Vec::new();
        let chunks = Chunks::new(chunked(&bomb, 1 << 12), 3, &mut tag);
        let refused = decode(chunks, limit, true, |bytes| {
            seen += bytes.len() as u64;
            Ok(())
        });
        assert!(matches!(refused, Ok(Decoded::Invalid(_))), "{refused:?}");
        assert!(seen <= limit, "{seen} bytes handed on");
    }
}
