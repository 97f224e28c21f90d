//! The host's TSC rate. A guest under TCG reads the host's TSC as its own,
//! and on a microvm (no HPET, no ACPI PM timer) its kernel cannot calibrate
//! it, so the host says the rate on the kernel command line; a guessed rate
//! made guest clocks drift (0.15% here: two minutes a day).

use std::time::{Duration, Instant};

use crate::error::ArgErr;
use crate::value::{Args, Env};
use crate::work::{Call, Out, Spec};

/// Length of one measuring window: long enough that reading the two clocks
/// (well under a microsecond) errs by a few parts per million.
const WINDOW: Duration = Duration::from_millis(30);

/// The TSC and the monotonic clock read as close together as the CPU allows:
/// the TSC read twice around the clock, and its midpoint taken.
fn paired_reading() -> (u64, Instant) {
    let before = unsafe { core::arch::x86_64::_rdtsc() };
    let now = Instant::now();
    let after = unsafe { core::arch::x86_64::_rdtsc() };
    (before + (after - before) / 2, now)
}

/// TSC ticks per millisecond of the monotonic clock: the median of three windows.
fn tsc_khz() -> u64 {
    let mut rates: Vec<u64> = (0..3)
        .map(|_| {
            let (tsc0, t0) = paired_reading();
            std::thread::sleep(WINDOW);
            let (tsc1, t1) = paired_reading();
            let nanos = (t1 - t0).as_nanos().max(1);
            ((tsc1.wrapping_sub(tsc0)) as u128 * 1_000_000 / nanos) as u64
        })
        .collect();
    rates.sort_unstable();
    rates[1]
}

/// `tscKhz()` → number: the host's TSC rate in kHz, measured (about 0.1 s).
fn parse_tsc_khz(_env: Env, _args: &Args) -> Result<Call, ArgErr> {
    Ok(Call::new(|| Ok(Out::Num(tsc_khz() as f64))))
}

/// `tscKhz` and, on the threadpool (the measuring sleeps), `tscKhzAsync`.
pub const SPECS: &[Spec] = &[Spec {
    name: "tscKhz",
    parse: parse_tsc_khz,
}];
