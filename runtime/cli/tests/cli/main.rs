//! The `nimbus` binary, run as a process: `up` and every client command.

mod client;
mod stack;
mod up;
