//! What the machine offers, read from the host.

/// The host name, lower-cased (a Node name must be lower case).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "localhost".into()).trim().to_lowercase()
}

/// CPUs this process may use.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Total memory in bytes, from /proc/meminfo.
pub fn memory_bytes() -> Option<u64> {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_gives_the_total_in_bytes() {
        let text = "MemTotal:       24576000 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_meminfo(text), Some(24_576_000 * 1024));
        assert_eq!(parse_meminfo("nothing"), None);
    }

    #[test]
    fn this_host_has_something_to_offer() {
        assert!(cpus() >= 1);
        assert!(memory_bytes().is_some_and(|m| m > 0));
        assert!(!hostname().is_empty());
    }
}
