//! What each `wasi_snapshot_preview1` import gives a plugin: wasmtime's own implementation (as
//! is), a fixed errno (denied), or imgkit's implementation that never blocks past the run's
//! deadline (bounded). docs/plugins.md carries the same table; a test keeps the two and
//! wasmtime's list of imports in step.
//!
//! Why this is enough to bound a run: fuel and the epoch deadline stop guest code, but not a
//! host call. Every import left as is returns at once (stdout and stderr are in-memory,
//! non-blocking streams; there is no file or socket to wait on). The only calls that can wait
//! are bounded here: `poll_oneoff` (clocks and stdin), `fd_read` on stdin (the stream gives up
//! at the deadline, see `stdio.rs`) and `random_get` (filled in slices, the deadline checked
//! between them).

use std::time::{Duration, Instant, SystemTime};

use wasmtime::{Caller, Extern, FuncType, Linker, Memory, Val, ValType};

use crate::limits::Clock;
use crate::run::State;
use crate::stdio::Fill;

pub(crate) const WASI_P1: &str = "wasi_snapshot_preview1";

/// What a plugin gets from one import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Treatment {
    /// wasmtime's implementation, unchanged.
    AsIs,
    /// Denied: returns this errno without doing anything. The string is the function's
    /// signature: one letter per parameter, `i` for i32 and `I` for i64 (the result is i32).
    Errno(Errno, &'static str),
    /// Never waits past the deadline (see the module docs for how).
    Bounded,
}

/// The WASI preview1 errnos the sandbox returns itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Errno {
    Badf = 8,
    Fault = 21,
    Inval = 28,
    Io = 29,
    Notsock = 57,
    Notsup = 58,
    Notcapable = 76,
}

impl Errno {
    /// The name docs/plugins.md uses.
    #[cfg(test)]
    pub(crate) fn name(self) -> &'static str {
        match self {
            Errno::Badf => "EBADF",
            Errno::Fault => "EFAULT",
            Errno::Inval => "EINVAL",
            Errno::Io => "EIO",
            Errno::Notsock => "ENOTSOCK",
            Errno::Notsup => "ENOTSUP",
            Errno::Notcapable => "ENOTCAPABLE",
        }
    }
}

use Errno::{Badf, Notcapable, Notsock, Notsup};
use Treatment::{AsIs, Bounded, Errno as Deny};

/// Every `wasi_snapshot_preview1` function, in the witx order. Deny by default: a filter has
/// stdin, stdout, stderr, argv, clocks and randomness, and nothing else.
pub(crate) const IMPORTS: &[(&str, Treatment)] = &[
    ("args_get", AsIs),
    ("args_sizes_get", AsIs),
    ("environ_get", AsIs),
    ("environ_sizes_get", AsIs),
    ("clock_res_get", AsIs),
    ("clock_time_get", AsIs),
    ("fd_advise", Deny(Badf, "iIIi")),
    ("fd_allocate", Deny(Badf, "iII")),
    ("fd_close", AsIs),
    ("fd_datasync", Deny(Badf, "i")),
    ("fd_fdstat_get", AsIs),
    ("fd_fdstat_set_flags", AsIs),
    ("fd_fdstat_set_rights", Deny(Badf, "iII")),
    ("fd_filestat_get", AsIs),
    ("fd_filestat_set_size", Deny(Badf, "iI")),
    ("fd_filestat_set_times", Deny(Badf, "iIIi")),
    ("fd_pread", Deny(Badf, "iiiIi")),
    ("fd_prestat_get", Deny(Badf, "ii")),
    ("fd_prestat_dir_name", Deny(Badf, "iii")),
    ("fd_pwrite", Deny(Badf, "iiiIi")),
    ("fd_read", Bounded),
    ("fd_readdir", Deny(Badf, "iiiIi")),
    ("fd_renumber", Deny(Badf, "ii")),
    ("fd_seek", AsIs),
    ("fd_sync", Deny(Badf, "i")),
    ("fd_tell", AsIs),
    ("fd_write", AsIs),
    ("path_create_directory", Deny(Notcapable, "iii")),
    ("path_filestat_get", Deny(Notcapable, "iiiii")),
    ("path_filestat_set_times", Deny(Notcapable, "iiiiIIi")),
    ("path_link", Deny(Notcapable, "iiiiiii")),
    ("path_open", Deny(Notcapable, "iiiiiIIii")),
    ("path_readlink", Deny(Notcapable, "iiiiii")),
    ("path_remove_directory", Deny(Notcapable, "iii")),
    ("path_rename", Deny(Notcapable, "iiiiii")),
    ("path_symlink", Deny(Notcapable, "iiiii")),
    ("path_unlink_file", Deny(Notcapable, "iii")),
    ("poll_oneoff", Bounded),
    ("proc_exit", AsIs),
    ("proc_raise", Deny(Notsup, "i")),
    ("sched_yield", AsIs),
    ("random_get", Bounded),
    ("sock_accept", Deny(Notsock, "iii")),
    ("sock_recv", Deny(Notsock, "iiiiii")),
    ("sock_send", Deny(Notsock, "iiiii")),
    ("sock_shutdown", Deny(Notsock, "ii")),
];

