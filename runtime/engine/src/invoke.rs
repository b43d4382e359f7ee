//! Running a function once: a fresh `Store` per invocation under fuel,
//! memory, table, deadline and output limits, with input on stdin (WASI
//! commands, core or component), as `handle`'s parameters (scalar ABI) or as
//! an HTTP request body (`wasi:http` components called through `execute`),
//! and the outcome or its failure named.

use std::time::{Duration, Instant};

use bytes::Bytes;
use nimbus_core::wire::{HttpRequest, RequestHead};
use nimbus_core::{FunctionError, FunctionErrorKind, Limits};
use wasmtime::{Linker, Store, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use crate::component::{ComponentHost, ComponentPre};
use crate::error::{DeadlineExceeded, classify, output_too_large, without_backtrace};
use crate::http_import::HostHttp;
use crate::kv::KvCalls;
use crate::kv_import::HostKv;
use crate::limiter::Limiter;
use crate::module::{Code, Entry};
use crate::outbound::OutboundCalls;
use crate::pipe::{CappedPipe, Overflow};
use crate::tier_up::{PREPARE, RUN};
use crate::{Abi, Capabilities, CompiledModule, Engine, scalar};

/// What one invocation produced. Logs and fuel are reported whether the
/// function succeeded or not.
#[derive(Debug)]
pub struct Outcome<T = Bytes> {
    /// The result, or why there is none. For [`Engine::invoke`] `Ok` always
    /// holds exactly one valid JSON document without surrounding whitespace
    /// (validated here, once), so callers can pass it on without parsing it
    /// again; for [`Engine::serve`] it is the HTTP response.
    pub result: Result<T, FunctionError>,
    /// Fuel burned.
    pub fuel_consumed: u64,
    /// Wall time from instantiation to the end of the call.
    pub duration: Duration,
    /// What the guest wrote to stderr (and, for an HTTP handler, to stdout),
    /// up to the log cap.
    pub logs: Bytes,
    /// Whether log output was dropped at the cap.
    pub logs_truncated: bool,
}

impl<T> Outcome<T> {
    /// An invocation refused before anything ran.
    pub(crate) fn refused(error: FunctionError) -> Self {
        Self {
            result: Err(error),
            fuel_consumed: 0,
            duration: Duration::ZERO,
            logs: Bytes::new(),
            logs_truncated: false,
        }
    }
}

/// Per-Store host state of a core module.
pub struct Host {
    /// Only for modules that import WASI functions.
    wasi: Option<WasiP1Ctx>,
    limiter: Limiter,
    /// `nimbus_http` (outbound HTTP) state.
    pub(crate) http: HostHttp,
    /// `nimbus_kv` (key-value state) state.
    pub(crate) kv: HostKv,
}

impl Host {
    /// The host side of one invocation of a core module.
    pub(crate) fn new(
        wasi: Option<WasiP1Ctx>,
        limits: &Limits,
        capabilities: &Capabilities,
    ) -> Self {
        Self {
            wasi,
            limiter: Limiter::new(clamp_usize(limits.memory_bytes)),
            http: HostHttp::new(OutboundCalls::new(
                capabilities.outbound.clone(),
                limits.max_output_bytes,
                limits.max_input_bytes,
            )),
            kv: HostKv::new(KvCalls::new(capabilities.kv.clone())),
        }
    }

    /// The invocation's limiter.
    pub(crate) fn limiter(&mut self) -> &mut Limiter {
        &mut self.limiter
    }
}

/// The linker every module is pre-linked with: WASI preview 1 functions,
/// `nimbus_http` (`http_import.rs`) and `nimbus_kv` (`kv_import.rs`) only, each working on the
/// invocation's own [`Host`].
pub(crate) fn linker(engine: &wasmtime::Engine) -> Result<Linker<Host>, wasmtime::Error> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |host: &mut Host| {
        host.wasi
            .as_mut()
            .expect("a module that imports WASI runs with a WASI context")
    })?;
    crate::http_import::add_to_linker(&mut linker)?;
    crate::kv_import::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// Largest `random_get` a guest may ask for in one call.
pub(crate) const MAX_RANDOM_BYTES: u64 = 64 << 10;

/// Fuel between two yields of a running guest: about 0.1 ms of compute,
/// short enough for fairness, long enough that yielding costs little.
const FUEL_YIELD_INTERVAL: u64 = 1_000_000;

