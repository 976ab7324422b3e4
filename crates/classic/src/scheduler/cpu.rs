//! Classic's CPU unit. A request's `CpuShares` (`docker run -c 2`) means *CPUs to
//! reserve*; classic turns it into real shares for the engine at create time, and turns
//! the shares of containers it reads back into CPUs, so reservations compare with NCPU.

/// Shares sent to the engine for `cpus` reserved on an engine with `ncpu` CPUs:
/// `ceil(cpus * 1024 / ncpu)`. An engine reporting no CPU gets the value unchanged.
pub fn cpus_to_shares(cpus: i64, ncpu: i64) -> i64 {
    if ncpu <= 0 {
        return cpus;
    }
    (cpus * 1024 + ncpu - 1).div_euclid(ncpu)
}

/// CPUs a container with `shares` reserves on an engine with `ncpu` CPUs:
/// `shares * ncpu / 1024`, rounded down as classic's integer arithmetic does.
pub fn shares_to_cpus(shares: i64, ncpu: i64) -> i64 {
    shares * ncpu / 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_on_typical_engines() {
        assert_eq!(cpus_to_shares(1, 4), 256);
        assert_eq!(cpus_to_shares(1, 3), 342);
        assert_eq!(cpus_to_shares(0, 4), 0);
        assert_eq!(shares_to_cpus(256, 4), 1);
        assert_eq!(shares_to_cpus(342, 3), 1);
        // Docker's default 1024 shares (or 0, unset) read back as all or no CPUs.
        assert_eq!(shares_to_cpus(1024, 8), 8);
        assert_eq!(shares_to_cpus(0, 8), 0);
        assert_eq!(shares_to_cpus(100, 4), 0);
    }

    #[test]
    fn zero_cpu_engine_does_not_divide_by_zero() {
        assert_eq!(cpus_to_shares(2, 0), 2);
    }
}
