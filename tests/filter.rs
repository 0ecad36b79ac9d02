//! `imgkit filter`: differential tests against real jq (and gojq) over generated docker
//! listings, and jq's error behaviour (positions, exit codes, presets).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::{Test, bin};

/// Runs `program args…` with `stdin`; `None` when the program is not installed.
fn exec(program: &Path, args: &[&str], stdin: &[u8]) -> Option<(Option<i32>, Vec<u8>)> {
    let mut child = Command::new(program)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Some((out.status.code(), out.stdout))
}

/// The reference jq (or gojq) on `PATH`, or `None` (a skip; a failure in CI).
fn reference(name: &str) -> Option<&'static Path> {
    crate::util::tool(name).map(|p| &*Box::leak(p.into_boxed_path()))
}

/// A small deterministic generator (xorshift), so the listing is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

/// `n` lines as `docker image ls --format '{{json .}}'` (docker 20.10) prints them: Go escapes
/// `<`, `>` and `&`, so `<none>` reads `\u003cnone\u003e`.
fn listing(n: usize, seed: u64) -> String {
    let mut rng = Rng(seed);
    let repos = [
        "alpine",
        "debian",
        "library/ubuntu",
        "localhost:5000/team/app",
        "registry.example.com:443/ops/tool",
        "ghcr.io/acme/api",
        "ünïcode/app",
        "日本/イメージ",
        "emoji/🐳",
        "a&b/c",
    ];
    let tags = [
        "latest",
        "3.20",
        "v1.2.3",
        "1.0.0-rc.1",
        "sha-4f2a9c1",
        "TAG_Upper",
    ];
    let units = ["kB", "MB", "GB", "B"];
    let mut out = String::new();
    for i in 0..n {
        let r = rng.next() % 100;
        let repo = if r < 5 { "<none>" } else { rng.pick(&repos) };
        let tag = if r < 12 { "<none>" } else { rng.pick(&tags) };
        let digest = if rng.next().is_multiple_of(2) {
            "<none>".to_string()
        } else {
            format!(
                "sha256:{:016x}{:016x}{:016x}{:016x}",
                rng.next(),
                rng.next(),
                rng.next(),
                rng.next()
            )
        };
        let size = format!(
            "{}.{}{}",
            rng.next() % 999 + 1,
            rng.next() % 10,
            rng.pick(&units)
        );
        let line = serde_json::json!({
            "Containers": "N/A",
            "CreatedAt": format!("2026-{:02}-{:02} {:02}:{:02}:{:02} +0000 UTC",
                rng.next() % 11 + 1, rng.next() % 28 + 1, rng.next() % 24, rng.next() % 60, i % 60),
            "CreatedSince": format!("{} days ago", rng.next() % 900 + 1),
            "Digest": digest,
            "ID": format!("{:012x}", rng.next() >> 16),
            "Repository": repo,
            "SharedSize": "N/A",
            "Size": size,
            "Tag": tag,
            "UniqueSize": "N/A",
            "VirtualSize": size,
        });
        let line = line
            .to_string()
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026");
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Programs people write over image listings, run once per record.
const PER_RECORD: &[&str] = &[
    r#"select(.Repository!="<none>") | if (.Tag=="<none>") then .Repository else (.Repository+":"+.Tag) end"#,
    ".Repository",
    r#".Repository + ":" + .Tag"#,
    r#""\(.Repository):\(.Tag)""#,
    r#"select(.Tag != "<none>") | .ID"#,
    r#".Missing // "fallback""#,
    r#"(.Digest | select(. != "<none>")) // "no digest""#,
    ".Tag | ascii_downcase",
    ".Repository | ascii_upcase",
    "[.Repository, .Tag] | @csv",
    "[.Repository, .Tag, .ID, .Size] | @tsv",
    r#"@sh "docker rmi \(.ID)""#,
    "[.Repository, .Tag] | @sh",
    "@json",
    ".Repository | @base64",
    ".Repository | @base64 | @base64d",
    ".Repository | @uri",
    ".Repository | @html",
    r#".Repository | test("^localhost:[0-9]+/")"#,
    r#".Repository | capture("^(?<host>[^/]+)/(?<path>.+)$")"#,
    r#".Repository | sub("^.*/"; "")"#,
    r#".Repository | gsub("[/:]"; "_")"#,
    r#".Tag | [match("[0-9]+"; "g").string] | join(".")"#,
    r#".Repository | split("/") | last"#,
    r#".Repository | split("/") | join(" | ")"#,
    r#".Repository | ltrimstr("localhost:5000/")"#,
    r#".Tag | rtrimstr(".1")"#,
    r#"select(.Repository | startswith("ghcr.io/")) | .Repository"#,
    r#"select(.Tag | endswith("rc.1")) | .ID"#,
    r#"to_entries | map("\(.key)=\(.value)") | join(",")"#,
    r#"with_entries(select(.value != "N/A")) | keys | join(" ")"#,
    r#"keys_unsorted | join(",")"#,
    "[.[]] | length",
    r#"select(.Size | test("GB$")) | .Size"#,
    r#"select(.Size | endswith("MB")) | .Size | rtrimstr("MB") | tonumber"#,
    r#".Size | capture("^(?<n>[0-9.]+)(?<u>[kMG]?B)$") | (.n | tonumber) * 1000 / 3"#,
    r#".CreatedAt | split(" ")[0]"#,
    ".ID[0:6]",
    ".Repository | length",
    ".Repository | utf8bytelength",
    ".Repository | explode | implode",
    r#"if .Tag == "latest" then "L" elif .Tag == "<none>" then "N" else "T" end"#,
    r#"[.Repository, .Tag] | any(. == "<none>")"#,
    r#"[.Repository, .Tag] | all(. != "<none>")"#,
    r#"reduce (.Repository | split("/"))[] as $p (0; . + 1)"#,
    r#"[foreach (.Repository | split("/"))[] as $p (""; . + "/" + $p)] | last"#,
    r#"[limit(2; .Repository | split("/")[])] | join(",")"#,
    r#"first(.Repository | split("/")[])"#,
    r#"[.Repository | split("/")[]] | last"#,
    r#".Repository | split("/") | nth(0)"#,
    "{r: .Repository, t: .Tag}",
    "[.ID, .Size]",
    r#".Digest | select(. != "<none>") | ltrimstr("sha256:")[0:12]"#,
    // jq 1.6 counts bytes in `index` (fixed in 1.7): ASCII names only here.
    r#"select(.Repository | test("^[ -~]*$")) | (.Repository | index("/")) // -1"#,
    "tojson",
    "tostring | length",
    "del(.CreatedSince, .VirtualSize)",
    r#"select(.Repository | IN("alpine", "debian")) | .Tag"#,
    r#".Repository as $r | .Tag as $t | "\($r)@\($t)""#,
    "[paths] | length",
    // The fast-path subset (paths, strings, ==, !=, +, and/or/not, select, if):
    ".",
    r#"select(.Tag == "<none>")"#,
    r#".Repository == "alpine" and .Tag != "<none>""#,
    r#"(.Tag == "latest") or (.Repository == "debian") | not"#,
    r#"if .Tag == "latest" then .ID elif .Tag == "<none>" then null else .Tag end"#,
    r#"select(.Repository != "<none>" and .Digest != "<none>") | .Repository + "@" + .Digest"#,
    ".Nope + .Repository + .Nope2",
    r#"to_entries | map(select(.value == "<none>") | .key) | sort | join(",")"#,
    "[.[] | ascii_downcase] | sort | unique | length",
    r#".Size | ascii_downcase | ltrimstr("0") | .[0:3]"#,
];

/// Programs over the whole listing (`-s`).
const SLURPED: &[&str] = &[
    "length",
    "sort_by(.Repository) | .[].Repository",
    "sort_by(.Repository, .Tag) | map(.ID) | join(\",\")",
    r#"group_by(.Repository) | map("\(.[0].Repository) \(length)") | .[]"#,
    "unique_by(.Repository) | .[].Repository",
    "min_by(.ID) | .ID",
    "max_by(.ID) | .ID",
    r#"map(select(.Tag == "<none>")) | length"#,
    "[.[].Repository] | unique | join(\",\")",
    "map(.ID) | sort | first, last",
    "map({(.ID): .Repository}) | add | length",
    "INDEX(.ID) | keys | length",
    "[limit(3; .[])] | map(.Tag)",
    "[.[] | .Size] | unique | length",
    "to_entries | map(select(.key % 7 == 0) | .value.ID) | .[]",
];

/// Programs with `-n` that read records with `input`/`inputs`.
const NULL_INPUT: &[&str] = &[
    "[inputs | .Repository] | length",
    "input | .ID",
    r#"reduce inputs as $r ({}; .[$r.Repository] += 1) | to_entries[] | "\(.key)\t\(.value)""#,
    r#"first(inputs | select(.Tag == "latest")) | .Repository"#,
];

/// Compares `imgkit filter FLAGS… PROGRAM` with `jq FLAGS… PROGRAM` byte for byte.
#[track_caller]
fn same_as(reference: &Path, flags: &[&str], program: &str, input: &[u8]) {
    let mut args: Vec<&str> = flags.to_vec();
    args.push(program);
    let (jq_code, jq_out) = exec(reference, &args, input).expect("reference runs");
    let mut ours_args = vec!["filter"];
    ours_args.extend(&args);
    let (code, out) = exec(&bin(), &ours_args, input).expect("imgkit runs");
    assert!(
        out == jq_out && code == jq_code,
        "{} {args:?}\n--- imgkit (exit {code:?})\n{}\n--- {} (exit {jq_code:?})\n{}",
        reference.display(),
        String::from_utf8_lossy(&out),
        reference.display(),
        String::from_utf8_lossy(&jq_out)
    );
}

#[test]
fn per_record_programs_print_what_jq_prints() {
    let Some(jq) = reference("jq") else { return };
    assert!(PER_RECORD.len() + SLURPED.len() + NULL_INPUT.len() >= 40);
    let input = listing(300, 7);
    for program in PER_RECORD {
        same_as(jq, &["-r"], program, input.as_bytes());
    }
}

#[test]
fn slurped_and_null_input_programs_print_what_jq_prints() {
    let Some(jq) = reference("jq") else { return };
    let input = listing(300, 11);
    for program in SLURPED {
        same_as(jq, &["-r", "-s"], program, input.as_bytes());
    }
    for program in NULL_INPUT {
        same_as(jq, &["-r", "-n"], program, input.as_bytes());
    }
}

#[test]
fn output_flags_print_what_jq_prints() {
    let Some(jq) = reference("jq") else { return };
    let input = listing(40, 3);
    let program = "{r: .Repository, t: [.Tag, 1, 2.5, null, true], e: {}, a: []}";
    for flags in [
        &[][..],
        &["-c"],
        &["-r"],
        &["-j"],
        &["--tab"],
        &["--indent", "4"],
        &["--indent", "0"],
        &["-S"],
        &["-a", "-c"],
        &["-s", "-c"],
    ] {
        same_as(jq, flags, program, input.as_bytes());
    }
    same_as(
        jq,
        &["-r", "--arg", "repo", "alpine"],
        "select(.Repository == $repo) | .Tag",
        input.as_bytes(),
    );
    same_as(
        jq,
        &["-c", "--argjson", "n", "{\"k\": [1, 2]}"],
        "$n.k[1] + 1",
        input.as_bytes(),
    );
    same_as(jq, &["-R"], "length", input.as_bytes());
    same_as(jq, &["-R", "-s"], "length", input.as_bytes());
    same_as(jq, &["-e"], ".Missing", input.as_bytes());
    same_as(jq, &["-e"], ".Repository", input.as_bytes());
}

#[test]
fn edge_case_inputs_print_what_jq_prints() {
    let Some(jq) = reference("jq") else { return };
    let default = PER_RECORD[0];
    let crlf = listing(50, 5).replace('\n', "\r\n");
    let no_final_newline = listing(3, 9).trim_end().to_string();
    let pretty =
        "[{\"Repository\": \"a\",\n  \"Tag\": \"1\"}]\n{\"Repository\":\"b\",\"Tag\":\"<none>\"}";
    for input in [
        "",
        "\n\n",
        &crlf,
        &no_final_newline,
        "  {\"Repository\":\"x\",\"Tag\":\"y\"}  ",
    ] {
        same_as(jq, &["-r"], default, input.as_bytes());
    }
    same_as(jq, &["-c"], ".", pretty.as_bytes());
    // Records the fast path hands to jaq: numbers, nested values, not an object, duplicate keys.
    let mixed = "{\"Repository\":\"a\",\"Tag\":\"1\"}\n{\"Repository\":\"b\",\"Tag\":2}\n\
        {\"Repository\":{\"x\":1},\"Tag\":\"3\"}\n[1,2]\n\"str\"\n{\"Repository\":\"c\",\"Repository\":\"d\",\"Tag\":\"4\"}\n\
        {\"Repository\":\"e\",\"Tag\":null,\"Size\":1.5}\n";
    for program in [
        PER_RECORD[0],
        r#".Repository + ":" + .Tag"#,
        ".Tag",
        r#"select(.Tag != "1")"#,
    ] {
        same_as(jq, &["-c"], program, mixed.as_bytes());
    }
    // Runtime errors: jq reports them and goes on with the next input, exiting 5 at the end.
    same_as(jq, &["-r"], ".Size | tonumber", listing(20, 1).as_bytes());
    same_as(
        jq,
        &["-r"],
        r#"if .Tag == "<none>" then error("untagged") else .ID end"#,
        listing(60, 2).as_bytes(),
    );
}

#[test]
fn a_hundred_thousand_lines_print_what_jq_and_gojq_print() {
    let Some(jq) = reference("jq") else { return };
    let input = listing(100_000, 42);
    same_as(jq, &["-r"], PER_RECORD[0], input.as_bytes());
    if let Some(gojq) = reference("gojq") {
        same_as(gojq, &["-r"], PER_RECORD[0], input.as_bytes());
    }
}

#[test]
fn string_programs_print_what_gojq_prints() {
    let Some(gojq) = reference("gojq") else {
        return;
    };
    let input = listing(200, 13);
    // gojq sorts object keys when printing and differs in some builtins; compare what prints
    // strings and numbers only.
    for program in &PER_RECORD[..18] {
        same_as(gojq, &["-r"], program, input.as_bytes());
    }
}

/// Where Debian's jq 1.6 and jq 1.7+ differ, we follow 1.7: integers are kept exactly
/// (1.6 rounds them through a double: 13911860366432393 → 13911860366432392) and large
/// integer literals print in full (1.6: 1e+20). Arithmetic is jq's double arithmetic in both
/// (`13911860366432393 - 10` is 13911860366432382, as jq.test expects). A literal no arithmetic
/// touched keeps its digits, spelled as jq 1.7.1's decNumber prints it (its manual:
/// `1.000` stays `1.000`; `1E2` is `1E+2`, `1e1000` is `1E+1000`).
#[test]
fn numbers_print_as_jq_17_not_16() {
    Test::new()
        .args(["filter", "-c", ".[0], .[0] - 10, (100000000000000000000 | tostring), [1.0, 3/1, 1E2, 0.1+0.2, 1e1000]"])
        .stdin("[13911860366432393]")
        .run()
        .success()
        .stdout_is(
            "13911860366432393\n13911860366432382\n\"100000000000000000000\"\n[1.0,3,1E+2,0.30000000000000004,1E+1000]\n",
        );
    // jq 1.6 counts bytes in `index`; jq 1.7 counts characters.
    Test::new()
        .args(["filter", "-c", "index(\"/\")"])
        .stdin("\"日本/イメージ\"")
        .run()
        .success()
        .stdout_is("2\n");
}

#[test]
fn default_preset_resolves_where_no_file_exists() {
    let dir = tempfile::tempdir().unwrap();
    let input = "{\"Repository\":\"alpine\",\"Tag\":\"3.20\"}\n{\"Repository\":\"x\",\"Tag\":\"\\u003cnone\\u003e\"}\n";
    Test::new()
        .current_dir(dir.path())
        .args(["filter", "-r", "-f", "default.jq"])
        .stdin(input)
        .run()
        .success()
        .stdout_is("alpine:3.20\nx\n");
    // An existing file of that name wins over the preset.
    std::fs::write(dir.path().join("default.jq"), ".Tag\n").unwrap();
    Test::new()
        .current_dir(dir.path())
        .args(["filter", "-r", "--filter", "default.jq"])
        .stdin(input)
        .run()
        .success()
        .stdout_is("3.20\n<none>\n");
}

#[test]
fn missing_filter_file_lists_presets() {
    Test::new()
        .args(["filter", "-f", "no-such-filter.jq"])
        .stdin("")
        .run()
        .code(2)
        .stderr_has("no filter file no-such-filter.jq")
        .stderr_has("presets: default");
}

#[test]
fn syntax_error_shows_position_and_caret_and_exits_3() {
    Test::new()
        .args(["filter", ".Repository |\n  select(.Tag == )"])
        .stdin("{}")
        .run()
        .code(3)
        .stderr_has("<program>:2:18: syntax error: expected term")
        .stderr_has("2 |   select(.Tag == )\n  |                  ^ unexpected token");
    Test::new()
        .args(["filter", "nosuchfn(1)"])
        .stdin("{}")
        .run()
        .code(3)
        .stderr_has("nosuchfn/1 is not defined");
}

#[test]
fn invalid_json_input_names_line_and_byte_offset() {
    Test::new()
        .args(["filter", "-c", ".a"])
        .stdin("{\"a\":1}\n{\"a\":2}\n{\"a\":,}\n")
        .run()
        // As jq 1.7.1 (jq 1.6 exited 2).
        .code(5)
        .stdout_is("1\n2\n")
        .stderr_has("invalid JSON input at line 3, byte offset 21");
}

#[test]
fn runtime_error_names_the_value_and_continues() {
    Test::new()
        .args(["filter", "-c", ".a + 1"])
        .stdin("{\"a\":1}\n{\"a\":\"x\"}\n{\"a\":3}\n")
        .run()
        // As jq (1.6 and 1.7): the exit code follows the last input, which succeeded.
        .code(0)
        .stdout_is("2\n4\n")
        .stderr_has("error (at <stdin>:2)")
        .stderr_has("\"x\"");
    Test::new()
        .args(["filter", "-c", ".a + 1"])
        .stdin("{\"a\":1}\n{\"a\":\"x\"}\n")
        .run()
        .code(5)
        .stdout_is("2\n");
}

#[test]
fn nested_values_deeper_than_serde_jsons_limit_still_run() {
    let nested = format!("{}1{}", "[".repeat(500), "]".repeat(500));
    let input = format!("{{\"Repository\":\"a\",\"Tag\":\"1\",\"x\":{nested}}}\n");
    Test::new()
        .args(["filter", "-r", "-f", "default.jq"])
        .stdin(input)
        .run()
        .success()
        .stdout_is("a:1\n");
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    Test::new()
        .args(["filter", "-c", "."])
        .stdin(deep)
        .run()
        // Invalid input: jq 1.7.1's exit code.
        .code(5)
        .stderr_has("depth limit");
    Test::new()
        .args([
            "filter",
            "-n",
            "-c",
            "reduce range(9000) as $_ ([]; [.]) | flatten",
        ])
        .stdin("")
        .run()
        .success()
        .stdout_is("[]\n");
}

/// Destructuring alternatives `?//`, which jaq does not parse: imgkit rewrites them before jaq
/// parses the program (crates/imgkit-select/src/desugar.rs). gojq implements them, but keeps a
/// variable bound by an earlier output's pattern where jq binds null: those cases compare with
/// jq 1.6. (Both let an alternative catch a `break` out of its body, as in `first(E as P1 ?//
/// P2 | BODY)`, and print more than one output; we do not.)
#[test]
fn destructuring_alternatives_print_what_gojq_prints() {
    let (Some(gojq), Some(jq)) = (reference("gojq"), reference("jq")) else {
        return;
    };
    // Inputs avoid indexing objects with numbers: jaq gives null where jq fails (a value
    // difference, not one of syntax).
    let arrays = r#"[[1,2], "x", null, [3]]
[[3], [[4]], "y", [[5], 6]]
"#;
    let objects = r#"[{"a": 3, "b": [4, 5], "c": {"d": 6, "e": 7}}, {"a": 1, "b": 2, "c": [{"d": 3, "e": 4}]}, "z"]"#;
    for (program, input, reference) in [
        (".[] as [$a, $b] ?// $a | [$a, $b]", arrays, gojq),
        (".[] as [[$a]] ?// [$a, $b] ?// $a | [$a, $b]", arrays, gojq),
        (
            ".[] as {$a, $b, c: {$d, $e}} ?// {$a, $b, c: [{$d, $e}]} ?// $a | [$a, $b, $d, $e]",
            objects,
            gojq,
        ),
        (
            ".[] as [$a] ?// [$b] ?// $c | if $a != null then error(\"err: \\($a)\") else [$a, $b, $c] end",
            arrays,
            jq,
        ),
        ("[.[] | . as [$a] ?// $a | $a] | length", arrays, gojq),
        (
            "[.[] as [[$a]] ?// [$a] ?// $a | . as [$b] ?// $b | [$a, ($b | type)]]",
            arrays,
            gojq,
        ),
        // Errors of the last alternative propagate (exit 5), after what was printed.
        (".[] as [$a] ?// [[$a]] | $a", arrays, gojq),
        // Lines and comments inside the construct.
        (
            ".[] as [$a] # an array\n  ?// $a # anything else\n  | {k: ($a | tostring)}",
            arrays,
            gojq,
        ),
        (
            "def f: .[] as [$a] ?// $a | [$a]; [f] | length, [.[] | \"\\(. as [$x] ?// $x | $x)\"]",
            arrays,
            gojq,
        ),
    ] {
        same_as(reference, &["-c"], program, input.as_bytes());
    }
}

/// `$name: pattern` in object patterns binds `$name` and destructures it; reduce/foreach take
/// any expression as their source; constant non-string object keys and module metadata that
/// is not a constant object are compile errors (exit 3), as in jq.
#[test]
fn jq_syntax_jaq_does_not_parse_runs_or_fails_to_compile_as_in_jq() {
    Test::new()
        .args([
            "filter",
            "-c",
            ". as {$a, $b:[$c, {$d}]} | [$a, $b, $c, $d]",
        ])
        .stdin(r#"{"a":1, "b":[2,{"d":3}]}"#)
        .run()
        .success()
        .stdout_is("[1,[2,{\"d\":3}],2,3]\n");
    Test::new()
        .args([
            "filter",
            "-c",
            "[reduce .[] / .[] as $i (0; . + $i)], [foreach (.[] | . * 2) + 1 as $i (0; . + $i)]",
        ])
        .stdin("[1,2]")
        .run()
        .success()
        .stdout_is("[4.5]\n[3,8]\n");
    for (program, at, message) in [
        (
            "{(0):1}",
            "<program>:1:3: ",
            "cannot use number (0) as object key",
        ),
        (
            "{non_const:., (0):1}",
            "<program>:1:16: ",
            "cannot use number (0) as object key",
        ),
        (
            ". as {(true):$foo} | $foo",
            "<program>:1:8: ",
            "cannot use boolean (true) as object key",
        ),
        (
            "module (.+1); 0",
            "<program>:1:8: ",
            "module metadata must be constant",
        ),
        (
            "module []; 0",
            "<program>:1:8: ",
            "module metadata must be an object",
        ),
    ] {
        Test::new()
            .args(["filter", program])
            .stdin("null")
            .run()
            .code(3)
            .stderr_has(&format!("{at}{message}"));
    }
}
