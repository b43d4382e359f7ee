//! `wasi:keyvalue` (0.2.0-draft2: `store`, `atomics`, `batch`) for
//! components, on the invocation's key-value access (`kv.rs`).
//!
//! - `open` succeeds for a store the function declared in its
//!   `key_value_stores` (`access-denied` otherwise, `no-such-store` for a
//!   name that cannot be a store); nothing is read until an operation.
//! - `get`, `set`, `delete`, `exists` act on one key; `list-keys` answers
//!   keys in byte order, a page at a time, the cursor being the last key
//!   of the page.
//! - `increment` is atomic (the value is a decimal integer as text, an
//!   absent key counts as 0); `cas::new` reads the key's revision,
//!   `current` its value (read again: a handle holds no value, so a guest
//!   cannot make the host hold values outside its memory limit; a value
//!   newer than the handle makes the swap fail, as it should), `swap`
//!   writes only if the revision is unchanged, and otherwise answers
//!   `cas-failed` with a fresh handle.
//! - `batch` operations are the single ones in turn (not atomic together);
//!   `get-many` answers at most 8 MiB of values in one call.
//!
//! Errors that are the guest's doing (a quota, a bad key, too many
//! operations) come back as `other("<kind>: <message>")`.

use bytes::Bytes;
use nimbus_core::kv::{KvError, KvErrorKind, KvOp, KvRequest};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::kv::KvCalls;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
            "wasi:keyvalue/atomics.cas": super::Cas,
        },
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};

/// An open store.
pub struct Bucket {
    store: String,
}

/// A compare-and-swap in progress: the key and its revision when read.
pub struct Cas {
    store: String,
    key: String,
    revision: u64,
}

/// The most `get-many` answers in one call.
const MAX_BATCH_BYTES: usize = 8 << 20;

/// What `wasi:keyvalue` works on: the component's resource table and the
/// invocation's key-value access.
pub(crate) struct KvView<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) calls: &'a mut KvCalls,
}

struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}

/// Add `wasi:keyvalue/{store,atomics,batch}` to `linker`.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, HasKv>(linker, view)?;
    atomics::add_to_linker::<T, HasKv>(linker, view)?;
    batch::add_to_linker::<T, HasKv>(linker, view)?;
    Ok(())
}

fn to_wasi(error: KvError) -> store::Error {
    match error.kind {
        KvErrorKind::AccessDenied => store::Error::AccessDenied,
        KvErrorKind::NoSuchStore => store::Error::NoSuchStore,
        _ => store::Error::Other(error.to_string()),
    }
}

impl KvView<'_> {
    fn store_of(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<String> {
        Ok(self.table.get(bucket)?.store.clone())
    }

    async fn op(
        &mut self,
        store: String,
        op: KvOp,
        value: Bytes,
    ) -> Result<nimbus_core::kv::KvReply, store::Error> {
        if let Some(key) = op.key() {
            nimbus_core::kv::check_key(key).map_err(to_wasi)?;
        }
        self.calls
            .call(KvRequest { store, op, value })
            .await
            .map_err(to_wasi)
    }

    async fn get(&mut self, store: String, key: String) -> Result<Option<Vec<u8>>, store::Error> {
        let reply = self.op(store, KvOp::Get { key }, Bytes::new()).await?;
        Ok((reply.found == Some(true)).then(|| reply.value.to_vec()))
    }

    async fn set(
        &mut self,
        store: String,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), store::Error> {
        self.op(store, KvOp::Set { key }, value.into()).await?;
        Ok(())
    }

    async fn delete(&mut self, store: String, key: String) -> Result<(), store::Error> {
        self.op(store, KvOp::Delete { key }, Bytes::new()).await?;
        Ok(())
    }

    /// A CAS handle on `key` at its revision now.
    async fn cas(&mut self, store: String, key: String) -> Result<Cas, store::Error> {
        let reply = self
            .op(store.clone(), KvOp::Read { key: key.clone() }, Bytes::new())
            .await?;
        Ok(Cas {
            store,
            key,
            revision: reply.revision.unwrap_or(0),
        })
    }
}

impl store::Host for KvView<'_> {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, store::Error>> {
        if let Err(e) = nimbus_core::kv::check_store(&identifier) {
            return Ok(Err(to_wasi(KvError::new(KvErrorKind::NoSuchStore, e))));
        }
        if let Err(e) = self.calls.may_open(&identifier) {
            return Ok(Err(to_wasi(e)));
        }
        Ok(Ok(self.table.push(Bucket { store: identifier })?))
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let store = self.store_of(&bucket)?;
        Ok(KvView::get(self, store, key).await)
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let store = self.store_of(&bucket)?;
        Ok(KvView::set(self, store, key, value).await)
    }

    async fn delete(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let store = self.store_of(&bucket)?;
        Ok(KvView::delete(self, store, key).await)
    }

    async fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, store::Error>> {
        let store = self.store_of(&bucket)?;
        let reply = self.op(store, KvOp::Exists { key }, Bytes::new()).await;
        Ok(reply.map(|r| r.found == Some(true)))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        let store = self.store_of(&bucket)?;
        let op = KvOp::List {
            prefix: String::new(),
            cursor,
        };
        let reply = self.op(store, op, Bytes::new()).await;
        Ok(reply.map(|r| store::KeyResponse {
            keys: r.keys.unwrap_or_default(),
            cursor: r.cursor,
        }))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, store::Error>> {
        let store = self.store_of(&bucket)?;
        let reply = self
            .op(store, KvOp::Increment { key, delta }, Bytes::new())
            .await;
        Ok(reply.map(|r| r.counter.unwrap_or_default()))
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let Cas {
            store,
            key,
            revision,
            ..
        } = self.table.delete(cas)?;
        let op = KvOp::Swap {
            key: key.clone(),
            revision,
        };
        match self.op(store.clone(), op, value.into()).await {
            Err(e) => Ok(Err(atomics::CasError::StoreError(e))),
            Ok(reply) if reply.swapped == Some(true) => Ok(Ok(())),
            Ok(_) => match self.cas(store, key).await {
                Ok(fresh) => Ok(Err(atomics::CasError::CasFailed(self.table.push(fresh)?))),
                Err(e) => Ok(Err(atomics::CasError::StoreError(e))),
            },
        }
    }
}

impl atomics::HostCas for KvView<'_> {
    async fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, store::Error>> {
        let store = self.store_of(&bucket)?;
        match self.cas(store, key).await {
            Ok(cas) => Ok(Ok(self.table.push(cas)?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn current(
        &mut self,
        cas: Resource<Cas>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let cas = self.table.get(&cas)?;
        let (store, key) = (cas.store.clone(), cas.key.clone());
        Ok(KvView::get(self, store, key).await)
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, store::Error>> {
        let store = self.store_of(&bucket)?;
        let mut found = Vec::with_capacity(keys.len());
        let mut bytes = 0;
        for key in keys {
            match KvView::get(self, store.clone(), key.clone()).await {
                Ok(value) => {
                    bytes += value.as_ref().map_or(0, Vec::len);
                    if bytes > MAX_BATCH_BYTES {
                        return Ok(Err(store::Error::Other(format!(
                            "too_large: get-many answers at most {MAX_BATCH_BYTES} bytes of values"
                        ))));
                    }
                    found.push(value.map(|value| (key, value)));
                }
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok(found))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let store = self.store_of(&bucket)?;
        for (key, value) in key_values {
            if let Err(e) = KvView::set(self, store.clone(), key, value).await {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let store = self.store_of(&bucket)?;
        for key in keys {
            if let Err(e) = KvView::delete(self, store.clone(), key).await {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    }
}
