//! Reusable threads for requests that block (exec sessions, fs streams,
//! FUSE relays).
//!
//! Starting a thread costs about half a millisecond of guest CPU under TCG
//! (clone, a fresh stack and its page faults) and ending one as much again,
//! which every exec round trip paid. A finished worker waits for the next
//! job instead; at most `MAX_IDLE` wait, so a burst of requests leaves only
//! a few threads behind.

use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, Sender};

type Job = Box<dyn FnOnce() + Send>;

/// Idle workers kept after a burst.
const MAX_IDLE: usize = 8;
/// Stack of a worker: fs requests walk directory trees recursively.
const STACK: usize = 1 << 20;

/// Idle workers, each waiting on its own channel. A worker is in this list
/// only while it waits, and leaves it only by being handed a job.
static IDLE: Mutex<Vec<Sender<Job>>> = Mutex::new(Vec::new());

fn idle() -> std::sync::MutexGuard<'static, Vec<Sender<Job>>> {
    IDLE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `job` on an idle worker, or on a new thread when none is idle.
/// Err when no thread could be started.
pub fn run(job: impl FnOnce() + Send + 'static) -> Result<(), ()> {
    let mut job: Job = Box::new(job);
    while let Some(worker) = idle().pop() {
        match worker.send(job) {
            Ok(()) => return Ok(()),
            // Cannot happen (a listed worker is waiting), but never lose a job.
            Err(mpsc::SendError(back)) => job = back,
        }
    }
    spawn(job)
}

/// Starts `count` workers that go idle at once (at most MAX_IDLE wait), so
/// a VM restored from a saved state taken after this creates no thread for
/// its first requests.
pub fn prestart(count: usize) {
    for _ in 0..count.min(MAX_IDLE) {
        let _ = spawn(Box::new(|| {}));
    }
}

fn spawn(job: Job) -> Result<(), ()> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("worker".into())
        .stack_size(STACK)
        .spawn(move || work(job, tx, rx))
        .map(|_| ())
        .map_err(|_| ())
}

fn work(first: Job, tx: Sender<Job>, rx: Receiver<Job>) {
    first();
    loop {
        {
            let mut idle = idle();
            if idle.len() >= MAX_IDLE {
                return;
            }
            idle.push(tx.clone());
        }
        match rx.recv() {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}
