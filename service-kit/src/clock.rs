//! The wall clock every process of the pipeline stamps times with.

/// Wall-clock unix milliseconds from the kernel's coarse realtime clock.
///
/// Why coarse: on this class of VM a precise `SystemTime::now()` costs 30-50 ns, a
/// third of a whole SDK call; the coarse clock is a vDSO read of ~6 ns with a
/// resolution of one scheduler tick (1-4 ms). `occurred_at` places events on a
/// timeline; within a tick, `producer_seq` gives their order. The collector's uses
/// (`received_at`, retention cut-offs, the monitor's windows) are coarser still.
///
/// `#[inline]`: the SDK calls it on every emit, from another crate.
#[inline]
pub fn now_ms() -> i64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    now.tv_sec * 1000 + now.tv_nsec / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_ms_is_the_system_clock_within_a_tick() {
        let precise = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64
        };
        let before = precise();
        let coarse = now_ms();
        let after = precise();
        // The coarse clock lags by at most one scheduler tick (4 ms at 250 Hz); 50 ms
        // leaves room for a busy machine.
        assert!(
            coarse >= before - 50 && coarse <= after,
            "{before} {coarse} {after}"
        );
    }
}
