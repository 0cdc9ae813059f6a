//! The bridge from the core's synchronous key traits to the async AWS SDK.
//!
//! `KeyWrapper::wrap`, `KeyUnwrapper::unwrap` and `Signer::sign` are synchronous, and they are
//! called both from plain threads (the command line, rayon workers) and from code running on a
//! tokio runtime (a Lambda handler). Calling `Runtime::block_on` or `Handle::block_on` on a
//! runtime worker panics or starves the runtime, so every KMS request instead runs on one
//! dedicated, process-wide runtime with its own worker threads, and the synchronous caller
//! waits on a plain channel for the answer. That wait blocks the calling thread for one KMS
//! round trip and nothing else: the request itself never needs the caller's runtime, so it
//! cannot deadlock on a current-thread runtime either. Async callers use the `*_async`
//! methods, which also run the request on the dedicated runtime (so that the SDK's pooled
//! connections always live on a runtime that outlives them) and await its result.

use std::future::Future;
use std::sync::OnceLock;
use std::sync::mpsc;

use tokio::runtime::{Builder, Runtime};

/// Worker threads of the dedicated runtime: KMS requests are small and I/O bound.
const WORKER_THREADS: usize = 2;

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("cipherflow-aws-kms")
            .enable_all()
            .build()
            .expect("cannot start the cipherflow-aws KMS runtime (out of threads?)")
    })
}

/// Runs `future` on the dedicated runtime and blocks the calling thread until it finishes.
/// Safe from any thread, including a tokio worker (which it blocks for the duration).
pub(crate) fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    let task = runtime().spawn(future);
    runtime().spawn(async move {
        // The receiver only goes away if the caller panicked; nothing to report then.
        let _ = tx.send(task.await);
    });
    finish(
        rx.recv()
            .expect("the forwarding task sends exactly once and never panics"),
    )
}

/// Runs `future` on the dedicated runtime and awaits its output from any async context.
pub(crate) async fn run<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    finish(runtime().spawn(future).await)
}

/// A request that panicked panics its caller with the same payload.
fn finish<T>(result: Result<T, tokio::task::JoinError>) -> T {
    match result {
        Ok(output) => output,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(_) => panic!("cipherflow-aws KMS task was cancelled (runtime shutting down)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_on_from_a_plain_thread() {
        assert_eq!(block_on(async { 40 + 2 }), 42);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn block_on_inside_a_current_thread_runtime_does_not_deadlock() {
        // The future needs a timer: it can only finish because it runs on the dedicated
        // runtime, not on this (blocked) one.
        let out = block_on(async {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            7
        });
        assert_eq!(out, 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_and_block_on_inside_a_multi_thread_runtime() {
        assert_eq!(run(async { 1 }).await, 1);
        let out = tokio::task::spawn(async { block_on(async { 2 }) })
            .await
            .unwrap();
        assert_eq!(out, 2);
    }

    #[test]
    fn a_panicking_request_panics_the_caller() {
        let caught = std::panic::catch_unwind(|| block_on(async { panic!("boom") }));
        let payload = caught.unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
    }
}
