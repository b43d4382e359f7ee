//! Running a module once: a fresh `Store` per invocation under fuel, memory,
//! table, deadline and output limits, with input on stdin (command ABI) or as
//! `handle`'s parameters (scalar ABI), and the outcome or its failure named.

use std::time::{Duration, Instant};

use bytes::Bytes;
use nimbus_core::{FunctionError, FunctionErrorKind, Limits};
use wasmtime::{Linker, Store, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use crate::error::{DeadlineExceeded, classify, output_too_large};
use crate::limiter::Limiter;
use crate::pipe::{CappedPipe, Overflow};
use crate::{Abi, CompiledModule, Engine, scalar};

/// What one invocation produced. Logs and fuel are reported whether the
/// function succeeded or not.
#[derive(Debug)]
pub struct Outcome {
    /// The result JSON text, or why there is none. `Ok` always holds exactly
    /// one valid JSON document without surrounding whitespace (validated
    /// here, once), so callers can pass it on without parsing it again.
    pub result: Result<Bytes, FunctionError>,
    /// Fuel burned.
    pub fuel_consumed: u64,
    /// Wall time from instantiation to the end of the call.
    pub duration: Duration,
    /// What the guest wrote to stderr, up to the log cap.
    pub logs: Bytes,
    /// Whether stderr output was dropped at the cap.
    pub logs_truncated: bool,
}

/// Per-Store host state.
pub struct Host {
    /// Only for modules that import WASI functions.
    wasi: Option<WasiP1Ctx>,
    limiter: Limiter,
}

/// The linker every module is pre-linked with: WASI preview 1 functions
/// only, each working on the invocation's own [`Host`].
pub(crate) fn linker(engine: &wasmtime::Engine) -> Result<Linker<Host>, wasmtime::Error> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |host: &mut Host| {
        host.wasi
            .as_mut()
            .expect("a module that imports WASI runs with a WASI context")
    })?;
    Ok(linker)
}

/// Largest `random_get` a guest may ask for in one call.
const MAX_RANDOM_BYTES: u64 = 64 << 10;

/// Fuel between two yields of a running guest: about 0.1 ms of compute,
/// short enough for fairness, long enough that yielding costs little.
const FUEL_YIELD_INTERVAL: u64 = 1_000_000;

impl Engine {
    /// Run `module` once on `input` (JSON text) under `limits`.
    ///
    /// `input` is handed to the guest as is (a command reads it from stdin
    /// without it being copied).
    pub async fn invoke(&self, module: &CompiledModule, input: Bytes, limits: &Limits) -> Outcome {
        let refused = |error: FunctionError| Outcome {
            result: Err(error),
            fuel_consumed: 0,
            duration: Duration::ZERO,
            logs: Bytes::new(),
            logs_truncated: false,
        };
        if input.len() as u64 > limits.max_input_bytes {
            return refused(FunctionError::new(
                FunctionErrorKind::InvalidInput,
                format!(
                    "input is {} bytes, the limit is {}",
                    input.len(),
                    limits.max_input_bytes
                ),
            ));
        }
        let params = match &module.abi {
            Abi::Command => None,
            Abi::Scalar { params, .. } => match scalar::params(&input, params) {
                Ok(values) => Some(values),
                Err(e) => return refused(e),
            },
        };

        let _slot = self
            .inner
            .slots
            .acquire()
            .await
            .expect("semaphore never closed");
        let stdout = CappedPipe::new(clamp_usize(limits.max_output_bytes), Overflow::Trap);
        let stderr = CappedPipe::new(clamp_usize(limits.max_log_bytes), Overflow::Discard);
        let wasi = module.imports_wasi.then(|| {
            let mut wasi = WasiCtxBuilder::new();
            wasi.stdout(stdout.clone())
                .stderr(stderr.clone())
                // `random_get` fills its buffer on the host, outside the
                // memory limiter: keep each call small.
                .max_random_size(MAX_RANDOM_BYTES);
            if params.is_none() {
                wasi.stdin(MemoryInputPipe::new(input));
            }
            wasi.build_p1()
        });
        let host = Host {
            wasi,
            limiter: Limiter::new(clamp_usize(limits.memory_bytes)),
        };
        let mut store = Store::new(&self.inner.wasmtime, host);
        store.limiter(|host| &mut host.limiter);
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
        let run = tokio::time::timeout(timeout + grace, run(&mut store, module, params)).await;
        let duration = start.elapsed();
        let fuel_consumed = if self.inner.config.consume_fuel {
            limits.fuel - store.get_fuel().unwrap_or(0)
        } else {
            0
        };
        drop(store);

        let logs = stderr.take();
        let mut result = match run {
            Err(_elapsed) => Err(FunctionError::new(
                FunctionErrorKind::Timeout,
                format!("deadline of {} ms exceeded", limits.timeout_ms),
            )),
            Ok(Ok(_)) if stdout.overflowed() => Err(output_too_large(limits)),
            Ok(Ok(RunOutput::Scalar(bytes))) => Ok(Bytes::from(bytes)),
            Ok(Ok(RunOutput::Stdout)) => command_output(stdout.take()),
            Ok(Err(error)) => Err(classify(error, &stdout, limits, &logs)),
        };
        if let Err(error) = &mut result {
            error.fuel_consumed = fuel_consumed;
        }
        Outcome {
            result,
            fuel_consumed,
            duration,
            logs: Bytes::from(logs),
            logs_truncated: stderr.overflowed(),
        }
    }
}

enum RunOutput {
    Scalar(Vec<u8>),
    Stdout,
}

async fn run(
    store: &mut Store<Host>,
    module: &CompiledModule,
    params: Option<Vec<wasmtime::Val>>,
) -> Result<RunOutput, wasmtime::Error> {
    let instance = module.pre.instantiate_async(&mut *store).await?;
    match (&module.abi, params) {
        (Abi::Scalar { results, .. }, Some(params)) => {
            let handle = instance
                .get_func(&mut *store, "handle")
                .expect("ABI detection found `handle`");
            let mut slots = scalar::result_slots(results);
            handle.call_async(&mut *store, &params, &mut slots).await?;
            Ok(RunOutput::Scalar(
                scalar::output(&slots).map_err(wasmtime::Error::new)?,
            ))
        }
        _ => {
            let start = instance.get_typed_func::<(), ()>(&mut *store, "_start")?;
            match start.call_async(&mut *store, ()).await {
                Ok(()) => Ok(RunOutput::Stdout),
                Err(e) if matches!(e.downcast_ref::<I32Exit>(), Some(I32Exit(0))) => {
                    Ok(RunOutput::Stdout)
                }
                Err(e) => Err(e),
            }
        }
    }
}

/// A command's stdout must be one JSON document (surrounding whitespace
/// allowed). Writing nothing means `null`: a function with no result.
///
/// The document is validated once, here, and returned as a slice of the
/// stdout buffer itself, trimmed of the whitespace around it: no copy.
fn command_output(stdout: Vec<u8>) -> Result<Bytes, FunctionError> {
    if stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(Bytes::from_static(b"null"));
    }
    let stdout = Bytes::from(stdout);
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

fn clamp_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}
