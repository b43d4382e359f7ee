//! `nimbus_kv`: key-value state for WASI preview 1 modules (the Rust SDK's
//! `nimbus_sdk::kv`, JavaScript's `Nimbus.kv`), which have no
//! `wasi:keyvalue`. Two functions, both on the module's exported `memory`:
//!
//! - `call(request_ptr: i32, request_len: i32) -> i32`: the request is a
//!   JSON line naming the store and the operation, then, for `set` and
//!   `swap`, the value's raw bytes (`nimbus_core::kv::KvRequest`):
//!   `{"store":"default","op":"get","key":"hits"}`,
//!   `{"store":"default","op":"set","key":"k"}\n<value>`,
//!   `{"store":"default","op":"increment","key":"hits","delta":1}`,
//!   `{"store":"default","op":"list","prefix":"user/","cursor":null}`,
//!   `{"store":"default","op":"read","key":"k"}` (value and revision),
//!   `{"store":"default","op":"swap","key":"k","revision":7}\n<value>`,
//!   `delete`, `exists`. The host applies it to the function's stores
//!   (`kv.rs`) and answers the length of the outcome, which it keeps: a
//!   JSON line (`nimbus_core::kv::KvReply`: `found`, `revision`,
//!   `counter`, `keys`, `cursor`, `swapped`, or `error: {kind, message}`),
//!   then the value's raw bytes for `get` and `read`.
//! - `read(ptr: i32, len: i32) -> i32`: copies the kept outcome (up to
//!   `len` bytes) to `ptr`, forgets it, and answers the bytes copied.
//!
//! A request larger than a value may be (1 MiB) plus 64 KiB traps before
//! the host reads it; every `call` counts against the invocation's
//! operation cap.

use bytes::Bytes;
use nimbus_core::kv::{KvReply, KvRequest, MAX_VALUE_BYTES};
use wasmtime::{Caller, Linker};

use crate::guest_memory;
use crate::invoke::Host;
use crate::kv::KvCalls;

/// The import module's name.
pub const KV_MODULE: &str = "nimbus_kv";

/// What a module's key-value access keeps between `call` and `read`.
pub(crate) struct HostKv {
    pub(crate) calls: KvCalls,
    pending: Vec<u8>,
}

impl HostKv {
    pub(crate) fn new(calls: KvCalls) -> Self {
        Self {
            calls,
            pending: Vec::new(),
        }
    }
}

/// Whether `name` is a function of [`KV_MODULE`] with the type it must
/// have (checked at upload).
pub(crate) fn is_import(name: &str, ty: &wasmtime::FuncType) -> bool {
    matches!(name, "call" | "read") && guest_memory::is_pair_to_i32(ty)
}

/// Add `nimbus_kv.call` and `nimbus_kv.read` to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> Result<(), wasmtime::Error> {
    linker.func_wrap_async(
        KV_MODULE,
        "call",
        |mut caller: Caller<'_, Host>, (ptr, len): (i32, i32)| {
            Box::new(async move {
                let cap = MAX_VALUE_BYTES + (64 << 10);
                if len as u32 as usize > cap {
                    return Err(wasmtime::Error::msg(format!(
                        "nimbus_kv.call: a request of {len} bytes; at most {cap} \
                         (a 1 MiB value and 64 KiB for the rest)"
                    )));
                }
                let request = guest_memory::read(&mut caller, "nimbus_kv.call", ptr, len)?;
                let reply = match KvRequest::parse(&Bytes::from(request)) {
                    Ok(request) => caller.data_mut().kv.calls.call(request).await,
                    Err(e) => Err(e),
                }
                .unwrap_or_else(KvReply::failed);
                let framed = reply.frame();
                let len = i32::try_from(framed.len()).unwrap_or(i32::MAX);
                caller.data_mut().kv.pending = framed;
                Ok(len)
            })
        },
    )?;
    linker.func_wrap(
        KV_MODULE,
        "read",
        |mut caller: Caller<'_, Host>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let pending = std::mem::take(&mut caller.data_mut().kv.pending);
            guest_memory::write(&mut caller, "nimbus_kv.read", &pending, ptr, len)
        },
    )?;
    Ok(())
}
