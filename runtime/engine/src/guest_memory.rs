//! A core module's exported `memory`, as the `nimbus_*` host imports
//! (`http_import.rs`, `kv_import.rs`) read requests from it and copy their
//! outcomes back.

use wasmtime::Caller;

use crate::invoke::Host;

fn memory(caller: &mut Caller<'_, Host>, import: &str) -> wasmtime::Result<wasmtime::Memory> {
    caller
        .get_export("memory")
        .and_then(|e| e.into_memory())
        .ok_or_else(|| {
            wasmtime::Error::msg(format!("{import} needs the module to export its `memory`"))
        })
}

/// The `len` bytes at `ptr`, checked against the memory's size before
/// anything is allocated for them (a guest cannot make the host allocate
/// more than it holds itself).
pub(crate) fn read(
    caller: &mut Caller<'_, Host>,
    import: &str,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<Vec<u8>> {
    let memory = memory(caller, import)?;
    let start = ptr as u32 as usize;
    let len = len as u32 as usize;
    if start.saturating_add(len) > memory.data_size(&*caller) {
        return Err(wasmtime::Error::msg(format!(
            "{import}: the request is out of bounds"
        )));
    }
    let mut bytes = vec![0; len];
    memory.read(&*caller, start, &mut bytes)?;
    Ok(bytes)
}

/// Copy up to `len` bytes of `pending` to `ptr`: the bytes copied.
pub(crate) fn write(
    caller: &mut Caller<'_, Host>,
    import: &str,
    pending: &[u8],
    ptr: i32,
    len: i32,
) -> wasmtime::Result<i32> {
    let n = pending.len().min(usize::try_from(len).unwrap_or(0));
    memory(caller, import)?.write(&mut *caller, ptr as u32 as usize, &pending[..n])?;
    Ok(n as i32)
}

/// Whether `ty` is `(i32, i32) -> i32`, the type of every `nimbus_*`
/// import.
pub(crate) fn is_pair_to_i32(ty: &wasmtime::FuncType) -> bool {
    use wasmtime::ValType;
    ty.params().map(|p| p.is_i32()).collect::<Vec<_>>() == [true, true]
        && matches!(
            ty.results().collect::<Vec<ValType>>().as_slice(),
            [ValType::I32]
        )
}
