//! Turning uploaded bytes into a runnable module: parse, validate, check the
//! imports and the ABI, and pre-link it once so each invocation only
//! instantiates.

use sha2::{Digest as _, Sha256};
use std::borrow::Cow;
use wasmtime::{ExternType, FuncType, InstancePre, ValType};

use crate::component::ComponentPre;
use crate::{CompileError, Host};

/// WASI preview 1, the only import module a function may use.
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";
pub use crate::http_import::HTTP_MODULE;
pub use crate::kv_import::KV_MODULE;

/// How the host talks to a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Abi {
    /// A WASI command: `_start`, JSON on stdin, JSON on stdout.
    Command,
    /// A `handle` export taking and returning numbers.
    Scalar {
        /// Parameter types, in order.
        params: Vec<Scalar>,
        /// Result types, in order.
        results: Vec<Scalar>,
    },
    /// A `wasi:cli/command` component: `wasi:cli/run`, JSON on stdin, JSON
    /// on stdout, like [`Abi::Command`].
    CliComponent,
    /// A `wasi:http/proxy` component: `wasi:http/incoming-handler` gets a
    /// request and writes a response.
    HttpComponent,
}

impl Abi {
    /// Whether this is a component's world rather than a core module's ABI.
    pub fn is_component(&self) -> bool {
        matches!(self, Self::CliComponent | Self::HttpComponent)
    }
}

/// A numeric WebAssembly value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    /// `i32`
    I32,
    /// `i64`
    I64,
    /// `f32`
    F32,
    /// `f64`
    F64,
}

impl Scalar {
    fn from_val_type(ty: &ValType) -> Option<Self> {
        match ty {
            ValType::I32 => Some(Self::I32),
            ValType::I64 => Some(Self::I64),
            ValType::F32 => Some(Self::F32),
            ValType::F64 => Some(Self::F64),
            _ => None,
        }
    }
}

/// A validated, compiled and pre-linked module or component.
pub struct CompiledModule {
    pub(crate) digest: String,
    pub(crate) abi: Abi,
    pub(crate) code: Code,
}

/// The compiled code, pre-linked.
pub(crate) enum Code {
    Core {
        module: wasmtime::Module,
        pre: InstancePre<Host>,
        /// Whether it imports anything (WASI functions): a module that does
        /// not runs without a WASI context, which costs a dozen allocations
        /// a call.
        imports_wasi: bool,
        /// How an invocation starts it.
        entry: Entry,
    },
    Component {
        component: wasmtime::component::Component,
        pre: ComponentPre,
    },
}

/// How an invocation of a core module starts.
pub(crate) enum Entry {
    /// `_start` (a WASI command) or `handle` (the scalar ABI).
    Start,
    /// A script module (see `nimbus_core::script`), whose `module` and
    /// `pre` are its interpreter's.
    Script {
        /// What the interpreter reads on stdin before the input: the
        /// script, length first.
        prefix: bytes::Bytes,
        /// The interpreter's digest.
        interpreter: String,
        /// The interpreter exports `nimbus-js-prepare` and `nimbus-js-run`,
        /// called in turn (older ones only `_start`); only then can the
        /// script be prepared (`tier_up.rs`).
        phases: bool,
    },
    /// A prepared script: its own snapshot, taken right after its
    /// interpreter's `nimbus-js-prepare` (`tier_up.rs`).
    Prepared(Prepared),
}

/// What a prepared script's invocation needs besides its code.
pub(crate) struct Prepared {
    /// Fuel `nimbus-js-prepare` burned for the snapshot, charged to every
    /// invocation as if it ran again.
    pub(crate) fuel: u64,
    /// Linear memory the snapshot starts with.
    pub(crate) memory_bytes: u64,
    /// The script module it was prepared from, run instead under limits
    /// that the preparation alone would exceed.
    pub(crate) script: std::sync::Arc<CompiledModule>,
}

impl Prepared {
    /// Whether `limits` leave room for the preparation: enough fuel for it,
    /// and memory for the snapshot.
    pub(crate) fn fits(&self, limits: &nimbus_core::Limits) -> bool {
        limits.fuel >= self.fuel && limits.memory_bytes >= self.memory_bytes
    }
}

impl CompiledModule {
    /// sha256 of the module's binary form, lowercase hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Bytes of the loaded module image: machine code, metadata and the
    /// data segments its memory is initialised from.
    pub fn image_bytes(&self) -> u64 {
        let range = match &self.code {
            // The interpreter's image is counted in its own cache entry.
            Code::Core {
                entry: Entry::Script { prefix, .. },
                ..
            } => return prefix.len() as u64,
            Code::Core { module, .. } => module.image_range(),
            Code::Component { component, .. } => component.image_range(),
        };
        (range.end.addr() - range.start.addr()) as u64
    }

    /// The ABI the module was recognised as.
    pub fn abi(&self) -> &Abi {
        &self.abi
    }

    /// For a script module whose interpreter can prepare it
    /// ([`Engine::prepare_script`](crate::Engine::prepare_script)): the
    /// interpreter's digest.
    pub fn preparable_on(&self) -> Option<&str> {
        match &self.code {
            Code::Core {
                entry:
                    Entry::Script {
                        interpreter,
                        phases: true,
                        ..
                    },
                ..
            } => Some(interpreter),
            _ => None,
        }
    }