/// How a metered run ended, before its failure is named.
pub(crate) struct Metered<R> {
    /// `Err(None)`: the outer timeout fired (a guest parked in a host call).
    pub(crate) result: Result<R, Option<wasmtime::Error>>,
    pub(crate) fuel_consumed: u64,
    pub(crate) duration: Duration,
}

impl Engine {
    /// Run `module` once on `input` (JSON text) under `limits`.
    ///
    /// `input` is handed to the guest as is (a command reads it from stdin
    /// without it being copied). A `wasi:http` component gets it as the body
    /// of a `POST /` and must answer 2xx with a JSON body.
    pub async fn invoke(&self, module: &CompiledModule, input: Bytes, limits: &Limits) -> Outcome {
        self.invoke_with(module, input, limits, &Capabilities::default())
            .await
    }

    /// [`Engine::invoke`], with `capabilities`: the guest's environment
    /// variables (WASI `environ`, `wasi:cli/environment` and, for
    /// components, `wasi:config/store`) and the hosts it may call.
    pub async fn invoke_with(
        &self,
        module: &CompiledModule,
        input: Bytes,
        limits: &Limits,
        capabilities: &Capabilities,
    ) -> Outcome {
        if input.len() as u64 > limits.max_input_bytes {
            return Outcome::refused(input_too_large(input.len(), limits));
        }
        match &module.abi {
            Abi::HttpComponent => {
                let request = HttpRequest {
                    head: RequestHead {
                        method: "POST".into(),
                        path: "/".into(),
                        headers: vec![("content-type".into(), "application/json".into())],
                    },
                    body: input,
                };
                let outcome = self.serve_with(module, request, limits, capabilities).await;
                let fuel_consumed = outcome.fuel_consumed;
                Outcome {
                    result: outcome.result.and_then(|response| {
                        crate::http::json_result(response).map_err(|mut error| {
                            error.fuel_consumed = fuel_consumed;
                            error
                        })
                    }),
                    fuel_consumed,
                    duration: outcome.duration,
                    logs: outcome.logs,
                    logs_truncated: outcome.logs_truncated,
                }
            }
            Abi::Scalar { params, .. } => match scalar::params(&input, params) {
                Ok(values) => {
                    self.run_core(module, None, Some(values), limits, capabilities)
                        .await
                }
                Err(e) => Outcome::refused(e),
            },
            Abi::Command | Abi::CliComponent => {
                if let Code::Component { pre, .. } = &module.code {
                    self.run_cli(pre, input, limits, capabilities).await
                } else {
                    self.run_core(module, Some(input), None, limits, capabilities)
                        .await
                }
            }
        }
    }

