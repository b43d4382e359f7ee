//! Compiling in a child process, under the compile budget.
//!
//! wasmtime cannot stop a compile half-way, and a thread cannot be killed:
//! in-process, a module that takes minutes holds a core (and its memory)
//! for minutes whatever the caller decides. So when
//! [`EngineConfig::compiler`] names a program (the `nimbus` binary), every
//! Cranelift compile runs there instead:
//! - the parent starts `<compiler> compile-module <config JSON>` with an
//!   empty environment (no platform secrets), the module on stdin;
//! - the child limits its own data segment and CPU time
//!   ([`CompileBudget`]), builds an engine with the parent's exact settings
//!   (so the artifact loads in the parent and on every worker), compiles,
//!   and writes the native artifact to stdout;
//! - the parent kills it when the budget's time is up, and loads the
//!   artifact otherwise. What the child writes is machine code the
//!   parent's workers will run: it is as trusted as an in-process compile
//!   of the same untrusted module would be, no more.
//!
//! Without a compiler program (tests, embedding) compiles run in-process
//! under the static limits only.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;

use crate::{CompileError, EngineConfig};

/// The argument that starts the child side.
pub const COMPILE_MODULE_COMMAND: &str = "compile-module";

/// Exit code of a child that could not compile the module (its stderr says why).
const EXIT_REFUSED: i32 = 3;

/// Compile `binary` with `compiler`, within the budget in `config`: the
/// native artifact, which an engine with `config` loads.
pub(crate) fn compile(
    compiler: &Path,
    config: &EngineConfig,
    binary: &[u8],
) -> Result<Vec<u8>, CompileError> {
    let budget = config.compile_budget;
    let allowed = budget.time_for(binary.len());
    let settings = serde_json::to_string(config).expect("the engine settings serialise");
    let failed = |what: &str, e: std::io::Error| {
        CompileError::Panicked(format!("{what} the compiler {}: {e}", compiler.display()))
    };
    let mut child = Command::new(compiler)
        .arg(COMPILE_MODULE_COMMAND)
        .arg(settings)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed("cannot start", e))?;
    let (mut stdin, mut stdout, mut stderr) = (
        child.stdin.take().expect("piped"),
        child.stdout.take().expect("piped"),
        child.stderr.take().expect("piped"),
    );
    // Reading both outputs and writing the input on threads of their own:
    // none can block the others, and the wait below stays bounded.
    let (done, finished) = mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let _ = stdin.write_all(binary);
            drop(stdin);
        });
        let errors = scope.spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.by_ref().take(64 << 10).read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        });
        let artifact = scope.spawn(move || {
            let mut artifact = Vec::new();
            let read = stdout.read_to_end(&mut artifact).map(|_| artifact);
            let _ = done.send(());
            read
        });
        let in_time = match finished.recv_timeout(allowed) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
            Err(mpsc::RecvTimeoutError::Timeout) => false,
        };
        if !in_time {
            let _ = child.kill();
        }
        let status = child.wait().map_err(|e| failed("cannot wait for", e))?;
        let artifact = artifact.join().expect("reader");
        let errors = errors.join().expect("reader");
        if !in_time {
            return Err(CompileError::OverBudget(format!(
                "compiling took longer than its budget of {:.0} s",
                allowed.as_secs_f64()
            )));
        }
        outcome(status, artifact, errors.trim(), &budget)
    })
}

fn outcome(
    status: ExitStatus,
    artifact: std::io::Result<Vec<u8>>,
    errors: &str,
    budget: &crate::CompileBudget,
) -> Result<Vec<u8>, CompileError> {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(0), _) => {
            artifact.map_err(|e| CompileError::Panicked(format!("cannot read the artifact: {e}")))
        }
        (Some(EXIT_REFUSED), _) => Err(CompileError::Invalid(errors.to_owned())),
        // Out of memory (an allocation refused: Rust aborts) or CPU time.
        (_, Some(libc::SIGABRT | libc::SIGKILL | libc::SIGXCPU)) => {
            Err(CompileError::OverBudget(format!(
                "compiling needed more than its budget of {} MiB of memory or its CPU time",
                budget.memory_bytes >> 20
            )))
        }
        _ => Err(CompileError::Panicked(format!(
            "the compiler exited with {status}: {errors}"
        ))),
    }
}

/// The child side: run by the compiler program when its first argument is
/// [`COMPILE_MODULE_COMMAND`] and its second the engine settings (JSON).
/// Reads the module on stdin, writes the artifact on stdout; returns the
/// process's exit code.
pub fn serve_compile_module(settings: &str) -> i32 {
    let refuse = |message: String| {
        let _ = writeln!(std::io::stderr(), "{message}");
        EXIT_REFUSED
    };
    let mut config: EngineConfig = match serde_json::from_str(settings) {
        Ok(config) => config,
        Err(e) => return refuse(format!("bad engine settings: {e}")),
    };
    let mut binary = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut binary) {
        return refuse(format!("cannot read the module: {e}"));
    }
    limit_self(&config, binary.len());
    die_with_parent();
    config.compiler = None;
    config.code_cache_bytes = 0;
    let engine = match crate::Engine::new(config) {
        Ok(engine) => engine,
        Err(e) => return refuse(format!("cannot build the engine: {e:#}")),
    };
    match engine.compile_native(&binary) {
        Ok(artifact) => match std::io::stdout().lock().write_all(&artifact) {
            Ok(()) => 0,
            Err(e) => refuse(format!("cannot write the artifact: {e}")),
        },
        Err(e) => refuse(e.to_string()),
    }
}

/// Should the API server die, so does its compile (Linux; elsewhere the
/// CPU limit ends it).
#[allow(unsafe_code)]
fn die_with_parent() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and touches no memory.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
}

/// Hold this process to the budget: its data segment (where every
/// allocation lives) and its CPU time (a backstop: the parent kills it at
/// the wall-clock budget first). Best effort: a limit that cannot be set
/// leaves the parent's timeout.
#[allow(unsafe_code)]
fn limit_self(config: &EngineConfig, module_bytes: usize) {
    let budget = config.compile_budget;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let cpu_seconds = budget.time_for(module_bytes).as_secs() * cores + 1;
    for (resource, value) in [
        (libc::RLIMIT_DATA, budget.memory_bytes),
        (libc::RLIMIT_CPU, cpu_seconds),
    ] {
        let limit = libc::rlimit {
            rlim_cur: value,
            rlim_max: value,
        };
        // SAFETY: setrlimit reads the struct we pass and nothing else.
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            let _ = writeln!(
                std::io::stderr(),
                "cannot limit the compiler: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}
