#!/usr/bin/env bash
# What the fair-share scheduler costs a single tenant (goal: at most 3% of
# throughput on the WAT add). Builds this commit twice: as it is ("after"),
# and with the scheduler taken out ("before": the worker's fair queue
# replaced by the plain bounded channel it replaced, first come first
# served, no per-tenant share; the API servers' per-tenant rate check
# removed). Then scripts/bench-compare.sh runs both, rounds alternating.
#
# Usage: scripts/bench-fair-share.sh > report.md   (commit first: both
# builds are of HEAD). Release builds go to CARGO_TARGET_DIR (default
# /tmp/nimbus-bench-target); BENCH_* settings as for bench-compare.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/nimbus-bench-target}
work=$(mktemp -d)
cleanup() {
    for tree in after fifo; do git worktree remove --force "$work/$tree" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

git worktree add -q --detach "$work/after" HEAD
git worktree add -q --detach "$work/fifo" HEAD
cat >"$work/fifo/runtime/worker/src/fair_queue.rs" <<'RS'
//! Benchmark stand-in: the bounded first-come-first-served channel the
//! fair queue replaced, behind the same interface.
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

pub(crate) struct FairQueue<T> {
    sender: Mutex<Option<mpsc::Sender<(String, T)>>>,
    receiver: tokio::sync::Mutex<mpsc::Receiver<(String, T)>>,
}

impl<T> FairQueue<T> {
    pub(crate) fn new(capacity: usize, _per_tenant: usize, _depth: Arc<AtomicUsize>) -> Self {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        Self {
            sender: Mutex::new(Some(sender)),
            receiver: tokio::sync::Mutex::new(receiver),
        }
    }
    pub(crate) fn push(&self, tenant: String, item: T) -> Result<(), T> {
        let sender = self.sender.lock().unwrap().clone();
        match sender {
            Some(sender) => sender.try_send((tenant, item)).map_err(|e| e.into_inner().1),
            None => Err(item),
        }
    }
    pub(crate) async fn next(&self) -> Option<(String, T)> {
        self.receiver.lock().await.recv().await
    }
    pub(crate) fn done(&self, _tenant: &str) {}
    pub(crate) fn close(&self) {
        self.sender.lock().unwrap().take();
    }
}
RS
sed -i '/state\.tenant_rate\.check(/d' \
    "$work/fifo/runtime/api/src/routes/invocations.rs" "$work/fifo/runtime/api/src/routes/urls.rs"

for build in fifo after; do
    echo "== building $build" >&2
    (cd "$work/$build" && cargo build --release --quiet -p nimbus-cli >&2)
    cp "$CARGO_TARGET_DIR/release/nimbus" "$work/nimbus-$build"
done
scripts/bench-compare.sh "$work/nimbus-fifo" "$work/nimbus-after"
