//! WebAssembly components (WASI 0.2): what they may import, which world they
//! implement, and the per-invocation host state they run with.
//!
//! A component is linked against exactly the interfaces a function may use:
//! `wasi:io`, `wasi:clocks`, `wasi:random`, `wasi:cli` stdio, environment
//! (the function's variables and secrets), exit and terminal queries,
//! `wasi:config/store` (the same variables and secrets), and `wasi:http`
//! types plus the outgoing handler, which sends only what the function's
//! `allowed_outbound_hosts` allow (`outbound.rs`; `HTTP-request-denied`
//! otherwise), and `wasi:keyvalue` (`keyvalue.rs`: the stores its
//! `key_value_stores` name). A component importing anything
//! else is refused at upload, naming the import, with two exceptions that
//! language runtimes force on their programs (wasi-libc imports them
//! whether the program uses them or not: every componentize-py component
//! does):
//! - `wasi:filesystem` is linked with no preopened directory: there is no
//!   file the guest can name, so every file operation fails;
//! - `wasi:sockets` is linked with every use denied (wasmtime-wasi's own
//!   implementation with TCP, UDP and name lookup off: creating a socket
//!   or resolving a name fails with `access-denied` before any system call).

use wasmtime::component::{Component, Linker, ResourceTable, types::ComponentItem};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use nimbus_core::Limits;
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};

use crate::Capabilities;
use crate::invoke::clamp_usize;
use crate::kv::KvCalls;
use crate::limiter::Limiter;
use crate::outbound::OutboundCalls;
use crate::{Abi, CompileError};

/// Interfaces a component may import, mostly without their version
/// (`wasi:io/streams@0.2.12` matches `wasi:io/streams`); an entry with a
/// version matches that version only.
const ALLOWED_IMPORTS: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/environment",
    "wasi:config/store",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:http/types",
    "wasi:http/outgoing-handler",
    // Drafts of wasi:keyvalue differ in their types: only the one the host
    // implements (`keyvalue.rs`).
    "wasi:keyvalue/store@0.2.0-draft2",
    "wasi:keyvalue/atomics@0.2.0-draft2",
    "wasi:keyvalue/batch@0.2.0-draft2",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
];

const HTTP_HANDLER: &str = "wasi:http/incoming-handler";
const CLI_RUN: &str = "wasi:cli/run";

/// Whether `binary` is a component rather than a core module: the layer
/// field of the preamble (bytes 6 and 7) is 1 for components, 0 for modules.
pub(crate) fn is_component(binary: &[u8]) -> bool {
    binary.len() >= 8 && binary.starts_with(b"\0asm") && binary[6..8] == [1, 0]
}

fn unversioned(name: &str) -> &str {
    name.split_once('@').map_or(name, |(name, _)| name)
}

/// Whether [`ALLOWED_IMPORTS`] has `name`: exactly, for an entry with a
/// version, or in any version.
fn is_allowed(name: &str) -> bool {
    ALLOWED_IMPORTS.iter().any(|allowed| {
        if allowed.contains('@') {
            *allowed == name
        } else {
            *allowed == unversioned(name)
        }
    })
}

/// Every import must be an allowed interface; the exports name the world.
pub(crate) fn check(engine: &wasmtime::Engine, component: &Component) -> Result<Abi, CompileError> {
    let ty = component.component_type();
    for (name, item) in ty.imports(engine) {
        if !matches!(item.ty, ComponentItem::ComponentInstance(_)) || !is_allowed(name) {
            return Err(CompileError::ForbiddenImport(format!(
                "`{name}`; a component may import only {}",
                "wasi:io, wasi:clocks, wasi:random, wasi:cli (stdio, environment, exit, terminal), \
                 wasi:config/store, wasi:http (types, outgoing-handler), \
                 wasi:keyvalue (store, atomics, batch; 0.2.0-draft2), wasi:filesystem (with no directory) \
                 and wasi:sockets (every use denied)"
            )));
        }
    }
    let exports: Vec<&str> = ty
        .exports(engine)
        .map(|(name, _)| unversioned(name))
        .collect();
    if exports.contains(&HTTP_HANDLER) {
        Ok(Abi::HttpComponent)
    } else if exports.contains(&CLI_RUN) {
        Ok(Abi::CliComponent)
    } else {
        Err(CompileError::NoEntryPoint(format!(
            "the component exports neither `{HTTP_HANDLER}` (wasi:http/proxy) nor `{CLI_RUN}` \
             (wasi:cli/command); it exports {exports:?}"
        )))
    }
}

/// A component pre-linked for its world.
#[derive(Clone)]
pub(crate) enum ComponentPre {
    Command(CommandPre<ComponentHost>),
    Http(ProxyPre<ComponentHost>),
}

/// Pre-link `component` for the world `abi` names.
pub(crate) fn pre(
    linker: &Linker<ComponentHost>,
    component: &Component,
    abi: &Abi,
) -> Result<ComponentPre, CompileError> {
    let link = |e: wasmtime::Error| CompileError::ForbiddenImport(format!("{e:#}"));
    let pre = linker.instantiate_pre(component).map_err(link)?;
    let bad_export = |e: wasmtime::Error| CompileError::NoEntryPoint(format!("{e:#}"));
    Ok(match abi {
        Abi::HttpComponent => ComponentPre::Http(ProxyPre::new(pre).map_err(bad_export)?),
        _ => ComponentPre::Command(CommandPre::new(pre).map_err(bad_export)?),
    })
}

