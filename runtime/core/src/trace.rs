//! W3C Trace Context (`traceparent`) for invocations, and invocation ids.
//!
//! An API server takes the `traceparent` a client sent (or starts a trace
//! when there is none or it does not parse), and hands the invocation on
//! with its own span as the parent: in the `traceparent` NATS header of a
//! synchronous call, in the job of an asynchronous one. The worker runs the
//! invocation in a log span carrying the trace id and the invocation id,
//! and publishes the function's logs with both; an asynchronous
//! invocation's record keeps the trace id. One id, in every log line, ties
//! a call together across API servers, NATS and workers.
//!
//! Every invocation has an id ([`crate::wire::is_invocation_id`]: 32 hex
//! digits):
//! asynchronous ones their record's, synchronous ones one made by the API
//! server, answered in the `Nimbus-Invocation-Id` header.

use std::fmt;

/// The header (HTTP and NATS) that carries a [`TraceParent`].
pub const TRACEPARENT: &str = "traceparent";

/// A parsed `traceparent`: `00-<trace id>-<parent id>-<flags>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// 16 bytes, not all zero.
    pub trace_id: [u8; 16],
    /// The span that made this request: 8 bytes, not all zero.
    pub parent_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceParent {
    /// Read a `traceparent` value as the W3C recommendation says: version
    /// `00` exactly; a later version is read for its first four fields (and
    /// what follows them ignored); version `ff`, zero ids, upper-case hex or
    /// a wrong length are refused (`None`: start a new trace).
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        // Slicing below counts bytes: anything but ASCII is refused first.
        if !value.is_ascii() {
            return None;
        }
        let bytes = value.as_bytes();
        if bytes.len() < 55 || !lower_hex(&value[..2]) || &value[..2] == "ff" {
            return None;
        }
        let version_00 = &value[..2] == "00";
        if (version_00 && bytes.len() != 55)
            || (!version_00 && bytes.len() > 55 && bytes[55] != b'-')
        {
            return None;
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let trace_id = hex_array::<16>(&value[3..35])?;
        let parent_id = hex_array::<8>(&value[36..52])?;
        let flags = hex_array::<1>(&value[53..55])?[0];
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// A new trace whose first span is `span_id` (random bytes from the
    /// caller: this crate does no I/O), sampled.
    pub fn root(trace_id: [u8; 16], span_id: [u8; 8]) -> Self {
        Self {
            trace_id: nonzero(trace_id),
            parent_id: nonzero(span_id),
            flags: 1,
        }
    }

    /// The same trace, with `span_id` (random) as the parent of what comes
    /// next.
    pub fn child(&self, span_id: [u8; 8]) -> Self {
        Self {
            parent_id: nonzero(span_id),
            ..*self
        }
    }

    /// The trace id, 32 lower-case hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // On every call's path: written in place, no allocation.
        let mut text = *b"00-................................-................-..";
        hex_into(&self.trace_id, &mut text[3..35]);
        hex_into(&self.parent_id, &mut text[36..52]);
        hex_into(&[self.flags], &mut text[53..55]);
        f.write_str(std::str::from_utf8(&text).expect("hex digits are ASCII"))
    }
}

fn lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn hex(bytes: &[u8]) -> String {
    let mut text = vec![0; bytes.len() * 2];
    hex_into(bytes, &mut text);
    String::from_utf8(text).expect("hex digits are ASCII")
}

/// `bytes` as lower-case hex into `out` (twice as long).
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
}

fn hex_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !lower_hex(s) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

/// `bytes`, with the last one set if all were zero (an invalid id).
fn nonzero<const N: usize>(mut bytes: [u8; N]) -> [u8; N] {
    if bytes.iter().all(|&b| b == 0) {
        bytes[N - 1] = 1;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_w3c_example_reads_and_writes_back() {
        let parent = TraceParent::parse(EXAMPLE).unwrap();
        assert_eq!(parent.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent.flags, 1);
        assert_eq!(parent.to_string(), EXAMPLE);
        let child = parent.child([7; 8]);
        assert_eq!(
            child.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0707070707070707-01"
        );
    }

    #[test]
    fn malformed_values_start_a_new_trace() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "é0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-0",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
        // A later version may add fields after a dash.
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-whatever";
        assert!(TraceParent::parse(future).is_some());
    }

    #[test]
    fn ids_are_never_all_zero() {
        let root = TraceParent::root([0; 16], [0; 8]);
        assert_eq!(TraceParent::parse(&root.to_string()), Some(root));
    }
}
