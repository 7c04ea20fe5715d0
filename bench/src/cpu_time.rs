//! CPU time of threads, from `/proc/.../schedstat` (Linux; `None` elsewhere): unlike wall-clock
//! rates, it hardly moves when other processes share the cores.

/// The time (ns) a thread has run on a CPU.
fn schedstat_ns(schedstat: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(schedstat).ok()?.split_whitespace().next()?.parse().ok()
}

/// The CPU time (ns) of the calling thread.
pub fn thread_ns() -> Option<u64> {
    schedstat_ns(std::path::Path::new("/proc/thread-self/schedstat"))
}

/// The CPU time (ns) of every thread of this process.
pub fn process_ns() -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        total += schedstat_ns(&task.ok()?.path().join("schedstat"))?;
    }
    Some(total)
}