/// The trap a bounded import returns when the deadline passes while it waits.
#[derive(Debug)]
pub(crate) struct Blocked(pub(crate) &'static str);

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the time limit passed while the plugin waited in `{}`",
            self.0
        )
    }
}

impl std::error::Error for Blocked {}

/// Records which import the deadline stopped and returns the trap that ends the run.
pub(crate) fn blocked(state: &State, import: &'static str) -> wasmtime::Error {
    let _ = state.progress.blocked_in.set(import);
    wasmtime::Error::new(Blocked(import))
}

/// The linker every plugin is instantiated with: wasmtime's WASI preview1, then the denied
/// and bounded imports defined over it.
pub(crate) fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<State>> {
    let mut linker: Linker<State> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut State| &mut s.wasi)?;
    linker.allow_shadowing(true);
    for &(name, treatment) in IMPORTS {
        if let Deny(errno, sig) = treatment {
            let errno = errno as i32;
            linker.func_new(WASI_P1, name, signature(engine, sig), move |_, _, out| {
                out[0] = Val::I32(errno);
                Ok(())
            })?;
        }
    }
    linker.func_wrap(WASI_P1, "poll_oneoff", poll_oneoff)?;
    linker.func_wrap(WASI_P1, "random_get", random_get)?;
    linker.allow_shadowing(false);
    Ok(linker)
}

pub(crate) fn signature(engine: &wasmtime::Engine, sig: &str) -> FuncType {
    let params = sig.chars().map(|c| match c {
        'I' => ValType::I64,
        _ => ValType::I32,
    });
    FuncType::new(engine, params, [ValType::I32])
}

fn memory(caller: &mut Caller<'_, State>) -> Option<Memory> {
    caller.get_export("memory").and_then(Extern::into_memory)
}

/// `ptr..ptr+len` if it lies inside memory of `size` bytes.
fn range(ptr: i32, len: u64, size: usize) -> Option<std::ops::Range<usize>> {
    let start = u64::from(ptr as u32);
    let end = start.checked_add(len)?;
    (end <= size as u64).then_some(start as usize..end as usize)
}

/// Bytes of randomness written between two looks at the deadline.
const RANDOM_SLICE: usize = 1 << 20;

