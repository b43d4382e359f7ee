//! Dropping the empty data segments a snapshot of a snapshot carries.
//!
//! wasmtime-wizer turns every active data segment of the module it
//! snapshots into an empty passive one (indices must not move, in case code
//! refers to them), then adds the snapshot's own segments. The interpreter
//! is already a snapshot, with thousands of segments, so a prepared script
//! (`tier_up.rs`) would carry thousands of empty passive segments, and
//! wasmtime walks every passive segment at each instantiation: measured
//! here, that made a prepared call slower than the unprepared one. When no
//! code refers to a data segment by index (`memory.init`, `data.drop`,
//! `array.new_data`, `array.init_data`: the shim has none of them), the
//! empty passive segments are removed.

use std::ops::Range;

use wasmparser::{Operator, Parser, Payload};

/// `wasm` without its empty passive data segments, or `None` when it has
/// none, or when code refers to data segments (or does not parse).
pub(crate) fn without_spent_segments(wasm: &[u8]) -> Option<Vec<u8>> {
    let mut sections: Vec<(u8, Range<usize>)> = Vec::new();
    let mut kept = Vec::new();
    let mut kept_count = 0u32;
    let mut dropped = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.ok()?;
        match &payload {
            Payload::CodeSectionEntry(body) => {
                let mut operators = body.get_operators_reader().ok()?;
                while !operators.eof() {
                    if let Operator::MemoryInit { .. }
                    | Operator::DataDrop { .. }
                    | Operator::ArrayNewData { .. }
                    | Operator::ArrayInitData { .. } = operators.read().ok()?
                    {
                        return None;
                    }
                }
            }
            Payload::DataSection(reader) => {
                for data in reader.clone() {
                    let data = data.ok()?;
                    if matches!(data.kind, wasmparser::DataKind::Passive) && data.data.is_empty() {
                        dropped += 1;
                    } else {
                        kept.extend_from_slice(&wasm[data.range.clone()]);
                        kept_count += 1;
                    }
                }
            }
            _ => {}
        }
        if let Some((id, range)) = payload.as_section() {
            sections.push((id, range));
        }
    }
    if dropped == 0 {
        return None;
    }
    let mut out = wasm[..8].to_vec();
    for (id, range) in sections {
        let contents = match id {
            // The data count section.
            12 => leb128(kept_count),
            11 => {
                let mut contents = leb128(kept_count);
                contents.extend_from_slice(&kept);
                contents
            }
            _ => wasm[range].to_vec(),
        };
        out.push(id);
        out.extend(leb128(u32::try_from(contents.len()).ok()?));
        out.extend(contents);
    }
    Some(out)
}

fn leb128(mut value: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(5);
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::without_spent_segments;

    fn data_count(wasm: &[u8]) -> usize {
        Parser::new(0)
            .parse_all(wasm)
            .filter_map(|p| match p.unwrap() {
                wasmparser::Payload::DataSection(reader) => Some(reader.count() as usize),
                _ => None,
            })
            .sum()
    }

    use wasmparser::Parser;

    #[test]
    fn empty_passive_segments_go_and_the_rest_stays() {
        let wasm = wat::parse_str(
            r#"(module
                (memory (export "memory") 1)
                (data "")
                (data (i32.const 16) "kept")
                (data "")
                (data "passive, not empty")
                (func (export "f") (result i32) (i32.load (i32.const 16))))"#,
        )
        .unwrap();
        let trimmed = without_spent_segments(&wasm).expect("two to drop");
        wasmparser::validate(&trimmed).expect("still valid");
        assert_eq!(data_count(&wasm), 4);
        assert_eq!(data_count(&trimmed), 2);
        assert!(trimmed.windows(b"kept".len()).any(|w| w == b"kept"));
        // Nothing to drop: nothing to do.
        assert_eq!(without_spent_segments(&trimmed), None);
    }

    #[test]
    fn segments_code_refers_to_stay() {
        let wasm = wat::parse_str(
            r#"(module
                (memory 1)
                (data "")
                (data $d "x")
                (func (data.drop $d)))"#,
        )
        .unwrap();
        assert_eq!(without_spent_segments(&wasm), None);
    }
}
