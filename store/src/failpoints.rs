//! Storage faults on purpose, for the fault tests: named points in the
//! storage path where an action can be injected.
//!
//! | point       | where                                   | actions                      |
//! |-------------|-----------------------------------------|------------------------------|
//! | `wal-write` | before the Raft log's `pwrite`          | `eio`, `enospc`, `sleep(MS)` |
//! | `wal-fsync` | before the Raft log's `fdatasync`       | `eio`, `sleep(MS)`           |
//! | `disk-free` | the free space the disk monitor sees    | `return(BYTES)`              |
//!
//! They exist only in debug builds with the `failpoints` feature (the test
//! suite's build); elsewhere every point is a no-op the compiler removes.
//! Set them at startup with `SHOAL_FAILPOINTS="wal-fsync=eio;disk-free=return(0)"`,
//! or on a running member with `PUT /debug/failpoints/<point>` on its client
//! port, the body being the action (`off` clears it).

use std::io;

/// Whether this build has failpoints.
pub const ENABLED: bool = cfg!(all(feature = "failpoints", debug_assertions));

/// What a failpoint does when reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Fail with this OS error (EIO, ENOSPC).
    Error(i32),
    /// Stall for this many milliseconds, then go on.
    Sleep(u64),
    /// Stand for a value (`disk-free`).
    Return(u64),
}

impl std::str::FromStr for Action {
    type Err = String;

    fn from_str(text: &str) -> Result<Action, String> {
        let text = text.trim();
        let argument = |name: &str| {
            let inner = text.strip_prefix(name)?.strip_prefix('(')?.strip_suffix(')')?;
            inner.trim().parse::<u64>().ok()
        };
        match text {
            "eio" => Some(Action::Error(libc_errno::EIO)),
            "enospc" => Some(Action::Error(libc_errno::ENOSPC)),
            t if t.starts_with("sleep") => argument("sleep").map(Action::Sleep),
            t if t.starts_with("return") => argument("return").map(Action::Return),
            _ => None,
        }
        .ok_or_else(|| format!("unknown failpoint action {text:?}: eio, enospc, sleep(MS), return(N) or off"))
    }
}

mod libc_errno {
    pub const EIO: i32 = nix::errno::Errno::EIO as i32;
    pub const ENOSPC: i32 = nix::errno::Errno::ENOSPC as i32;
}

#[cfg(all(feature = "failpoints", debug_assertions))]
mod points {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};

    use super::Action;

    static POINTS: LazyLock<Mutex<HashMap<String, Action>>> = LazyLock::new(|| {
        let mut points = HashMap::new();
        for setting in std::env::var("SHOAL_FAILPOINTS").unwrap_or_default().split(';') {
            if let Some((name, action)) = setting.split_once('=') {
                match action.parse() {
                    Ok(action) => {
                        points.insert(name.trim().to_string(), action);
                    }
                    Err(e) => tracing::warn!(%e, "SHOAL_FAILPOINTS"),
                }
            }
        }
        Mutex::new(points)
    });

    pub fn get(name: &str) -> Option<Action> {
        POINTS.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    pub fn set(name: &str, action: Option<Action>) {
        let mut points = POINTS.lock().unwrap_or_else(|p| p.into_inner());
        match action {
            Some(action) => points.insert(name.to_string(), action),
            None => points.remove(name),
        };
    }
}

#[cfg(not(all(feature = "failpoints", debug_assertions)))]
mod points {
    use super::Action;

    #[inline(always)]
    pub fn get(_name: &str) -> Option<Action> {
        None
    }

    pub fn set(_name: &str, _action: Option<Action>) {}
}

/// Sets (or with None clears) the action at `name`; a no-op without failpoints.
pub fn set(name: &str, action: Option<Action>) {
    if ENABLED {
        tracing::warn!(point = name, ?action, "failpoint set");
    }
    points::set(name, action);
}

/// Reaches the point `name`: stalls or fails as injected.
#[inline]
pub fn io(name: &str) -> io::Result<()> {
    match points::get(name) {
        Some(Action::Error(errno)) => Err(io::Error::from_raw_os_error(errno)),
        Some(Action::Sleep(ms)) => {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The value injected at `name`, if any.
#[inline]
pub fn value(name: &str) -> Option<u64> {
    match points::get(name) {
        Some(Action::Return(value)) => Some(value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::Action;

    #[test]
    fn actions_parse_and_bad_ones_say_what_is_known() {
        assert_eq!("eio".parse(), Ok(Action::Error(nix::errno::Errno::EIO as i32)));
        assert_eq!("sleep(2500)".parse(), Ok(Action::Sleep(2500)));
        assert_eq!(" return(0) ".parse(), Ok(Action::Return(0)));
        for bad in ["", "sleep", "sleep()", "sleep(x)", "return(-1)", "panic"] {
            let err = bad.parse::<Action>().expect_err(bad);
            assert!(err.contains("unknown failpoint action"), "{err}");
        }
    }
}
