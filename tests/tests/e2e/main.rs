//! End-to-end tests: real nats-server, real HTTP, real wasm, in one binary
//! (one link of wasmtime for the whole suite).

mod harness;

mod auth;
mod cluster;
mod deploy;
mod dispatch;
mod examples;
mod functions;
mod gateway;
mod jobs;
mod js;
mod seed;
