//! QuickJS's bytecode, through its C API (rquickjs exposes it for modules
//! only): compile a global script without running it, write and read its
//! bytecode, run it.

use std::ffi::CString;

use rquickjs::{Ctx, Value, qjs};

use crate::FILENAME;

/// `JS_Eval` with `COMPILE_ONLY`: a global script compiled, not run.
#[allow(unsafe_code)]
pub(crate) fn compile_global<'js>(ctx: &Ctx<'js>, source: &str) -> rquickjs::Result<Value<'js>> {
    let source = CString::new(source)?;
    let filename = CString::new(FILENAME)?;
    let flags = (qjs::JS_EVAL_TYPE_GLOBAL | qjs::JS_EVAL_FLAG_COMPILE_ONLY) as i32;
    // SAFETY: both strings are NUL-terminated and live across the call; the
    // returned value is owned and handed to `Value`.
    unsafe {
        let value = qjs::JS_Eval(
            ctx.as_raw().as_ptr(),
            source.as_ptr(),
            source.as_bytes().len() as _,
            filename.as_ptr(),
            flags,
        );
        owned(ctx, value)
    }
}

/// The bytecode of a compiled script.
#[allow(unsafe_code)]
pub(crate) fn write_object(ctx: &Ctx<'_>, compiled: &Value<'_>) -> rquickjs::Result<Vec<u8>> {
    let mut len = 0;
    // SAFETY: `compiled` is a live value of this context; the buffer QuickJS
    // returns is copied and freed with its allocator.
    unsafe {
        let buffer = qjs::JS_WriteObject(
            ctx.as_raw().as_ptr(),
            &mut len,
            compiled.as_raw(),
            (qjs::JS_WRITE_OBJ_BYTECODE | qjs::JS_WRITE_OBJ_STRIP_SOURCE) as i32,
        );
        if buffer.is_null() {
            return Err(rquickjs::Error::Exception);
        }
        let bytes = std::slice::from_raw_parts(buffer, len as usize).to_vec();
        qjs::js_free(ctx.as_raw().as_ptr(), buffer.cast());
        Ok(bytes)
    }
}

/// A compiled script read back from its bytecode.
#[allow(unsafe_code)]
pub(crate) fn read_object<'js>(ctx: &Ctx<'js>, bytecode: &[u8]) -> rquickjs::Result<Value<'js>> {
    // SAFETY: the buffer outlives the call (QuickJS copies what it keeps);
    // see `load_script` on where the bytecode comes from.
    unsafe {
        let value = qjs::JS_ReadObject(
            ctx.as_raw().as_ptr(),
            bytecode.as_ptr(),
            bytecode.len() as _,
            qjs::JS_READ_OBJ_BYTECODE as i32,
        );
        owned(ctx, value)
    }
}

/// Run a compiled script: its completion value.
#[allow(unsafe_code)]
pub(crate) fn eval_function<'js>(
    ctx: &Ctx<'js>,
    compiled: Value<'js>,
) -> rquickjs::Result<Value<'js>> {
    // SAFETY: `JS_EvalFunction` takes ownership of its argument, so the
    // reference `compiled` held is handed over (duplicated first, since the
    // `Value` still drops its own).
    unsafe {
        let function = qjs::JS_DupValue(ctx.as_raw().as_ptr(), compiled.as_raw());
        let value = qjs::JS_EvalFunction(ctx.as_raw().as_ptr(), function);
        std::mem::forget(compiled);
        owned(ctx, value)
    }
}

/// An owned raw value, or the pending exception.
#[allow(unsafe_code)]
unsafe fn owned<'js>(ctx: &Ctx<'js>, value: qjs::JSValue) -> rquickjs::Result<Value<'js>> {
    // SAFETY (caller): `value` is owned and belongs to `ctx`.
    unsafe {
        if qjs::JS_IsException(value) {
            Err(rquickjs::Error::Exception)
        } else {
            Ok(Value::from_raw(ctx.clone(), value))
        }
    }
}
