//! What the always-on CPU limits cost a plugin: runs one module on one input with imgkit's
//! engine settings (fuel metering and epoch checks), with epoch checks only, and with neither,
//! and prints the median time of `_start` for each: the CPU time of the running thread where
//! Linux tells it (steadier than wall time on a busy machine), else wall time. Stdin and stdout are plain in-memory pipes,
//! so the numbers are the guest's own code plus WASI calls. Cranelift compiles the guest the
//! same way in any host profile, so a debug build of this example is fair for the guest part.
//!
//! ```console
//! cargo run --example limits-cost -p imgkit-plugin -- default.wasm records.jsonl [RUNS]
//! ```

use std::time::{Duration, Instant};

use wasmtime::{Config, Engine, Linker, Module, OptLevel, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

fn main() -> wasmtime::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, module_path, input_path, rest @ ..] = args.as_slice() else {
        eprintln!("usage: limits-cost MODULE.wasm RECORDS.jsonl [RUNS]");
        std::process::exit(2);
    };
    let runs: usize = rest.first().map_or(Ok(3), |r| r.parse())?;
    let input = bytes::Bytes::from(std::fs::read(input_path)?);
    let mut baseline = None;
    for (name, fuel, epochs) in [
        ("fuel + epochs (imgkit)", true, true),
        ("epochs only", false, true),
        ("neither", false, false),
    ] {
        let mut config = Config::new();
        config
            .consume_fuel(fuel)
            .epoch_interruption(epochs)
            .max_wasm_stack(1 << 20)
            .cranelift_opt_level(OptLevel::Speed);
        if std::env::var_os("PERFMAP").is_some() {
            // `perf record` then names the guest's functions (keep its name section).
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)?;
        let module = Module::from_file(&engine, module_path)?;
        let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s| s)?;
        let pre = linker.instantiate_pre(&module)?;
        let mut times = Vec::new();
        let mut out_len = 0;
        for _ in 0..runs {
            let stdout = MemoryOutputPipe::new(usize::MAX);
            let wasi = WasiCtxBuilder::new()
                .stdin(MemoryInputPipe::new(input.clone()))
                .stdout(stdout.clone())
                .arg("plugin")
                .build_p1();
            let mut store = Store::new(&engine, wasi);
            if fuel {
                store.set_fuel(1 << 62)?;
            }
            if epochs {
                store.set_epoch_deadline(1 << 40);
            }
            let started = Clock::now();
            let instance = pre.instantiate(&mut store)?;
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            match start.call(&mut store, ()) {
                Ok(()) => {}
                Err(e) if e.downcast_ref::<I32Exit>().is_some_and(|x| x.0 == 0) => {}
                Err(e) => return Err(e),
            }
            times.push(started.elapsed());
            out_len = stdout.contents().len();
        }
        times.sort();
        let median = times[runs / 2];
        let base: Duration = *baseline.get_or_insert(median);
        println!(
            "{name:<24} {:.3} s  ({:.2}× the first; median of {runs}; {out_len} bytes out)",
            median.as_secs_f64(),
            median.as_secs_f64() / base.as_secs_f64(),
        );
    }
    Ok(())
}

/// The running thread's CPU time from /proc (Linux), or wall time.
enum Clock {
    Cpu(Duration),
    Wall(Instant),
}

impl Clock {
    fn now() -> Clock {
        thread_cpu().map_or_else(|| Clock::Wall(Instant::now()), Clock::Cpu)
    }

    fn elapsed(&self) -> Duration {
        match self {
            Clock::Cpu(start) => thread_cpu().unwrap_or_default().saturating_sub(*start),
            Clock::Wall(start) => start.elapsed(),
        }
    }
}

/// utime + stime of this thread, in clock ticks of 10 ms.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}