    pub(crate) async fn run_core(
        &self,
        module: &CompiledModule,
        stdin: Option<Bytes>,
        params: Option<Vec<wasmtime::Val>>,
        limits: &Limits,
        capabilities: &Capabilities,
    ) -> Outcome {
        let Code::Core {
            pre,
            imports_wasi,
            entry,
            ..
        } = &module.code
        else {
            unreachable!("a core ABI has core code");
        };
        // A script module's interpreter reads the script first.
        let stdin = match (entry, stdin) {
            (Entry::Script { prefix, .. }, Some(input)) => {
                let mut both = Vec::with_capacity(prefix.len() + input.len());
                both.extend_from_slice(prefix);
                both.extend_from_slice(&input);
                Some(Bytes::from(both))
            }
            (Entry::Script { prefix, .. }, None) => Some(prefix.clone()),
            // Limits the preparation alone exceeds: the script runs as it
            // is, and fails where it would have.
            (Entry::Prepared(prepared), stdin) if !prepared.fits(limits) => {
                return Box::pin(self.run_core(
                    &prepared.script,
                    stdin,
                    params,
                    limits,
                    capabilities,
                ))
                .await;
            }
            (_, stdin) => stdin,
        };
        let stdout = CappedPipe::new(clamp_usize(limits.max_output_bytes), Overflow::Trap);
        let stderr = CappedPipe::new(clamp_usize(limits.max_log_bytes), Overflow::Discard);
        let wasi = imports_wasi.then(|| {
            let mut wasi = WasiCtxBuilder::new();
            wasi.stdout(stdout.clone())
                .stderr(stderr.clone())
                // `random_get` fills its buffer on the host, outside the
                // memory limiter: keep each call small.
                .max_random_size(MAX_RANDOM_BYTES)
                .envs(&capabilities.env.0);
            if let Some(stdin) = stdin {
                wasi.stdin(MemoryInputPipe::new(stdin));
            }
            wasi.build_p1()
        });
        let host = Host::new(wasi, limits, capabilities);
        let mut run = self
            .metered(
                host,
                |h| &mut h.limiter,
                limits,
                async |store| {
                    let instance = pre.instantiate_async(&mut *store).await?;
                    match (&module.abi, params) {
                        (Abi::Scalar { results, .. }, Some(params)) => {
                            let handle = instance
                                .get_func(&mut *store, "handle")
                                .expect("ABI detection found `handle`");
                            let mut slots = scalar::result_slots(results);
                            handle.call_async(&mut *store, &params, &mut slots).await?;
                            Ok(Some(scalar::output(&slots).map_err(wasmtime::Error::new)?))
                        }
                        _ => {
                            let calls: &[&str] = match entry {
                                Entry::Script { phases: true, .. } => &[PREPARE, RUN],
                                Entry::Prepared(prepared) => {
                                    // Charged as if `nimbus-js-prepare` ran again.
                                    if self.inner.config.consume_fuel {
                                        store.set_fuel(limits.fuel - prepared.fuel)?;
                                    }
                                    &[RUN]
                                }
                                _ => &["_start"],
                            };
                            for name in calls {
                                let call = instance.get_typed_func::<(), ()>(&mut *store, name)?;
                                exit_zero_is_success(call.call_async(&mut *store, ()).await)?;
                            }
                            Ok(None)
                        }
                    }
                },
            )
            .await;
        // A script's wasm backtrace is the interpreter's, whose offsets
        // move in a prepared snapshot (`tier_up.rs`): left out.
        if !matches!(entry, Entry::Start) {
            run.result = run.result.map_err(|error| error.map(without_backtrace));
        }
        finish(
            run,
            stdout.overflowed(),
            &stderr,
            limits,
            |scalar| match scalar {
                Some(bytes) => Ok(Bytes::from(bytes)),
                None => command_output(stdout.take()),
            },
        )
    }

    async fn run_cli(
        &self,
        pre: &ComponentPre,
        input: Bytes,
        limits: &Limits,
        capabilities: &Capabilities,
    ) -> Outcome {
        let ComponentPre::Command(pre) = pre else {
            unreachable!("a cli component is pre-linked as a command");
        };
        let stdout = CappedPipe::new(clamp_usize(limits.max_output_bytes), Overflow::Trap);
        let stderr = CappedPipe::new(clamp_usize(limits.max_log_bytes), Overflow::Discard);
        let wasi = WasiCtxBuilder::new()
            .stdin(MemoryInputPipe::new(input))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .max_random_size(MAX_RANDOM_BYTES)
            .envs(&capabilities.env.0)
            .build();
        let host = ComponentHost::new(wasi, limits, capabilities);
        let run = self
            .metered(
                host,
                |h| &mut h.limiter,
                limits,
                async |store| {
                    let command = pre.instantiate_async(&mut *store).await?;
                    match command.wasi_cli_run().call_run(&mut *store).await {
                        Ok(Ok(())) => Ok(()),
                        // `run` returned an error: what `exit(1)` reports.
                        Ok(Err(())) => Err(wasmtime::Error::new(I32Exit(1))),
                        Err(e) => exit_zero_is_success(Err(e)),
                    }
                },
            )
            .await;
        finish(run, stdout.overflowed(), &stderr, limits, |()| {
            command_output(stdout.take())
        })
    }

