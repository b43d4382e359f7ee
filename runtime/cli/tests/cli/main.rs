//! The `nimbus` binary, run as a process: `up` and every client command.

mod client;
mod compile_budget;
mod crash;
mod stack;
mod up;
