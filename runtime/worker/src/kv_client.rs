//! A call's key-value operations, carried to the API servers: each one a
//! NATS request on `nimbus.kv.v1` with the grant the call brought
//! (`nimbus_core::kv::Grant`). A worker holds no permission on the state's
//! buckets and cannot make or widen a grant: it can only pass on, while it
//! lasts, the one an API server gave it for this call.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_nats::{Client, HeaderMap};
use nimbus_core::kv::{KvError, KvReply, KvRequest};
use nimbus_core::subjects;
use nimbus_core::wire::headers;
use nimbus_engine::KeyValue;

/// How long one operation waits for an API server: longer than the API
/// keeps retrying one (10 s of contention, a failover's wait), so that a
/// guest is not told "unavailable" about an operation still under way.
/// The invocation's own deadline (60 s at most) usually ends the wait
/// first.
const OPERATION_WAIT: Duration = Duration::from_secs(30);

/// One call's way to its function's stores.
pub(crate) struct NatsKv {
    pub(crate) client: Client,
    pub(crate) grant: String,
}

impl KeyValue for NatsKv {
    fn call(
        &self,
        request: KvRequest,
    ) -> Pin<Box<dyn Future<Output = Result<KvReply, KvError>> + Send + 'static>> {
        let client = self.client.clone();
        let mut map = HeaderMap::new();
        map.insert(headers::KV_GRANT, self.grant.as_str());
        let payload = request.frame();
        Box::pin(async move {
            let request = async_nats::Request::new()
                .headers(map)
                .payload(payload.into())
                .timeout(Some(OPERATION_WAIT));
            let message = match client.send_request(subjects::KV_REQUESTS, request).await {
                Ok(message) => message,
                Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                    return Err(KvError::unavailable(
                        "no API server serves key-value operations",
                    ));
                }
                Err(e) if e.kind() == async_nats::RequestErrorKind::TimedOut => {
                    return Err(KvError::unavailable(format!(
                        "no API server answered the key-value operation within {} s \
                         (it may have been applied)",
                        OPERATION_WAIT.as_secs()
                    )));
                }
                Err(e) => {
                    return Err(KvError::unavailable(format!(
                        "the key-value operation could not be sent: {e}"
                    )));
                }
            };
            KvReply::parse(&message.payload)
        })
    }
}
