//! End-to-end tests: real nats-server, real HTTP, real wasm, in one binary
//! (one link of wasmtime for the whole suite); `handlers` drives the API
//! in-process without NATS.

mod harness;

mod artifact_delivery;
mod artifacts;
mod auth;
mod auth_limits;
mod busy_compiles;
mod cluster;
mod cold;
mod components;
mod console;
mod deploy;
mod dispatch;
mod docs;
mod examples;
mod fair_share;
mod function_cache;
mod function_config;
mod functions;
mod gateway;
mod handlers;
mod hot_scripts;
mod jobs;
mod js;
mod kv_guests;
mod kv_http;
mod live_logs;
mod metrics;
mod module_gc;
mod nats_permissions;
mod openapi;
mod otlp;
mod outbound;
mod outbound_server;
mod quotas;
mod seed;
mod top;
mod traces;
mod urls;