/// `random_get`: the OS's randomness written straight into guest memory, a slice at a time,
/// so asking for all of memory costs no host allocation and stops at the deadline.
fn random_get(mut caller: Caller<'_, State>, buf: i32, len: i32) -> wasmtime::Result<i32> {
    let Some(mem) = memory(&mut caller) else {
        return Ok(Errno::Fault as i32);
    };
    let Some(r) = range(buf, u64::from(len as u32), mem.data_size(&caller)) else {
        return Ok(Errno::Fault as i32);
    };
    let (data, state) = mem.data_and_store_mut(&mut caller);
    for slice in data[r].chunks_mut(RANDOM_SLICE) {
        if Instant::now() >= state.deadline {
            return Err(blocked(state, "random_get"));
        }
        if getrandom::fill(slice).is_err() {
            return Ok(Errno::Io as i32);
        }
    }
    Ok(0)
}

const SUBSCRIPTION_SIZE: u64 = 48;
const EVENT_SIZE: u64 = 32;
const EVENTTYPE_CLOCK: u8 = 0;
const EVENTTYPE_FD_READ: u8 = 1;
const EVENTTYPE_FD_WRITE: u8 = 2;
const CLOCK_REALTIME: u32 = 0;
const CLOCK_MONOTONIC: u32 = 1;
const SUBCLOCK_ABSTIME: u16 = 1;
const EVENTRW_HANGUP: u16 = 1;
/// What a write subscription on stdout or stderr reports as room (their streams accept
/// anything up to the caps at once).
const WRITE_ROOM: u64 = 1 << 20;

/// One subscription, decoded.
enum Sub {
    /// A clock that fires at this instant (`None`: beyond what an `Instant` can hold).
    Clock(Option<Instant>),
    Stdin,
    /// A write subscription on stdout or stderr: always ready.
    Writable,
    /// A read or write subscription on a descriptor the plugin does not have.
    BadFd,
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Decodes the subscription at `s` (48 bytes), or the errno that refuses the whole call.
/// `called` is when the call started (relative clocks count from it), `at` is now (absolute
/// ones count from the clock read at that instant).
fn decode(s: &[u8], clock: &Clocks, called: Instant, at: Instant) -> Result<Sub, Errno> {
    match s[8] {
        0 => {
            let id = le_u32(s, 16);
            let timeout = le_u64(s, 24);
            let absolute = le_u16(s, 40) & SUBCLOCK_ABSTIME != 0;
            let now = match id {
                CLOCK_REALTIME => clock.realtime(),
                CLOCK_MONOTONIC => clock.monotonic(),
                _ => return Err(Errno::Inval),
            };
            let due = match clock.kind {
                // Time stands still: whatever the plugin waits for has already happened.
                Clock::Fixed => Some(called),
                Clock::Real if absolute => {
                    // Up to a millisecond early, so that the clock read after the wait (a
                    // wall clock may step against `Instant`) is seen to have passed.
                    let left = Duration::from_nanos(timeout.saturating_sub(now));
                    at.checked_add(left.saturating_sub(Duration::from_millis(1)))
                }
                Clock::Real => called.checked_add(Duration::from_nanos(timeout)),
            };
            Ok(Sub::Clock(due))
        }
        1 => Ok(match le_u32(s, 16) {
            0 => Sub::Stdin,
            _ => Sub::BadFd,
        }),
        2 => Ok(match le_u32(s, 16) {
            1 | 2 => Sub::Writable,
            _ => Sub::BadFd,
        }),
        _ => Err(Errno::Inval),
    }
}

/// The clocks as the plugin sees them (the same values `clock_time_get` returns).
pub(crate) struct Clocks {
    pub(crate) kind: Clock,
    /// The real monotonic clock's zero.
    pub(crate) start: Instant,
}

/// 2026-01-01T00:00:00Z in nanoseconds since the Unix epoch.
pub(crate) const FIXED_WALL_NANOS: u64 = 1_767_225_600 * 1_000_000_000;

impl Clocks {
    pub(crate) fn realtime(&self) -> u64 {
        match self.kind {
            Clock::Fixed => FIXED_WALL_NANOS,
            Clock::Real => SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        }
    }

