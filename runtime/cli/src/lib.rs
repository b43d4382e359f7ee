//! The `nimbus` binary's library: process plumbing shared with the
//! end-to-end tests (finding and running a nats-server, running the API and
//! the worker against a NATS URL, starting and stopping them as
//! components), the HTTP client behind the client commands, and the load
//! generator behind `nimbus bench` and the arithmetic of `nimbus top`. The commands themselves live in the
//! binary (`src/commands/`).

pub mod bench;
pub mod client;
pub mod component;
pub mod nats_server;
pub mod platform;
pub mod telemetry;
pub mod top;
