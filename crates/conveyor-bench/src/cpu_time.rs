//! CPU time used, read from the kernel: this process's own (every thread,
//! user and system) and, for brokers running beside a benchmark, that of
//! other processes found by name.

/// The CPU time this process has used so far, in seconds (user + system).
pub fn own() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The CPU time (user + system, seconds) used so far by every process whose
/// command name is `name`, from `/proc`; 0 where there is none or `/proc`
/// cannot be read.
#[allow(dead_code)] // the examples that include this file use `own` only
pub fn of_processes(name: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut total = 0.0;
    for entry in dir.flatten() {
        let path = entry.path();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split at the
        // last parenthesis; utime and stime are fields 14 and 15.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] != name {
            continue;
        }
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let field = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        // After the comm: field 3 is index 0, so utime (14) is 11, stime 12.
        if let (Some(u), Some(s)) = (field(11), field(12)) {
            total += (u + s) / ticks;
        }
    }
    total
}