    /// Guests this engine has started running: invocations of every kind,
    /// and on an API server the evaluations of JavaScript at upload.
    pub fn runs(&self) -> u64 {
        self.inner.runs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Run `run` on a fresh store holding `host`, under `limits`: fuel,
    /// memory and tables (through `limiter`), and the deadline, enforced by
    /// epoch checks and, for a guest parked in a host call, an outer timeout.
    pub(crate) async fn metered<T: Send + 'static, R>(
        &self,
        host: T,
        limiter: fn(&mut T) -> &mut Limiter,
        limits: &Limits,
        run: impl AsyncFnOnce(&mut Store<T>) -> Result<R, wasmtime::Error>,
    ) -> Metered<R> {
        let _slot = self
            .inner
            .slots
            .acquire()
            .await
            .expect("semaphore never closed");
        self.inner
            .runs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut store = Store::new(&self.inner.wasmtime, host);
        store.limiter(move |host| limiter(host));
        // Guests yield to the scheduler at every epoch tick, so neither a
        // busy loop nor a guest spending its time in host calls (which cost
        // almost no fuel) can hold a tokio thread. They also yield every
        // FUEL_YIELD_INTERVAL units of fuel: only a fuel yield writes the
        // guest's fuel counter back to the store (an epoch check does not),
        // so a guest stopped by its deadline still reports, to within one
        // interval, the fuel it burned.
        let metered = self.inner.config.consume_fuel;
        if metered {
            store.set_fuel(limits.fuel).expect("fuel is enabled");
            store
                .fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL))
                .expect("fuel is enabled");
        }
        let start = Instant::now();
        let timeout = Duration::from_millis(limits.timeout_ms);
        let deadline = start + timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(DeadlineExceeded.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });

        // The epoch callback stops running guests; this outer timeout covers a
        // guest parked in a host call (a WASI sleep), where no epoch check runs.
        let grace = self.inner.config.epoch_tick * 4;
        let result = match tokio::time::timeout(timeout + grace, run(&mut store)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(Some(error)),
            Err(_elapsed) => Err(None),
        };
        let duration = start.elapsed();
        let fuel_consumed = if metered {
            limits.fuel - store.get_fuel().unwrap_or(0)
        } else {
            0
        };
        Metered {
            result,
            fuel_consumed,
            duration,
        }
    }
}

/// Name the outcome of a metered run: `output` turns what the run returned
/// into the result, unless a limit or the guest failed it first
/// (`output_overflowed`: the guest wrote past its output cap).
pub(crate) fn finish<R, T>(
    run: Metered<R>,
    output_overflowed: bool,
    logs_pipe: &CappedPipe,
    limits: &Limits,
    output: impl FnOnce(R) -> Result<T, FunctionError>,
) -> Outcome<T> {
    let logs = logs_pipe.take();
    let mut result = match run.result {
        Err(None) => Err(FunctionError::new(
            FunctionErrorKind::Timeout,
            format!("deadline of {} ms exceeded", limits.timeout_ms),
        )),
        Ok(_) if output_overflowed => Err(output_too_large(limits)),
        Ok(value) => output(value),
        Err(Some(error)) => Err(classify(error, output_overflowed, limits, &logs)),
    };
    if let Err(error) = &mut result {
        error.fuel_consumed = run.fuel_consumed;
    }
    Outcome {
        result,
        fuel_consumed: run.fuel_consumed,
        duration: run.duration,
        logs: Bytes::from(logs),
        logs_truncated: logs_pipe.overflowed(),
    }
}

/// A guest's `exit(0)` surfaces as an error; it is a success.
fn exit_zero_is_success<R: Default>(ran: Result<R, wasmtime::Error>) -> Result<R, wasmtime::Error> {
    match ran {
        Err(e) if matches!(e.downcast_ref::<I32Exit>(), Some(I32Exit(0))) => Ok(R::default()),
        other => other,
    }
}

pub(crate) fn input_too_large(len: usize, limits: &Limits) -> FunctionError {
    FunctionError::new(
        FunctionErrorKind::InvalidInput,
        format!(
            "input is {len} bytes, the limit is {}",
            limits.max_input_bytes
        ),
    )
}

/// A command's stdout must be one JSON document (surrounding whitespace
/// allowed). Writing nothing means `null`: a function with no result.
///
/// The document is validated once, here, and returned as a slice of the
/// stdout buffer itself, trimmed of the whitespace around it: no copy.
pub(crate) fn command_output(stdout: impl Into<Bytes>) -> Result<Bytes, FunctionError> {
    let stdout: Bytes = stdout.into();
    if stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(Bytes::from_static(b"null"));
    }
    // A borrowed `RawValue` checks the whole text (UTF-8 included) and points
    // at the document inside it.
    match serde_json::from_slice::<&serde_json::value::RawValue>(&stdout) {
        Ok(raw) => Ok(stdout.slice_ref(raw.get().as_bytes())),
        Err(e) => {
            let preview = String::from_utf8_lossy(&stdout[..stdout.len().min(120)]).into_owned();
            Err(FunctionError::new(
                FunctionErrorKind::InvalidOutput,
                format!("stdout is not a JSON document ({e}); it starts with {preview:?}"),
            ))
        }
    }
}

pub(crate) fn clamp_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}