    pub(crate) fn monotonic(&self) -> u64 {
        match self.kind {
            Clock::Fixed => 0,
            Clock::Real => self.start.elapsed().as_nanos() as u64,
        }
    }
}

/// `poll_oneoff`, bounded: with the fixed clock every clock subscription fires at once (time
/// stands still, so the time waited for has passed); with the real clock the wait is cut at
/// the run's deadline, which then ends the run; a read subscription on stdin waits for input
/// or its end, at most until the deadline; write subscriptions on stdout and stderr are always
/// ready, and read or write subscriptions on any other descriptor come back at once with
/// EBADF in their event.
fn poll_oneoff(
    mut caller: Caller<'_, State>,
    subs: i32,
    events: i32,
    nsubs: i32,
    nevents: i32,
) -> wasmtime::Result<i32> {
    let called = Instant::now();
    let n = u64::from(nsubs as u32);
    if n == 0 {
        // Sleeping forever is not a thing in preview1.
        return Ok(Errno::Inval as i32);
    }
    let Some(mem) = memory(&mut caller) else {
        return Ok(Errno::Fault as i32);
    };
    let size = mem.data_size(&caller);
    let (Some(subs), Some(events), Some(nevents)) = (
        range(subs, n * SUBSCRIPTION_SIZE, size),
        range(events, n * EVENT_SIZE, size),
        range(nevents, 4, size),
    ) else {
        return Ok(Errno::Fault as i32);
    };
    let state = caller.data();
    let deadline = state.deadline;
    let clocks = &state.clocks;

    // Pass 1: what is ready now, the first clock to fire, and whether stdin is asked about.
    let mut ready_now = false;
    let mut first_clock: Option<Instant> = None;
    let mut wants_stdin = false;
    let data = mem.data(&caller);
    for (i, s) in data[subs.clone()].chunks_exact(48).enumerate() {
        if i % (1 << 16) == (1 << 16) - 1 && Instant::now() >= deadline {
            return Err(blocked(caller.data(), "poll_oneoff"));
        }
        match decode(s, clocks, called, called) {
            Err(errno) => return Ok(errno as i32),
            Ok(Sub::Clock(None)) => {}
            Ok(Sub::Clock(Some(due))) => {
                ready_now |= due <= called;
                first_clock = Some(first_clock.map_or(due, |f| f.min(due)));
            }
            Ok(Sub::Stdin) => wants_stdin = true,
            Ok(Sub::Writable | Sub::BadFd) => ready_now = true,
        }
    }
    let stdin = &caller.data().stdin;
    let mut input = if wants_stdin {
        stdin.fill(Some(called))
    } else {
        Fill::TimedOut
    };
    if !ready_now && input == Fill::TimedOut {
        // Wait for the first clock, or stdin, but never past the deadline.
        let until = first_clock.map_or(deadline, |due| due.min(deadline));
        if wants_stdin {
            input = stdin.fill(Some(until));
        } else {
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
        }
        if input == Fill::TimedOut && Instant::now() >= deadline {
            return Err(blocked(caller.data(), "poll_oneoff"));
        }
    }
    let stdin_bytes = match input {
        Fill::Data(n) => Some((n as u64, 0)),
        Fill::Eof => Some((0, EVENTRW_HANGUP)),
        Fill::TimedOut => None,
    };

    // Pass 2: an event for each subscription that is ready, written in place.
    let now = Instant::now();
    let (data, state) = mem.data_and_store_mut(&mut caller);
    let mut count: u32 = 0;
    for i in 0..n as usize {
        let at = subs.start + i * 48;
        let s: [u8; 48] = data[at..at + 48].try_into().expect("48 bytes");
        let event = match decode(&s, &state.clocks, called, now).unwrap_or(Sub::BadFd) {
            Sub::Clock(Some(due)) if due <= now => Some((EVENTTYPE_CLOCK, 0u16, 0u64, 0u16)),
            Sub::Clock(_) => None,
            Sub::Stdin => stdin_bytes.map(|(n, flags)| (EVENTTYPE_FD_READ, 0, n, flags)),
            Sub::Writable => Some((EVENTTYPE_FD_WRITE, 0, WRITE_ROOM, 0)),
            Sub::BadFd if s[8] == 1 => Some((EVENTTYPE_FD_READ, Badf as u16, 0, 0)),
            Sub::BadFd => Some((EVENTTYPE_FD_WRITE, Badf as u16, 0, 0)),
        };
        let Some((ty, error, nbytes, flags)) = event else {
            continue;
        };
        let at = events.start + count as usize * 32;
        let slot = &mut data[at..at + 32];
        slot.fill(0);
        slot[0..8].copy_from_slice(&s[0..8]);
        slot[8..10].copy_from_slice(&error.to_le_bytes());
        slot[10] = ty;
        slot[16..24].copy_from_slice(&nbytes.to_le_bytes());
        slot[24..26].copy_from_slice(&flags.to_le_bytes());
        count += 1;
    }
    data[nevents].copy_from_slice(&count.to_le_bytes());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn engine() -> wasmtime::Engine {
        wasmtime::Engine::default()
    }

    /// wasmtime's own preview1 functions and their types.
    fn wasmtime_imports(engine: &wasmtime::Engine) -> BTreeMap<String, FuncType> {
        let mut linker = Linker::<wasmtime_wasi::p1::WasiP1Ctx>::new(engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |c| c).unwrap();
        let mut store =
            wasmtime::Store::new(engine, wasmtime_wasi::WasiCtxBuilder::new().build_p1());
        let funcs: Vec<(String, wasmtime::Func)> = linker
            .iter(&mut store)
            .filter(|(m, _, _)| *m == WASI_P1)
            .map(|(_, name, ext)| (name.to_owned(), ext.into_func().expect("a function")))
            .collect();
        funcs
            .into_iter()
            .map(|(name, f)| (name, f.ty(&store)))
            .collect()
    }

    #[test]
    fn every_wasmtime_import_is_accounted_for_and_denied_ones_keep_their_type() {
        let engine = engine();
        let theirs = wasmtime_imports(&engine);
        let ours: BTreeMap<_, _> = IMPORTS.iter().copied().collect();
        assert_eq!(ours.len(), IMPORTS.len(), "an import is listed twice");
        assert_eq!(
            theirs.keys().map(String::as_str).collect::<Vec<_>>(),
            ours.keys().copied().collect::<Vec<_>>()
        );
        for (name, treatment) in IMPORTS {
            let ty = &theirs[*name];
            if let Deny(_, sig) = treatment {
                assert!(
                    FuncType::eq(ty, &signature(&engine, sig)),
                    "{name}: wasmtime's type is {ty:?}, ours {sig}"
                );
            }
        }
        assert_eq!(theirs["poll_oneoff"].params().len(), 4);
        assert_eq!(theirs["random_get"].params().len(), 2);
    }

    /// docs/plugins.md has one row per import, saying what the code does.
    #[test]
    fn the_docs_table_matches_the_code() {
        let docs = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/plugins.md"),
        )
        .unwrap();
        let mut rows = BTreeMap::new();
        for line in docs.lines() {
            let Some(rest) = line.strip_prefix("| `") else {
                continue;
            };
            let Some((name, rest)) = rest.split_once("` |") else {
                continue;
            };
            if !IMPORTS.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let cell = rest.trim_start();
            assert!(
                rows.insert(name.to_owned(), cell.to_owned()).is_none(),
                "{name} has two rows"
            );
        }
        for (name, treatment) in IMPORTS {
            let cell = rows
                .get(*name)
                .unwrap_or_else(|| panic!("docs/plugins.md has no row for `{name}`"));
            let want = match treatment {
                AsIs => "as is".to_owned(),
                Deny(errno, _) => format!("errno `{}`", errno.name()),
                Bounded => "bounded".to_owned(),
            };
            assert!(
                cell.starts_with(&format!("{want}:")),
                "docs row of `{name}` must start with {want:?}: {cell}"
            );
        }
    }
}
