//! The `process_*` metrics every Prometheus client exports, read from /proc at scrape time:
//! CPU seconds, resident memory, open file descriptors and the start time.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second in /proc's CPU times: USER_HZ, 100 on every Linux architecture that
/// matters here (the kernel fixes it for user space whatever CONFIG_HZ is).
const TICKS_PER_SECOND: f64 = 100.0;

/// Reads /proc/self on each scrape.
#[derive(Debug)]
pub(super) struct ProcessCollector;

/// What /proc says about this process now.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: i64,
    pub open_fds: i64,
    pub start_time_seconds: f64,
}

impl ProcessStats {
    /// Reads /proc/self/stat, /proc/self/status, /proc/self/fd and /proc/stat; what cannot be
    /// read stays 0.
    pub(super) fn read() -> ProcessStats {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let system = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count() as i64)
            .unwrap_or(0);
        let mut s = parse(&stat, &status, &system);
        s.open_fds = open_fds;
        s
    }
}

/// The stats from the text of /proc/self/stat, /proc/self/status and /proc/stat. Pure.
pub(super) fn parse(stat: &str, status: &str, system: &str) -> ProcessStats {
    // The command name (field 2) is in parentheses and may hold spaces: count after the last ')'.
    // Then field 3 (state) is index 0: utime (14) is 11, stime (15) is 12, starttime (22) is 19.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    let cpu_seconds = (field(11).unwrap_or(0.0) + field(12).unwrap_or(0.0)) / TICKS_PER_SECOND;
    let boot: Option<f64> = system
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok());
    let start_time_seconds = match (boot, field(19)) {
        (Some(boot), Some(ticks)) => boot + ticks / TICKS_PER_SECOND,
        _ => 0.0,
    };
    let resident_bytes = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<i64>().ok())
        .map_or(0, |kb| kb * 1024);
    ProcessStats {
        cpu_seconds,
        resident_bytes,
        open_fds: 0,
        start_time_seconds,
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = ProcessStats::read();
        let cpu = ConstCounter::new(s.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                s.resident_bytes as f64,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                s.open_fds as f64,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                s.start_time_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}
