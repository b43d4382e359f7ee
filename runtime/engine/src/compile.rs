//! The upload-time half of the engine: compile or load a module once, keep it
//! in the module cache, and refuse up front what could never run.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use nimbus_core::Limits;
use nimbus_core::script::ScriptModule;

use crate::module::{Code, Entry};
use crate::{
    Abi, CodeCacheStats, CompileError, CompiledModule, Engine, compile_budget, compile_process,
    component, digest, features, module, to_binary,
};

/// How an engine got its modules: compiled with Cranelift, or loaded from
/// precompiled artifacts (cache hits count as neither).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadStats {
    /// Modules and components compiled.
    pub compiled: u64,
    /// Artifacts loaded.
    pub loaded: u64,
    /// Of those, artifacts mapped from a file rather than copied into memory.
    pub mapped: u64,
}

/// Freshly compiled or loaded code, before it is checked and pre-linked.
enum Compiled {
    Core(wasmtime::Module),
    Component(wasmtime::component::Component),
}

/// Bytes in a WebAssembly page.
const WASM_PAGE_BYTES: u64 = 64 << 10;

impl Engine {
    /// Validate and compile `source` (a core module or a component, wasm
    /// binary or WAT text). Returns the module and its binary form, which is
    /// what gets stored and digested.
    ///
    /// CPU-bound (Cranelift): call it from a blocking context.
    pub fn compile<'a>(
        &self,
        source: &'a [u8],
    ) -> Result<(Arc<CompiledModule>, Cow<'a, [u8]>), CompileError> {
        self.compile_with(source, self.inner.config.compiler.as_deref())
    }

    /// [`Engine::compile`] in this process, without the compile budget's
    /// child process: for modules the platform itself built (the JavaScript
    /// interpreter), never for uploads.
    pub fn compile_trusted<'a>(
        &self,
        source: &'a [u8],
    ) -> Result<(Arc<CompiledModule>, Cow<'a, [u8]>), CompileError> {
        self.compile_with(source, None)
    }

    fn compile_with<'a>(
        &self,
        source: &'a [u8],
        compiler: Option<&std::path::Path>,
    ) -> Result<(Arc<CompiledModule>, Cow<'a, [u8]>), CompileError> {
        let max = self.inner.config.max_module_bytes;
        if source.len() > max {
            return Err(CompileError::TooLarge {
                size: source.len(),
                max,
            });
        }
        let binary = to_binary(source)?;
        let digest = digest(&binary);
        if let Some(module) = self.cached(&digest) {
            return Ok((module, binary));
        }
        if let Some(script) = ScriptModule::decode(&binary).map_err(CompileError::Invalid)? {
            return Ok((self.script_module(digest, &script)?, binary));
        }
        compile_budget::check_shape(&binary)?;
        let code = match compiler {
            Some(compiler) => {
                let artifact = compile_process::compile(compiler, &self.inner.config, &binary)?;
                self.deserialize(&artifact)
                    .map_err(|e| CompileError::Panicked(format!("the compiler's artifact: {e}")))?
            }
            None => self.cranelift(&binary)?,
        };
        self.inner.compiled.fetch_add(1, Ordering::Relaxed);
        let compiled = self.finish(digest, code)?;
        Ok((compiled, binary))
    }

    /// Compile `binary` with Cranelift in this process, whatever
    /// [`EngineConfig::compiler`](crate::EngineConfig::compiler) says, and
    /// serialise the result: the child side of `compile_process.rs`.
    pub fn compile_native(&self, binary: &[u8]) -> Result<Vec<u8>, CompileError> {
        compile_budget::check_shape(binary)?;
        let serialized = match self.cranelift(binary)? {
            Compiled::Core(module) => module.serialize(),
            Compiled::Component(component) => component.serialize(),
        };
        serialized.map_err(|e| CompileError::Panicked(format!("cannot serialise: {e:#}")))
    }

    /// Validate and compile with Cranelift, here; a module that needs a
    /// proposal the engine does not enable is refused by that name.
    fn cranelift(&self, binary: &[u8]) -> Result<Compiled, CompileError> {
        let invalid = |e: wasmtime::Error| match features::refused(binary) {
            Some(feature) => CompileError::UnsupportedFeature(feature),
            None => CompileError::Invalid(format!("{e:#}")),
        };
        let engine = &self.inner.wasmtime;
        Ok(if component::is_component(binary) {
            Compiled::Component(
                wasmtime::component::Component::new(engine, binary).map_err(invalid)?,
            )
        } else {
            Compiled::Core(wasmtime::Module::new(engine, binary).map_err(invalid)?)
        })
    }

    /// The compiled module for `digest`, if this engine has it.
    pub fn cached(&self, digest: &str) -> Option<Arc<CompiledModule>> {
        // The cache first: invocations look their module up there on
        // every call; kept interpreters are looked up only on a load.
        if let Some(module) = self.inner.cache.lock().expect("cache lock").get(digest) {
            return Some(module);
        }
        self.inner
            .kept
            .lock()
            .expect("kept lock")
            .get(digest)
            .cloned()
    }

    /// Keep `module` loaded whatever the cache evicts: for interpreters
    /// (see `nimbus_core::script`), which every script module needs and
    /// which invocations never touch in the cache themselves. Few by
    /// design: one per interpreter version the platform ships.
    pub fn keep(&self, module: &Arc<CompiledModule>) {
        self.inner
            .kept
            .lock()
            .expect("kept lock")
            .insert(module.digest.clone(), module.clone());
    }

    /// Number of compiled modules held.
    pub fn cached_modules(&self) -> usize {
        self.inner.cache.lock().expect("cache lock").len()
    }

    /// Bytes of compiled modules held (see [`EngineConfig::cache_bytes`]).
    pub fn cached_bytes(&self) -> u64 {
        self.inner.cache.lock().expect("cache lock").bytes()
    }

    /// How often compiles reused machine code (zero when the cache is off).
    pub fn code_cache_stats(&self) -> CodeCacheStats {
        self.inner
            .code_cache
            .as_ref()
            .map(|cache| cache.stats())
            .unwrap_or_default()
    }

    /// A native artifact of `module` that another engine with the same
    /// configuration can load with [`Engine::load_precompiled`]; `None` for
    /// a script module, which has no machine code of its own, and for a
    /// prepared one, which stays on the worker that made it.
    pub fn serialize(&self, module: &CompiledModule) -> Result<Option<Vec<u8>>, wasmtime::Error> {
        match &module.code {
            Code::Core {
                entry: Entry::Script { .. } | Entry::Prepared(_),
                ..
            } => Ok(None),
            Code::Core { module, .. } => module.serialize().map(Some),
            Code::Component { component, .. } => component.serialize().map(Some),
        }
    }

    /// A script module runs on its interpreter's compiled code, which this
    /// engine must have loaded: nothing is compiled.
    fn script_module(
        &self,
        digest: String,
        script: &ScriptModule<'_>,
    ) -> Result<Arc<CompiledModule>, CompileError> {
        let interpreter = self
            .cached(script.interpreter)
            .ok_or_else(|| CompileError::MissingInterpreter(script.interpreter.to_owned()))?;
        let (
            Abi::Command,
            Code::Core {
                module,
                pre,
                imports_wasi,
                entry: Entry::Start,
            },
        ) = (&interpreter.abi, &interpreter.code)
        else {
            return Err(CompileError::Invalid(format!(
                "interpreter {} is not a WASI command module",
                script.interpreter
            )));
        };
        let code = Code::Core {
            module: module.clone(),
            pre: pre.clone(),
            imports_wasi: *imports_wasi,
            entry: Entry::Script {
                prefix: script.stdin_prefix().into(),
                interpreter: script.interpreter.to_owned(),
                phases: module.get_export(crate::tier_up::PREPARE).is_some()
                    && module.get_export(crate::tier_up::RUN).is_some(),
            },
        };
        Ok(self.remember(digest, Abi::Command, code))
    }

    /// A key that differs between engines whose artifacts are incompatible
    /// (wasmtime version, target, settings); store artifacts under it.
    pub fn artifact_key(&self) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.inner
            .wasmtime
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }

    /// Load a native artifact made by [`Engine::serialize`] for the module
    /// with `digest`, skipping compilation.
    ///
    /// Artifacts are machine code: they must come only from storage that is
    /// as trusted as this process (Nimbus's own object store), never from users.
    #[allow(unsafe_code)]
    pub fn load_precompiled(
        &self,
        digest: &str,
        artifact: &[u8],
    ) -> Result<Arc<CompiledModule>, CompileError> {
        if let Some(module) = self.cached(digest) {
            return Ok(module);
        }
        let code = self.deserialize(artifact)?;
        self.inner.loaded.fetch_add(1, Ordering::Relaxed);
        self.finish(digest.to_owned(), code)
    }

    /// The code in a native artifact, from the platform's store or its own
    /// compiler process (see [`Engine::load_precompiled`]).
    #[allow(unsafe_code)]
    fn deserialize(&self, artifact: &[u8]) -> Result<Compiled, CompileError> {
        let artifact_error = |e: wasmtime::Error| CompileError::Artifact(format!("{e:#}"));
        let engine = &self.inner.wasmtime;
        // SAFETY (both arms): wasmtime checks that the artifact was produced
        // by a compatible engine; its integrity rests on where it came from:
        // the trusted store, or this engine's own compiler process.
        Ok(match wasmtime::Engine::detect_precompiled(artifact) {
            Some(wasmtime::Precompiled::Component) => Compiled::Component(
                unsafe { wasmtime::component::Component::deserialize(engine, artifact) }
                    .map_err(artifact_error)?,
            ),
            _ => Compiled::Core(
                unsafe { wasmtime::Module::deserialize(engine, artifact) }
                    .map_err(artifact_error)?,
            ),
        })
    }

    /// [`Engine::load_precompiled`] for an artifact held in `file` (from its
    /// first byte, unchanging while the module lives: a sealed memory file),
    /// which wasmtime maps instead of copying. Should mapping fail (a
    /// platform without `/proc/self/fd`), the file is read and loaded.
    #[allow(unsafe_code)]
    pub fn load_precompiled_file(
        &self,
        digest: &str,
        file: std::fs::File,
    ) -> Result<Arc<CompiledModule>, CompileError> {
        if let Some(module) = self.cached(digest) {
            return Ok(module);
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd as _;
            let path = format!("/proc/self/fd/{}", file.as_raw_fd());
            let engine = &self.inner.wasmtime;
            // SAFETY: as for `load_precompiled`; the file cannot change (the
            // caller's contract), which is what mapping it needs.
            let mapped = match wasmtime::Engine::detect_precompiled_file(&path) {
                Ok(Some(wasmtime::Precompiled::Component)) => {
                    unsafe { wasmtime::component::Component::deserialize_file(engine, &path) }
                        .map(Compiled::Component)
                }
                _ => {
                    unsafe { wasmtime::Module::deserialize_file(engine, &path) }.map(Compiled::Core)
                }
            };
            match mapped {
                Ok(code) => {
                    self.inner.loaded.fetch_add(1, Ordering::Relaxed);
                    self.inner.mapped.fetch_add(1, Ordering::Relaxed);
                    return self.finish(digest.to_owned(), code);
                }
                Err(e) => {
                    tracing::debug!(%digest, error = %e, "cannot map the artifact; reading it")
                }
            }
        }
        use std::io::{Read as _, Seek as _};
        let mut artifact = Vec::new();
        (&file)
            .rewind()
            .and_then(|()| (&file).read_to_end(&mut artifact))
            .map_err(|e| CompileError::Artifact(format!("cannot read the artifact: {e}")))?;
        self.load_precompiled(digest, &artifact)
    }

    /// How this engine got its modules so far.
    pub fn load_stats(&self) -> LoadStats {
        LoadStats {
            compiled: self.inner.compiled.load(Ordering::Relaxed),
            loaded: self.inner.loaded.load(Ordering::Relaxed),
            mapped: self.inner.mapped.load(Ordering::Relaxed),
        }
    }

    fn finish(&self, digest: String, code: Compiled) -> Result<Arc<CompiledModule>, CompileError> {
        let (abi, code) = match code {
            Compiled::Core(module) => {
                module::check_imports(&module)?;
                let abi = module::detect_abi(&module)?;
                let pre = self
                    .inner
                    .linker
                    .instantiate_pre(&module)
                    .map_err(|e| CompileError::ForbiddenImport(format!("{e:#}")))?;
                // `check_imports` let only WASI functions through.
                let imports_wasi = module.imports().len() > 0;
                let code = Code::Core {
                    module,
                    pre,
                    imports_wasi,
                    entry: Entry::Start,
                };
                (abi, code)
            }
            Compiled::Component(component) => {
                let abi = component::check(&self.inner.wasmtime, &component)?;
                let pre = component::pre(&self.inner.component_linker, &component, &abi)?;
                (abi, Code::Component { component, pre })
            }
        };
        Ok(self.remember(digest, abi, code))
    }

    /// Keep a module in the cache; returns it.
    fn remember(&self, digest: String, abi: Abi, code: Code) -> Arc<CompiledModule> {
        let compiled = Arc::new(CompiledModule {
            digest: digest.clone(),
            abi,
            code,
        });
        self.inner
            .cache
            .lock()
            .expect("cache lock")
            .insert(digest, compiled.clone());
        compiled
    }

    /// Refuse, at upload, a module that could never start under `limits`:
    /// its initial memory is above the function's memory cap.
    pub fn check_limits(
        &self,
        module: &CompiledModule,
        limits: &Limits,
    ) -> Result<(), CompileError> {
        let resources = match &module.code {
            Code::Core { module, .. } => Some(module.resources_required()),
            Code::Component { component, .. } => component.resources_required(),
        };
        let Some(resources) = resources else {
            return Ok(());
        };
        let initial = resources
            .max_initial_memory_size
            .unwrap_or(0)
            .saturating_mul(WASM_PAGE_BYTES)
            .saturating_mul(u64::from(resources.num_memories));
        if initial > limits.memory_bytes {
            return Err(CompileError::ExceedsLimits(format!(
                "its initial linear memory is {initial} bytes, above the function's memory_bytes limit of {}",
                limits.memory_bytes
            )));
        }
        Ok(())
    }
}