/// The linker components are pre-linked with: exactly [`ALLOWED_IMPORTS`].
pub(crate) fn linker(engine: &wasmtime::Engine) -> Result<Linker<ComponentHost>, wasmtime::Error> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView as _};
    use wasmtime_wasi::p2::bindings::{cli, filesystem, random, sockets};
    use wasmtime_wasi::random::{WasiRandom, WasiRandomView as _};
    use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView as _};

    let mut linker = Linker::new(engine);
    let l = &mut linker;
    // wasi:io, wasi:clocks, wasi:random/random and wasi:cli stdio: the
    // interfaces of the wasi:http/proxy world.
    wasmtime_wasi::p2::add_to_linker_proxy_interfaces_async(l)?;
    random::insecure::add_to_linker::<_, WasiRandom>(l, |h: &mut ComponentHost| h.random())?;
    random::insecure_seed::add_to_linker::<_, WasiRandom>(l, |h: &mut ComponentHost| h.random())?;
    cli::environment::add_to_linker::<_, WasiCli>(l, |h: &mut ComponentHost| h.cli())?;
    cli::exit::add_to_linker::<_, WasiCli>(l, |h: &mut ComponentHost| h.cli())?;
    cli::terminal_input::add_to_linker::<_, WasiCli>(l, |h: &mut ComponentHost| h.cli())?;
    cli::terminal_output::add_to_linker::<_, WasiCli>(l, |h: &mut ComponentHost| h.cli())?;
    cli::terminal_stdin::add_to_linker::<_, WasiCli>(l, |h: &mut ComponentHost| h.cli())?;
    cli::terminal_stdout::add_to_linker::<_, WasiCli>(l, |h: &mut ComponentHost| h.cli())?;
    cli::terminal_stderr::add_to_linker::<_, WasiCli>(l, |h: &mut ComponentHost| h.cli())?;
    // No directory is ever preopened: the guest can name no file.
    filesystem::types::add_to_linker::<_, WasiFilesystem>(l, |h: &mut ComponentHost| {
        h.filesystem()
    })?;
    filesystem::preopens::add_to_linker::<_, WasiFilesystem>(l, |h: &mut ComponentHost| {
        h.filesystem()
    })?;
    // TCP, UDP and name lookup are off in every WasiCtx the engine builds
    // (wasmtime-wasi's default): each use is denied.
    macro_rules! sockets {
        ($($interface:ident),*) => {$(
            sockets::$interface::add_to_linker::<_, WasiSockets>(l, |h: &mut ComponentHost| {
                h.sockets()
            })?;
        )*};
    }
    sockets!(
        instance_network,
        tcp,
        tcp_create_socket,
        udp,
        udp_create_socket,
        ip_name_lookup
    );
    sockets::network::add_to_linker::<_, WasiSockets>(
        l,
        &Default::default(),
        |h: &mut ComponentHost| h.sockets(),
    )?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(l)?;
    wasmtime_wasi_config::add_to_linker(l, |h: &mut ComponentHost| WasiConfig::from(&h.config))?;
    crate::keyvalue::add_to_linker(l, |h: &mut ComponentHost| crate::keyvalue::KvView {
        table: &mut h.table,
        calls: &mut h.kv,
    })?;
    Ok(linker)
}

/// Per-Store state of a component invocation.
pub struct ComponentHost {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: Hooks,
    /// What `wasi:config/store` answers: the function's environment.
    config: WasiConfigVariables,
    /// `wasi:keyvalue`: the function's stores.
    kv: KvCalls,
    pub(crate) limiter: Limiter,
}

impl ComponentHost {
    /// Host state for one invocation under `limits`, with the environment
    /// in `wasi:config/store` and outbound HTTP as `capabilities` say.
    pub(crate) fn new(wasi: WasiCtx, limits: &Limits, capabilities: &Capabilities) -> Self {
        let env = &capabilities.env;
        Self {
            wasi,
            config: env
                .0
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            http: WasiHttpCtx::new(),
            kv: KvCalls::new(capabilities.kv.clone()),
            table: ResourceTable::new(),
            hooks: Hooks {
                body_chunks: clamp_usize(limits.max_output_bytes) / BODY_CHUNK_BYTES + 1,
                outbound: OutboundCalls::new(
                    capabilities.outbound.clone(),
                    limits.max_output_bytes,
                    limits.max_input_bytes,
                ),
            },
            limiter: Limiter::new(clamp_usize(limits.memory_bytes)),
        }
    }
}

/// The most a guest may write to a response body in one write.
const BODY_CHUNK_BYTES: usize = 4096;

impl WasiView for ComponentHost {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ComponentHost {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// `wasi:http` hooks: outbound requests go through the invocation's
/// policy (`outbound.rs`: only allowed hosts, only public addresses unless
/// the operator says otherwise, a bounded number), and a response body has
/// room for the whole output cap.
///
/// The room is what keeps fuel deterministic: with wasmtime-wasi-http's
/// default (one chunk in flight) a guest writing its body finds the channel
/// full or not depending on when the host last drained it, which depends on
/// when the guest last yielded (epoch ticks: wall-clock time), and waiting
/// costs it fuel. With a slot per 4 KiB write up to the cap, a guest writing
/// within its cap never waits; the bytes held stay within the cap (plus one
/// chunk), since each write is at most 4 KiB.
struct Hooks {
    body_chunks: usize,
    outbound: OutboundCalls,
}

impl WasiHttpHooks for Hooks {
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        self.body_chunks
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        BODY_CHUNK_BYTES
    }

    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        self.outbound.send(request)
    }
}
