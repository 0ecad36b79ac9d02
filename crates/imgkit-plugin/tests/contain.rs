//! In one process, hostile `.wat` plugins each fail with their typed error, and the host goes
//! on to run a good plugin as if nothing happened.

use std::path::PathBuf;
use std::time::Duration;

use imgkit_plugin::{Error, Limits, Options, Plugin};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/plugins")
        .join(name)
}

fn load(name: &str, limits: Limits) -> Result<Plugin, Error> {
    Plugin::load_with(
        &fixture(name),
        Options {
            limits,
            ..Options::default()
        },
    )
}

fn run(name: &str, limits: Limits, input: &[u8]) -> Result<Vec<String>, Error> {
    load(name, limits)?.run(&mut &input[..])
}

const INPUT: &[u8] = b"{\"Repository\":\"alpine\",\"Tag\":\"latest\"}\n{\"Repository\":\"x\"}";

#[test]
fn hostile_plugins_are_contained_and_the_host_goes_on() {
    let d = Limits::default;
    assert!(matches!(
        run("loop.wat", d(), INPUT),
        Err(Error::OutOfFuel {
            budget: 50_400_000,
            records: 2,
            ..
        })
    ));
    let fuel_raised = Limits {
        fuel_per_record: u64::MAX / 1024,
        timeout: Duration::from_millis(200),
        ..d()
    };
    assert!(matches!(
        run("loop.wat", fuel_raised, INPUT),
        Err(Error::Deadline { .. })
    ));
    assert!(matches!(
        run("grow-4gib.wat", d(), INPUT),
        Err(Error::MemoryLimit {
            requested: 4_294_967_296,
            limit: 67_108_864,
            ..
        })
    ));
    let cap = INPUT.len() as u64 + imgkit_plugin::OUTPUT_SLACK;
    assert!(matches!(
        run("print-forever.wat", d(), INPUT),
        Err(Error::OutputTooLarge { limit, .. }) if limit == cap
    ));
    assert!(matches!(
        run("exit42.wat", d(), INPUT),
        Err(Error::Exit { code: 42, .. })
    ));
    assert!(matches!(
        run("recurse.wat", d(), INPUT),
        Err(Error::Trap { ref kind, .. }) if kind == "stack overflow"
    ));
    assert!(matches!(
        run("flag.wat", d(), INPUT),
        Err(Error::InvalidOutput { line: 1, ref text, .. }) if text == "--output=/x"
    ));
    assert!(matches!(
        load("no-start.wat", d()),
        Err(Error::NoStart { .. })
    ));
    assert!(matches!(
        load("wrong-import.wat", d()),
        Err(Error::UnsupportedImport { ref module, ref name, .. }) if module == "env" && name == "system"
    ));
    // And the host is fine: the same process runs a good plugin, twice.
    let hello = load("hello.wat", d()).unwrap();
    for _ in 0..2 {
        assert_eq!(hello.run(&mut &INPUT[..]).unwrap(), ["alpine:latest"]);
    }
}

#[test]
fn big_input_streams_past_a_plugin_that_does_not_read_it() {
    // 32 MiB of records; the plugin exits without reading: the feeder stops, nothing hangs.
    let line = b"{\"Repository\":\"alpine\",\"Tag\":\"latest\"}\n";
    let input: Vec<u8> = line.iter().copied().cycle().take(32 << 20).collect();
    let hello = load("hello.wat", Limits::default()).unwrap();
    let out = hello.execute(&mut &input[..]).unwrap();
    assert_eq!(out.references, ["alpine:latest"]);
}

#[test]
fn error_messages_name_the_plugin_and_hint() {
    let err = run("loop.wat", Limits::default(), INPUT).unwrap_err();
    // The budget grows with the records fed so far (50M + 200k each); the loop may start
    // before the feeding thread has handed over both.
    let msg = err.to_string();
    assert!(
        msg.ends_with("loop.wat used its CPU budget of 50400000 units on 2 records")
            || msg.ends_with("loop.wat used its CPU budget of 50200000 units on 1 records")
            || msg.ends_with("loop.wat used its CPU budget of 50000000 units on 0 records"),
        "{err}"
    );
    assert_eq!(
        err.hint().as_deref(),
        Some("raise with --plugin-fuel (units per record)")
    );
}
