//! Script modules: a function that is a script for an interpreter module
//! rather than code of its own (a JavaScript function is QuickJS bytecode
//! for the platform's one QuickJS interpreter).
//!
//! A script module is a valid WebAssembly module made only of two custom
//! sections, so it is stored, digested, downloaded and re-uploaded like any
//! module:
//! - `nimbus:interpreter`: the digest (sha256, lowercase hex) of the
//!   interpreter, a WASI command module;
//! - `nimbus:script`: the script, opaque to everything but the interpreter.
//!
//! The engine runs the interpreter with the script ahead of the input on
//! stdin: `[script length: u32 little-endian][script][input]`. Nothing per
//! function is compiled to machine code.

/// Custom section naming the interpreter's digest.
pub const INTERPRETER_SECTION: &str = "nimbus:interpreter";
/// Custom section holding the script.
pub const SCRIPT_SECTION: &str = "nimbus:script";

const PREAMBLE: [u8; 8] = *b"\0asm\x01\0\0\0";
const CUSTOM_SECTION: u8 = 0;

/// A script module, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptModule<'a> {
    /// The interpreter's digest.
    pub interpreter: &'a str,
    /// The script.
    pub script: &'a [u8],
}

impl<'a> ScriptModule<'a> {
    /// The module's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = PREAMBLE.to_vec();
        for (name, data) in [
            (INTERPRETER_SECTION, self.interpreter.as_bytes()),
            (SCRIPT_SECTION, self.script),
        ] {
            let mut payload = Vec::with_capacity(name.len() + data.len() + 5);
            leb128(&mut payload, name.len());
            payload.extend_from_slice(name.as_bytes());
            payload.extend_from_slice(data);
            out.push(CUSTOM_SECTION);
            leb128(&mut out, payload.len());
            out.extend_from_slice(&payload);
        }
        out
    }

    /// Read `module` as a script module: `None` when it is not one (no
    /// `nimbus:interpreter` section, or not a well-formed module at all), an
    /// error when it has the section but is not exactly the two above.
    pub fn decode(module: &'a [u8]) -> Result<Option<Self>, String> {
        let Some(mut rest) = module.strip_prefix(&PREAMBLE[..]) else {
            return Ok(None);
        };
        let (mut interpreter, mut script, mut other) = (None, None, false);
        while let Some((&id, after_id)) = rest.split_first() {
            // Malformed: not a script module; wasmtime says what is wrong.
            let Some((size, after_size)) = read_leb128(after_id) else {
                return Ok(None);
            };
            let Some(section) = after_size.get(..size) else {
                return Ok(None);
            };
            rest = &after_size[size..];
            if id != CUSTOM_SECTION {
                other = true;
                continue;
            }
            let Some((name_len, after_len)) = read_leb128(section) else {
                return Ok(None);
            };
            let Some(name) = after_len.get(..name_len) else {
                return Ok(None);
            };
            let data = &after_len[name_len..];
            match name {
                n if n == INTERPRETER_SECTION.as_bytes() => interpreter = Some(data),
                n if n == SCRIPT_SECTION.as_bytes() => script = Some(data),
                _ => other = true,
            }
        }
        let Some(interpreter) = interpreter else {
            return Ok(None);
        };
        if other {
            return Err(format!(
                "a module with a `{INTERPRETER_SECTION}` section must hold only it and `{SCRIPT_SECTION}`"
            ));
        }
        let interpreter = std::str::from_utf8(interpreter)
            .ok()
            .filter(|d| d.len() == 64 && d.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .ok_or_else(|| format!("`{INTERPRETER_SECTION}` must be a sha256 digest in hex"))?;
        let script = script.ok_or_else(|| format!("no `{SCRIPT_SECTION}` section"))?;
        Ok(Some(Self {
            interpreter,
            script,
        }))
    }

    /// What the interpreter reads on stdin before the input.
    pub fn stdin_prefix(&self) -> Vec<u8> {
        let len = u32::try_from(self.script.len()).expect("scripts are far below 4 GiB");
        let mut prefix = Vec::with_capacity(4 + self.script.len());
        prefix.extend_from_slice(&len.to_le_bytes());
        prefix.extend_from_slice(self.script);
        prefix
    }
}

fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn read_leb128(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let mut value = 0usize;
    for (i, &byte) in bytes.iter().enumerate().take(5) {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_script_module_reads_back_as_written() {
        let script = vec![7u8; 300];
        let module = ScriptModule {
            interpreter: DIGEST,
            script: &script,
        };
        let bytes = module.encode();
        assert_eq!(ScriptModule::decode(&bytes), Ok(Some(module.clone())));
        let prefix = module.stdin_prefix();
        assert_eq!(&prefix[..4], &300u32.to_le_bytes());
        assert_eq!(&prefix[4..], &script[..]);
    }

    #[test]
    fn ordinary_modules_are_not_scripts() {
        // (module (func)) and a module with only an unrelated custom section.
        let module = b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x03\x02\x01\0\x0a\x04\x01\x02\0\x0b";
        assert_eq!(ScriptModule::decode(module), Ok(None));
        let named = b"\0asm\x01\0\0\0\0\x05\x04name";
        assert_eq!(ScriptModule::decode(named), Ok(None));
        assert_eq!(ScriptModule::decode(b"(module)"), Ok(None));
    }

    #[test]
    fn a_script_module_with_anything_else_is_refused() {
        let mut bytes = ScriptModule {
            interpreter: DIGEST,
            script: b"x",
        }
        .encode();
        bytes.extend_from_slice(b"\x01\x04\x01\x60\0\0");
        assert!(ScriptModule::decode(&bytes).unwrap_err().contains("only"));
        let bad_digest = ScriptModule {
            interpreter: "not-a-digest",
            script: b"x",
        }
        .encode();
        assert!(
            ScriptModule::decode(&bad_digest)
                .unwrap_err()
                .contains("digest")
        );
        let truncated = &ScriptModule {
            interpreter: DIGEST,
            script: b"xyz",
        }
        .encode()[..20];
        assert_eq!(ScriptModule::decode(truncated), Ok(None));
    }
}
