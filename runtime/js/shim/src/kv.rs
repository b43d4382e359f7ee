//! `Nimbus.kv`: the function's key-value stores, through the platform's
//! `nimbus_kv` import (a JSON line naming the operation, then the value;
//! the reply likewise). Values are text (UTF-8) here, or JSON with
//! `getJson`/`setJson`:
//!
//! ```js
//! const store = Nimbus.kv.open();          // 'default', or a declared name
//! const hits = store.increment('hits');    // atomic; 1, 2, 3...
//! store.set('greeting', 'hello');
//! store.get('greeting');                   // 'hello' (null if absent)
//! store.keys('user/');                     // every key with the prefix
//! const { value, revision } = store.read('list');
//! store.swap('list', revision, '[1]');     // false if it changed since
//! ```
//!
//! Every call is synchronous; a failure throws an `Error` whose `kind` is
//! the platform's (`access_denied`, `quota_exceeded`...).

use rquickjs::{Ctx, Function};

#[link(wasm_import_module = "nimbus_kv")]
unsafe extern "C" {
    #[link_name = "call"]
    fn kv_call(ptr: *const u8, len: i32) -> i32;
    #[link_name = "read"]
    fn kv_read(ptr: *mut u8, len: i32) -> i32;
}

/// Send one operation (its JSON line, and the value for `set`/`swap`); the
/// reply's line and its value, as text.
fn host_kv(line: String, value: String) -> Vec<String> {
    let mut request = line.into_bytes();
    request.push(b'\n');
    request.extend_from_slice(value.as_bytes());
    let Some(reply) = crate::globals::exchange(kv_call, kv_read, &request) else {
        return vec![
            r#"{"error":{"kind":"too_large","message":"the request is too large"}}"#.to_owned(),
            String::new(),
        ];
    };
    let at = reply.iter().position(|&b| b == b'\n').unwrap_or(reply.len());
    let value = reply.get(at + 1..).unwrap_or_default();
    vec![
        String::from_utf8_lossy(&reply[..at]).into_owned(),
        String::from_utf8_lossy(value).into_owned(),
    ]
}

/// Install `Nimbus.kv`.
pub(crate) fn install_kv(ctx: &Ctx<'_>) -> rquickjs::Result<()> {
    ctx.globals()
        .set("__nimbus_kv", Function::new(ctx.clone(), host_kv)?)?;
    ctx.eval::<(), _>(
        r#"(() => {
            const send = globalThis.__nimbus_kv;
            delete globalThis.__nimbus_kv;
            const call = (store, op, fields, value = '') => {
                if (typeof value !== 'string') {
                    throw new TypeError('Nimbus.kv values are strings; use setJson for other values');
                }
                const [line, text] = send(JSON.stringify({ store, op, ...fields }), value);
                const reply = JSON.parse(line);
                if (reply.error !== undefined) {
                    const error = new Error(`key-value ${reply.error.kind}: ${reply.error.message}`);
                    error.kind = reply.error.kind;
                    throw error;
                }
                reply.text = text;
                return reply;
            };
            class Store {
                constructor(name) { this.name = name; }
                get(key) { const r = call(this.name, 'get', { key }); return r.found ? r.text : null; }
                getJson(key) { const text = this.get(key); return text === null ? null : JSON.parse(text); }
                set(key, value) { call(this.name, 'set', { key }, value); }
                setJson(key, value) { this.set(key, JSON.stringify(value)); }
                delete(key) { call(this.name, 'delete', { key }); }
                exists(key) { return call(this.name, 'exists', { key }).found === true; }
                keys(prefix = '') {
                    const keys = [];
                    let cursor = null;
                    do {
                        const r = call(this.name, 'list', { prefix, cursor });
                        keys.push(...r.keys);
                        cursor = r.cursor === undefined ? null : r.cursor;
                    } while (cursor !== null);
                    return keys;
                }
                increment(key, delta = 1) { return call(this.name, 'increment', { key, delta }).counter; }
                read(key) {
                    const r = call(this.name, 'read', { key });
                    return { value: r.found ? r.text : null, revision: r.revision };
                }
                swap(key, revision, value) { return call(this.name, 'swap', { key, revision }, value).swapped === true; }
            }
            globalThis.Nimbus = Object.freeze({
                kv: Object.freeze({ open: (name = 'default') => new Store(String(name)) }),
            });
        })();"#,
    )
}
