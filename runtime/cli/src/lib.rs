//! Process plumbing shared by the `nimbus` binary and the end-to-end tests:
//! finding and running a nats-server, and running the API and the worker
//! against a NATS URL.

pub mod nats_server;
pub mod platform;