    /// Whether this is a prepared script (`tier_up.rs`).
    pub fn is_prepared(&self) -> bool {
        self.prepared().is_some()
    }

    /// For a prepared script: the fuel its preparation burned, charged to
    /// every call, and the linear memory its snapshot starts with.
    pub fn preparation(&self) -> Option<(u64, u64)> {
        self.prepared()
            .map(|prepared| (prepared.fuel, prepared.memory_bytes))
    }

    /// Whether a call under `limits` runs prepared (else as its script).
    pub fn runs_prepared(&self, limits: &nimbus_core::Limits) -> bool {
        self.prepared()
            .is_some_and(|prepared| prepared.fits(limits))
    }

    fn prepared(&self) -> Option<&Prepared> {
        match &self.code {
            Code::Core {
                entry: Entry::Prepared(prepared),
                ..
            } => Some(prepared),
            _ => None,
        }
    }
}

impl std::fmt::Debug for CompiledModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledModule")
            .field("digest", &self.digest)
            .field("abi", &self.abi)
            .finish_non_exhaustive()
    }
}

/// sha256 of `bytes`, lowercase hex: the content address of a module.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Binary wasm (a module or a component) from either binary wasm or WAT
/// text, with the parser's own error when it is neither.
pub fn to_binary(source: &[u8]) -> Result<Cow<'_, [u8]>, CompileError> {
    if source.starts_with(b"\0asm") {
        return Ok(Cow::Borrowed(source));
    }
    let text = std::str::from_utf8(source).map_err(|_| {
        CompileError::NotWasm(
            "neither a WebAssembly binary (no \\0asm header) nor UTF-8 WAT text".into(),
        )
    })?;
    wat::parse_str(text)
        .map(Cow::Owned)
        .map_err(|e| CompileError::NotWasm(format!("invalid WAT: {e}")))
}

/// Every import must be a `wasi_snapshot_preview1` function, or one of
/// `nimbus_http`'s (outbound HTTP, `http_import.rs`) or `nimbus_kv`'s
/// (key-value state, `kv_import.rs`) with its type.
pub(crate) fn check_imports(module: &wasmtime::Module) -> Result<(), CompileError> {
    for import in module.imports() {
        let allowed = match (import.module(), import.ty()) {
            (WASI_MODULE, ExternType::Func(_)) => true,
            (HTTP_MODULE, ExternType::Func(ty)) => {
                crate::http_import::is_import(import.name(), &ty)
            }
            (KV_MODULE, ExternType::Func(ty)) => crate::kv_import::is_import(import.name(), &ty),
            _ => false,
        };
        if !allowed {
            return Err(CompileError::ForbiddenImport(format!(
                "`{}::{}` ({}); only `{WASI_MODULE}` functions, `{HTTP_MODULE}` \
                 `send(i32, i32) -> i32` and `read(i32, i32) -> i32`, and `{KV_MODULE}` \
                 `call(i32, i32) -> i32` and `read(i32, i32) -> i32` can be imported",
                import.module(),
                import.name(),
                extern_kind(&import.ty()),
            )));
        }
    }
    Ok(())
}

fn extern_kind(ty: &ExternType) -> &'static str {
    match ty {
        ExternType::Func(_) => "function",
        ExternType::Global(_) => "global",
        ExternType::Table(_) => "table",
        ExternType::Memory(_) => "memory",
        ExternType::Tag(_) => "tag",
    }
}

/// `_start` wins; otherwise a `handle` export whose params and results are all numbers.
pub(crate) fn detect_abi(module: &wasmtime::Module) -> Result<Abi, CompileError> {
    let func = |name: &str| match module.get_export(name) {
        Some(ExternType::Func(f)) => Some(f),
        _ => None,
    };
    if let Some(start) = func("_start") {
        if start.params().len() != 0 || start.results().len() != 0 {
            return Err(CompileError::NoEntryPoint(
                "`_start` must take no parameters and return nothing".into(),
            ));
        }
        return Ok(Abi::Command);
    }
    let Some(handle) = func("handle") else {
        return Err(CompileError::NoEntryPoint(
            "the module exports neither `_start` (WASI command) nor a `handle` function".into(),
        ));
    };
    scalar_abi(&handle)
}

fn scalar_abi(ty: &FuncType) -> Result<Abi, CompileError> {
    let numeric = |types: &mut dyn Iterator<Item = ValType>| {
        types
            .map(|t| Scalar::from_val_type(&t))
            .collect::<Option<Vec<_>>>()
    };
    let bad = || {
        CompileError::NoEntryPoint(format!(
            "`handle` must take and return only numbers (i32, i64, f32, f64), and return at least one; it is {ty}"
        ))
    };
    let params = numeric(&mut ty.params()).ok_or_else(bad)?;
    let results = numeric(&mut ty.results()).ok_or_else(bad)?;
    if results.is_empty() {
        return Err(bad());
    }
    Ok(Abi::Scalar { params, results })
}
