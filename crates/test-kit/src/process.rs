//! What a process costs, read from `/proc` (Linux): benchmarks compare
//! servers by the CPU and memory of their own processes.

const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// CPU time (user, system) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> std::io::Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces), from field 3.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| -> std::io::Result<f64> {
        fields
            .get(index)
            .and_then(|value| value.parse::<f64>().ok())
            .map(|ticks| ticks / CLOCK_TICKS_PER_SECOND)
            .ok_or_else(|| std::io::Error::other(format!("unreadable /proc/{pid}/stat")))
    };
    Ok((ticks(11)?, ticks(12)?))
}

/// Total CPU seconds (user + system) of several processes.
pub fn total_cpu_seconds(pids: &[u32]) -> std::io::Result<f64> {
    pids.iter().try_fold(0.0, |sum, pid| {
        let (user, system) = cpu_seconds(*pid)?;
        Ok(sum + user + system)
    })
}

/// Resident set size in KiB.
pub fn rss_kb(pid: u32) -> std::io::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no VmRSS in /proc/{pid}/status")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        // Busy for 50 ms: at least a few clock ticks of CPU.
        let start = std::time::Instant::now();
        let mut spin = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(50) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let (user, system) = cpu_seconds(pid).unwrap();
        assert!(user + system > 0.0, "{user} + {system}");
        assert!(rss_kb(pid).unwrap() > 100.0);
        assert!(cpu_seconds(u32::MAX).is_err());
    }
}
