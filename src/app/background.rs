//! The background runtime: one thread, at a lower scheduling priority than the proxy, for the
//! work that follows requests rather than serves them — the record fan-out and its consumers
//! (store writer, live windows, metrics, feed, trace export, alerts), report schedules,
//! retention, and the config watcher (which stats the policy files every 2 s and builds a new
//! detector, tens of milliseconds of CPU, on a reload). The store is opened here too, so SQLite's own worker thread, which sqlx starts
//! from the opening thread, inherits the same priority.
//!
//! Why: that work comes in bursts (a store batch is about a millisecond of query building on
//! this thread and a few of SQLite on its own), and on the proxy's runtime a burst sits in front
//! of whatever request lands on the same worker. On its own thread the kernel shares the cores
//! instead of tokio, and `NICE` steps below the proxy a proxy worker that wakes up preempts it. Trade-off: under
//! full CPU saturation the background gets a smaller share, so its queues fill sooner (they
//! are bounded and count their drops, as before); at nice 5 that share is still several times
//! what the store needs at the proxy's peak rate on this 2-core machine.

use anyhow::Context;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// How much nicer than the proxy the background thread (and the threads it starts) is.
const NICE: i32 = 5;

/// Keeps the background runtime running; dropping it stops the runtime (its tasks are dropped).
pub struct Done(#[allow(dead_code)] oneshot::Sender<()>);

/// Starts the background thread and returns a handle to spawn on it.
///
/// # Errors
/// The runtime or its thread cannot be created.
pub fn start() -> anyhow::Result<(Handle, Done)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the background runtime")?;
    let handle = rt.handle().clone();
    let (done, stop) = oneshot::channel::<()>();
    // Logs from background tasks go where the starting thread's go (an embedder's or a test's
    // scoped subscriber, not only the global one).
    let logs = tracing::dispatcher::get_default(Clone::clone);
    std::thread::Builder::new()
        .name("gatehouse-bg".into())
        .spawn(move || {
            let _logs = tracing::dispatcher::set_default(&logs);
            lower_priority();
            // Either a send or the sender's drop ends it; the runtime and its tasks go with it.
            let _ = rt.block_on(stop);
        })
        .context("starting the background thread")?;
    Ok((handle, Done(done)))
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // On Linux a thread id names one thread for get/setpriority(PRIO_PROCESS). Relative to
    // the process's own nice value, so a gatehouse started at -10 keeps its background at -5,
    // still ahead of other users' work at 0.
    let tid = rustix::thread::gettid();
    let now = rustix::process::getpriority_process(Some(tid)).unwrap_or(0);
    if let Err(e) = rustix::process::setpriority_process(Some(tid), now + NICE) {
        tracing::debug!(error = %e, "background thread keeps the default priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}
