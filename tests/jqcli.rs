//! `imgkit filter` as a jq 1.7.1 drop-in: command lines differentially tested against jq.
//!
//! Each case's stdout and exit code were recorded from jq 1.7.1 (built from jqlang/jq's tag
//! `jq-1.7.1` without Oniguruma and decNumber, which these cases do not use) and must match byte
//! for byte, colours included. Where Debian's jq 1.6 prints the same (`jq16_agrees`), the case
//! also runs against the `jq` on PATH, live. The cases run in a folder holding their fixtures
//! (`sl.json`, `raw.txt`, modules under `mods/`, a home with `.jq/hm.jq`).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::bin;

struct Case {
    name: &'static str,
    args: &'static [&'static str],
    stdin: &'static str,
    env: &'static [(&'static str, &'static str)],
    stdout: &'static [u8],
    code: i32,
    jq16_agrees: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "args_positional",
        args: &["-n", "-c", "$ARGS", "--args", "a", "b"],
        stdin: "",
        env: &[],
        stdout: b"{\"positional\":[\"a\",\"b\"],\"named\":{}}\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "jsonargs_positional",
        args: &["-n", "-c", "$ARGS", "--jsonargs", "1", "{\"x\":[2]}", "null"],
        stdin: "",
        env: &[],
        stdout: b"{\"positional\":[1,{\"x\":[2]},null],\"named\":{}}\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "args_then_jsonargs",
        args: &["-n", "-c", "$ARGS.positional", "--args", "a", "--jsonargs", "3", "--args", "c"],
        stdin: "",
        env: &[],
        stdout: b"[\"a\",3,\"c\"]\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "args_options_between",
        args: &["-n", "$ARGS.positional[]", "--args", "x", "-r", "y"],
        stdin: "",
        env: &[],
        stdout: b"x\ny\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "args_before_program",
        args: &["--args", "-nc", "[$ARGS.positional[] | ascii_upcase]", "q", "r"],
        stdin: "",
        env: &[],
        stdout: b"[\"Q\",\"R\"]\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "jsonargs_invalid",
        args: &["-n", "$ARGS", "--jsonargs", "{"],
        stdin: "",
        env: &[],
        stdout: b"",
        code: 2,
        jq16_agrees: false,
    },
    Case {
        name: "named_in_order",
        args: &["-n", "-c", "$ARGS.named", "--argjson", "b", "1", "--arg", "a", "x", "--slurpfile", "c", "sl.json", "--rawfile", "d", "raw.txt"],
        stdin: "",
        env: &[],
        stdout: b"{\"b\":1,\"a\":\"x\",\"c\":[1,2,[3]],\"d\":\"raw\\ntext\\n\"}\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "named_first_wins",
        args: &["-n", "-c", "[$a, $ARGS.named]", "--arg", "a", "1", "--arg", "a", "2"],
        stdin: "",
        env: &[],
        stdout: b"[\"1\",{\"a\":\"1\"}]\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "slurpfile",
        args: &["-n", "-c", "$s", "--slurpfile", "s", "sl.json"],
        stdin: "",
        env: &[],
        stdout: b"[1,2,[3]]\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "rawfile",
        args: &["-n", "$r", "--rawfile", "r", "raw.txt"],
        stdin: "",
        env: &[],
        stdout: b"\"raw\\ntext\\n\"\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "slurpfile_missing",
        args: &["-n", "$s", "--slurpfile", "s", "no-such.json"],
        stdin: "",
        env: &[],
        stdout: b"",
        code: 2,
        jq16_agrees: true,
    },
    Case {
        name: "stream",
        args: &["-c", "--stream", "."],
        stdin: "{\"a\":[1,{\"b\":2}],\"c\":[],\"d\":{}} 3 \"x\"",
        env: &[],
        stdout: b"[[\"a\",0],1]\n[[\"a\",1,\"b\"],2]\n[[\"a\",1,\"b\"]]\n[[\"a\",1]]\n[[\"c\"],[]]\n[[\"d\"],{}]\n[[\"d\"]]\n[[],3]\n[[],\"x\"]\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "stream_fromstream",
        args: &["-c", "--stream", "-n", "fromstream(inputs)"],
        stdin: "{\"a\":[1,{\"b\":2}]} [4]",
        env: &[],
        stdout: b"{\"a\":[1,{\"b\":2}]}\n[4]\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "stream_errors_valid",
        args: &["-c", "--stream-errors", "."],
        stdin: "[1,[2]]",
        env: &[],
        stdout: b"[[0],1]\n[[1,0],2]\n[[1,0]]\n[[1]]\n",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "seq_output",
        args: &["--seq", "-c", "."],
        stdin: "{\"a\":1} [2] \"x\"",
        env: &[],
        stdout: b"",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "seq_raw",
        args: &["--seq", "-r", "."],
        stdin: "\"a\" 1",
        env: &[],
        stdout: b"",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "seq_input",
        args: &["--seq", "-c", "."],
        stdin: "\u{1e}{\"a\":1}\n\u{1e}[2]\n\u{1e}\"x\"\n",
        env: &[],
        stdout: b"\x1e{\"a\":1}\n\x1e[2]\n\x1e\"x\"\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "raw_output0",
        args: &["--raw-output0", "."],
        stdin: "\"a\" 1 {\"b\":\"c\"}",
        env: &[],
        stdout: b"a\x001\x00{\n  \"b\": \"c\"\n}\x00",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "raw_output0_nul",
        args: &["--raw-output0", "."],
        stdin: "\"a\" \"b\\u0000c\" \"d\"",
        env: &[],
        stdout: b"a\x00d\x00",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "unbuffered",
        args: &["--unbuffered", "-c", "."],
        stdin: "1 [2]",
        env: &[],
        stdout: b"1\n[2]\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "combined_rc",
        args: &["-rc", ".[]"],
        stdin: "[\"a\",{\"b\":1}]",
        env: &[],
        stdout: b"a\n{\"b\":1}\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "combined_nr",
        args: &["-nr", "\"x\""],
        stdin: "",
        env: &[],
        stdout: b"x\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "combined_nrj",
        args: &["-nrj", "\"x\", \"y\""],
        stdin: "",
        env: &[],
        stdout: b"xy",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "combined_sc",
        args: &["-sc", "."],
        stdin: "1 2",
        env: &[],
        stdout: b"[1,2]\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "double_dash",
        args: &["-n", "-c", "--", "$ARGS"],
        stdin: "",
        env: &[],
        stdout: b"{\"positional\":[],\"named\":{}}\n",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "double_dash_program",
        args: &["-c", "--", ".a"],
        stdin: "{\"a\":-1}",
        env: &[],
        stdout: b"-1\n",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "ascii_raw",
        args: &["-r", "-a", "."],
        stdin: "\"é\" \"x\"",
        env: &[],
        stdout: b"\"\\u00e9\"\n\"x\"\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "exit_status_last_null",
        args: &["-e", "."],
        stdin: "1 null",
        env: &[],
        stdout: b"1\nnull\n",
        code: 1,
        jq16_agrees: true,
    },
    Case {
        name: "exit_status_last_false",
        args: &["-e", "."],
        stdin: "true false",
        env: &[],
        stdout: b"true\nfalse\n",
        code: 1,
        jq16_agrees: true,
    },
    Case {
        name: "exit_status_no_output",
        args: &["-e", "empty"],
        stdin: "1",
        env: &[],
        stdout: b"",
        code: 4,
        jq16_agrees: true,
    },
    Case {
        name: "exit_status_true",
        args: &["-e", "."],
        stdin: "null 1",
        env: &[],
        stdout: b"null\n1\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "exit_status_error",
        args: &["-e", "error(\"x\")"],
        stdin: "1",
        env: &[],
        stdout: b"",
        code: 5,
        jq16_agrees: true,
    },
    Case {
        name: "exit_status_halt",
        args: &["-e", "halt"],
        stdin: "1",
        env: &[],
        stdout: b"",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "exit_status_halt_error",
        args: &["-e", "\"bye\\n\" | halt_error(3)"],
        stdin: "1",
        env: &[],
        stdout: b"",
        code: 3,
        jq16_agrees: true,
    },
    Case {
        name: "color_default",
        args: &["-C", "."],
        stdin: "{\"a\":[1,null,true,false,\"s\",{},[]],\"b\":{\"c\":1.5}}",
        env: &[],
        stdout: b"\x1b[1;39m{\n  \x1b[0m\x1b[1;34m\"a\"\x1b[0m\x1b[1;39m: \x1b[0m\x1b[1;39m[\n    \x1b[0;39m1\x1b[0m\x1b[1;39m,\n    \x1b[0;90mnull\x1b[0m\x1b[1;39m,\n    \x1b[0;39mtrue\x1b[0m\x1b[1;39m,\n    \x1b[0;39mfalse\x1b[0m\x1b[1;39m,\n    \x1b[0;32m\"s\"\x1b[0m\x1b[1;39m,\n    \x1b[1;39m{}\x1b[0m\x1b[1;39m,\n    \x1b[1;39m[]\x1b[0m\x1b[1;39m\n  \x1b[1;39m]\x1b[0m\x1b[1;39m,\n  \x1b[0m\x1b[1;34m\"b\"\x1b[0m\x1b[1;39m: \x1b[0m\x1b[1;39m{\n    \x1b[0m\x1b[1;34m\"c\"\x1b[0m\x1b[1;39m: \x1b[0m\x1b[0;39m1.5\x1b[0m\x1b[1;39m\n  \x1b[1;39m}\x1b[0m\x1b[1;39m\n\x1b[1;39m}\x1b[0m\n",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "color_compact",
        args: &["-C", "-c", "."],
        stdin: "{\"a\":[1,null,true,false,\"s\",{},[]],\"b\":{\"c\":1.5}}",
        env: &[],
        stdout: b"\x1b[1;39m{\x1b[0m\x1b[1;34m\"a\"\x1b[0m\x1b[1;39m:\x1b[0m\x1b[1;39m[\x1b[0;39m1\x1b[0m\x1b[1;39m,\x1b[0;90mnull\x1b[0m\x1b[1;39m,\x1b[0;39mtrue\x1b[0m\x1b[1;39m,\x1b[0;39mfalse\x1b[0m\x1b[1;39m,\x1b[0;32m\"s\"\x1b[0m\x1b[1;39m,\x1b[1;39m{}\x1b[0m\x1b[1;39m,\x1b[1;39m[]\x1b[0m\x1b[1;39m\x1b[1;39m]\x1b[0m\x1b[1;39m,\x1b[0m\x1b[1;34m\"b\"\x1b[0m\x1b[1;39m:\x1b[0m\x1b[1;39m{\x1b[0m\x1b[1;34m\"c\"\x1b[0m\x1b[1;39m:\x1b[0m\x1b[0;39m1.5\x1b[0m\x1b[1;39m\x1b[1;39m}\x1b[0m\x1b[1;39m\x1b[1;39m}\x1b[0m\n",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "color_tab_sorted",
        args: &["-C", "--tab", "-S", "."],
        stdin: "{\"z\":[1],\"a\":{\"y\":null}}",
        env: &[],
        stdout: b"\x1b[1;39m{\n\t\x1b[0m\x1b[1;34m\"a\"\x1b[0m\x1b[1;39m: \x1b[0m\x1b[1;39m{\n\t\t\x1b[0m\x1b[1;34m\"y\"\x1b[0m\x1b[1;39m: \x1b[0m\x1b[0;90mnull\x1b[0m\x1b[1;39m\n\t\x1b[1;39m}\x1b[0m\x1b[1;39m,\n\t\x1b[0m\x1b[1;34m\"z\"\x1b[0m\x1b[1;39m: \x1b[0m\x1b[1;39m[\n\t\t\x1b[0;39m1\x1b[0m\x1b[1;39m\n\t\x1b[1;39m]\x1b[0m\x1b[1;39m\n\x1b[1;39m}\x1b[0m\n",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "color_indent7",
        args: &["-C", "--indent", "7", "."],
        stdin: "[{\"a\":[]}]",
        env: &[],
        stdout: b"\x1b[1;39m[\n       \x1b[1;39m{\n              \x1b[0m\x1b[1;34m\"a\"\x1b[0m\x1b[1;39m: \x1b[0m\x1b[1;39m[]\x1b[0m\x1b[1;39m\n       \x1b[1;39m}\x1b[0m\x1b[1;39m\n\x1b[1;39m]\x1b[0m\n",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "color_scalars",
        args: &["-C", "."],
        stdin: "null false true 1 \"x\" [] {}",
        env: &[],
        stdout: b"\x1b[0;90mnull\x1b[0m\n\x1b[0;39mfalse\x1b[0m\n\x1b[0;39mtrue\x1b[0m\n\x1b[0;39m1\x1b[0m\n\x1b[0;32m\"x\"\x1b[0m\n\x1b[1;39m[]\x1b[0m\n\x1b[1;39m{}\x1b[0m\n",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "color_raw_string",
        args: &["-C", "-r", "."],
        stdin: "\"x\" [\"y\"]",
        env: &[],
        stdout: b"x\n\x1b[1;39m[\n  \x1b[0;32m\"y\"\x1b[0m\x1b[1;39m\n\x1b[1;39m]\x1b[0m\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "color_jq_colors",
        args: &["-C", "-c", "."],
        stdin: "{\"a\":[1,null,true,false,\"s\"]}",
        env: &[("JQ_COLORS", "1;31:0;32:0;33:0;34:0;35:0;36:0;37:4;31")],
        stdout: b"\x1b[0;37m{\x1b[0m\x1b[4;31m\"a\"\x1b[0m\x1b[0;37m:\x1b[0m\x1b[0;36m[\x1b[0;34m1\x1b[0m\x1b[0;36m,\x1b[1;31mnull\x1b[0m\x1b[0;36m,\x1b[0;33mtrue\x1b[0m\x1b[0;36m,\x1b[0;32mfalse\x1b[0m\x1b[0;36m,\x1b[0;35m\"s\"\x1b[0m\x1b[0;36m\x1b[0;36m]\x1b[0m\x1b[0;37m\x1b[0;37m}\x1b[0m\n",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "color_jq_colors_partial",
        args: &["-C", "-c", "."],
        stdin: "{\"a\":[1,null]}",
        env: &[("JQ_COLORS", "1;31")],
        stdout: b"\x1b[1;39m{\x1b[0m\x1b[1;34m\"a\"\x1b[0m\x1b[1;39m:\x1b[0m\x1b[1;39m[\x1b[0;39m1\x1b[0m\x1b[1;39m,\x1b[1;31mnull\x1b[0m\x1b[1;39m\x1b[1;39m]\x1b[0m\x1b[1;39m\x1b[1;39m}\x1b[0m\n",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "color_jq_colors_invalid",
        args: &["-C", "-c", "."],
        stdin: "{\"a\":[1,null]}",
        env: &[("JQ_COLORS", "garbage")],
        stdout: b"\x1b[1;39m{\x1b[0m\x1b[1;34m\"a\"\x1b[0m\x1b[1;39m:\x1b[0m\x1b[1;39m[\x1b[0;39m1\x1b[0m\x1b[1;39m,\x1b[0;90mnull\x1b[0m\x1b[1;39m\x1b[1;39m]\x1b[0m\x1b[1;39m\x1b[1;39m}\x1b[0m\n",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "color_monochrome_wins",
        args: &["-C", "-M", "."],
        stdin: "{\"a\":1}",
        env: &[],
        stdout: b"{\n  \"a\": 1\n}\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "color_no_color_and_C",
        args: &["-C", "."],
        stdin: "{\"a\":1}",
        env: &[("NO_COLOR", "1")],
        stdout: b"\x1b[1;39m{\n  \x1b[0m\x1b[1;34m\"a\"\x1b[0m\x1b[1;39m: \x1b[0m\x1b[0;39m1\x1b[0m\x1b[1;39m\n\x1b[1;39m}\x1b[0m\n",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "color_off_in_a_pipe",
        args: &["."],
        stdin: "{\"a\":1}",
        env: &[],
        stdout: b"{\n  \"a\": 1\n}\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "library_import",
        args: &["-L", "mods", "-n", "-c", "import \"m\" as m; import \"sub\" as s; [m::f, s::g]"],
        stdin: "",
        env: &[],
        stdout: b"[\"from m\",\"sub\"]\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "library_attached",
        args: &["-Lmods", "-n", "-c", "include \"m\"; f"],
        stdin: "",
        env: &[],
        stdout: b"\"from m\"\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "library_data_colons",
        args: &["-L", "mods", "-n", "-c", "import \"d\" as $d; [$d::d[].k]"],
        stdin: "",
        env: &[],
        stdout: b"[1,2]\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "library_missing_module",
        args: &["-L", "mods", "-n", "import \"nope\" as n; 1"],
        stdin: "",
        env: &[],
        stdout: b"",
        code: 3,
        jq16_agrees: true,
    },
    Case {
        name: "library_home_default",
        args: &["-n", "-c", "import \"hm\" as hm; hm::h"],
        stdin: "",
        env: &[("HOME", "home")],
        stdout: b"\"home\"\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "trimstr_non_strings",
        args: &["-c", "[.[] as [$x, $y] | ($x | ltrimstr($y)), ($x | rtrimstr($y))]"],
        stdin: "[[\"hi\",1],[1,\"hi\"],[\"hi\",\"hi\"],[1,1]]",
        env: &[],
        stdout: b"[\"hi\",\"hi\",1,1,\"\",\"\",1,1]\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "input_filename_files",
        args: &["-c", "[., input_filename]", "sl.json", "mods/d.json"],
        stdin: "",
        env: &[],
        stdout: b"[1,\"sl.json\"]\n[2,\"sl.json\"]\n[[3],\"sl.json\"]\n[{\"k\":1},\"mods/d.json\"]\n[{\"k\":2},\"mods/d.json\"]\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "input_filename_stdin",
        args: &["input_filename"],
        stdin: "1",
        env: &[],
        stdout: b"\"<stdin>\"\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "input_filename_before_input",
        args: &["-n", "-c", "input_filename, (input | input_filename)", "sl.json"],
        stdin: "",
        env: &[],
        stdout: b"null\n\"sl.json\"\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "search_list_default",
        args: &["-n", "-c", "get_search_list"],
        stdin: "",
        env: &[],
        stdout: b"[\"~/.jq\",\"$ORIGIN/../lib/jq\",\"$ORIGIN/../lib\"]\n",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "invalid_input_exit_code",
        args: &["-c", "."],
        stdin: "1 {",
        env: &[],
        stdout: b"1\n",
        code: 5,
        jq16_agrees: false,
    },
    Case {
        name: "stream_truncated",
        args: &["-c", "--stream", "."],
        stdin: "[1,[2,3]] [4",
        env: &[],
        stdout: b"[[0],1]\n[[1,0],2]\n[[1,1],3]\n[[1,1]]\n[[1]]\n",
        code: 5,
        jq16_agrees: false,
    },
    Case {
        name: "stream_missing_separator",
        args: &["-c", "--stream", "."],
        stdin: "[1 2]",
        env: &[],
        stdout: b"",
        code: 5,
        jq16_agrees: false,
    },
    Case {
        name: "modulemeta",
        args: &["-L", "mm", "-L", "mods", "-n", "-c", "\"x\" | modulemeta"],
        stdin: "",
        env: &[],
        stdout: b"{\"name\":\"x\",\"v\":[1,2],\"deps\":[{\"search\":\"../mods\",\"is_data\":false,\"relpath\":\"m\"},{\"as\":\"s\",\"is_data\":false,\"relpath\":\"sub\"},{\"search\":\"../mods\",\"as\":\"dd\",\"is_data\":true,\"relpath\":\"d\"}],\"defs\":[\"f/0\",\"g/2\"]}\n",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "modulemeta_missing",
        args: &["-L", "mods", "-n", "-c", "\"nope\" | modulemeta"],
        stdin: "",
        env: &[],
        stdout: b"",
        code: 5,
        jq16_agrees: false,
    },
    Case {
        name: "home_jq_file_included",
        args: &["-n", "-c", "[fromhome, (def fromhome: \"mine\"; fromhome)]"],
        stdin: "",
        env: &[("HOME", "home2")],
        stdout: b"[\"hi\",\"mine\"]\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "seq_skips_invalid_texts",
        args: &["-c", "--seq", "."],
        stdin: "\u{1e}{\"a\":1}\n\u{1e}{\"b\":\n\u{1e}[2]\n\u{1e}{x}\n\u{1e}\"s\"\n",
        env: &[],
        stdout: b"\x1e{\"a\":1}\n\x1e[2]\n\x1e\"s\"\n",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "no_program_in_a_pipe",
        args: &["-c"],
        stdin: "{\"a\":1}",
        env: &[],
        stdout: b"{\"a\":1}\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "nan_infinity_input",
        args: &["-c", "."],
        stdin: "[1,nan,NaN,-nan,Infinity,-Infinity,infinity,-NaN]\n",
        env: &[],
        stdout: b"[1,null,null,null,1.7976931348623157e+308,-1.7976931348623157e+308,1.7976931348623157e+308,null]\n",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "nan_in_fromjson",
        args: &["-c", ".[] | try fromjson catch ."],
        stdin: "[\"nan\",\"-Infinity\",\"NaN1\",\"nul\"]",
        env: &[],
        stdout: b"null\n-1.7976931348623157e+308\n\"Invalid numeric literal at EOF at line 1, column 4 (while parsing 'NaN1')\"\n\"Invalid literal at EOF at line 1, column 3 (while parsing 'nul')\"\n",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "input_none_left_is_break",
        args: &["-c", "[., (try input catch .)]"],
        stdin: "1",
        env: &[],
        stdout: b"[1,\"break\"]\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "input_none_left_exit",
        args: &["input"],
        stdin: "1",
        env: &[],
        stdout: b"",
        code: 5,
        jq16_agrees: true,
    },
    Case {
        name: "imports_under_one_alias",
        args: &["-n", "-c", "-L", "mods", "import \"bo0\" as t; import \"bo1\" as t; [t::s0, t::s1]"],
        stdin: "",
        env: &[],
        stdout: b"[0,1]\n",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "input_line_number_lines",
        args: &["-c", "[., input_line_number]"],
        stdin: "1 2\n3\n{\"a\":\n4}\n5",
        env: &[],
        stdout: b"[1,1]\n[2,1]\n[3,2]\n[{\"a\":4},4]\n[5,4]\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "input_line_number_raw",
        args: &["-R", "-c", "[., input_line_number]"],
        stdin: "a\nb\nc",
        env: &[],
        stdout: b"[\"a\",1]\n[\"b\",2]\n[\"c\",2]\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "input_line_number_files",
        args: &["-c", "[., input_line_number, input_filename]", "f1.json", "f2.json"],
        stdin: "",
        env: &[],
        stdout: b"[1,1,\"f1.json\"]\n[2,2,\"f1.json\"]\n[3,1,\"f2.json\"]\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "input_line_number_null_input",
        args: &["-n", "input_line_number"],
        stdin: "",
        env: &[],
        stdout: b"0\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "update_with_empty_deletes_all_at_once",
        args: &["-c", ".foo[1,4,2,3] |= empty, ((.foo[] | select(. >= 2)) |= empty)"],
        stdin: "{\"foo\":[0,1,2,3,4,5]}",
        env: &[],
        stdout: b"{\"foo\":[0,5]}\n{\"foo\":[0,1]}\n",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "prog_args_not_defined",
        args: &["-n", "$__prog_args"],
        stdin: "",
        env: &[],
        stdout: b"",
        code: 3,
        jq16_agrees: true,
    },
    Case {
        name: "getpath_edges",
        args: &["-c", "[getpath([\"a\",\"b\"], [\"x\",\"y\"], [])], (try getpath([\"a\",\"b\",0]) catch \"err\"), (null | getpath([\"a\",1]))"],
        stdin: "{\"a\":{\"b\":5}}",
        env: &[],
        stdout: b"[5,null,{\"a\":{\"b\":5}}]\n\"err\"\nnull\n",
        code: 0,
        jq16_agrees: true,
    },
    Case {
        name: "include_module",
        args: &["-n", "-c", "-L", "mods", "include \"m\"; [f]"],
        stdin: "",
        env: &[],
        stdout: b"[\"from m\"]\n",
        code: 0,
        jq16_agrees: true,
    },
    // `splits` with flags: recorded from jq 1.6 (the jq 1.7.1 above was built without Oniguruma;
    // both define `splits($re; flags)` the same way in builtin.jq), and run against it live.
    Case {
        name: "splits_with_flags",
        args: &["-c", "[splits(\"a\"; \"i\")], [splits(\", *\"; null)]"],
        stdin: "\"xAyaz, b\"",
        env: &[],
        stdout: b"[\"x\",\"y\",\"z, b\"]\n[\"xAyaz\",\"b\"]\n",
        code: 0,
        jq16_agrees: true,
    },
    // jq 1.7.1's manual, `splits(regex)`.
    Case {
        name: "splits_manual",
        args: &["-c", "splits(\", *\")"],
        stdin: "\"ab,cd,   ef, gh\"",
        env: &[],
        stdout: b"\"ab\"\n\"cd\"\n\"ef\"\n\"gh\"\n",
        code: 0,
        jq16_agrees: true,
    },
    // jq 1.7.1's manual (docs/content/manual/manual.yml at tag jq-1.7.1, "Identity: ."): a
    // number literal keeps its digits until arithmetic touches it (jq's default build, with
    // decNumber; the jq 1.7.1 the cases above were recorded with was built without it).
    Case {
        name: "manual_literal_kept",
        args: &["-c", "."],
        stdin: "0.12345678901234567890123456789",
        env: &[],
        stdout: b"0.12345678901234567890123456789\n",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "manual_big_integer_tojson",
        args: &["-c", "[., tojson]"],
        stdin: "12345678909876543212345",
        env: &[],
        stdout: b"[12345678909876543212345,\"12345678909876543212345\"]\n",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "manual_literal_compared_exactly",
        args: &["-c", ". < 0.12345678901234567890123456788"],
        stdin: "0.12345678901234567890123456789",
        env: &[],
        stdout: b"false\n",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "manual_literal_digits",
        args: &["-c", "map([., . == 1]) | tojson"],
        stdin: "[1, 1.000, 1.0, 100e-2]",
        env: &[],
        stdout: b"\"[[1,true],[1.000,true],[1.0,true],[1.00,true]]\"\n",
        code: 0,
        jq16_agrees: false,
    },
    Case {
        name: "manual_arithmetic_in_doubles",
        args: &["-c", ". as $big | [$big, $big + 1] | map(. > 10000000000000000000000000000000)"],
        stdin: "10000000000000000000000000000001",
        env: &[],
        stdout: b"[true,false]\n",
        code: 0,
        jq16_agrees: false,
    },
];

/// The fixtures the cases name, in a fresh folder.
fn fixtures() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let write = |path: &str, text: &str| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("sl.json", "1 2 [3]\n");
    write("raw.txt", "raw\ntext\n");
    write("mods/m.jq", "def f: \"from m\";\n");
    write("mods/sub/sub.jq", "def g: \"sub\";\n");
    write("mods/d.json", "{\"k\": 1}\n{\"k\": 2}\n");
    write("home/.jq/hm.jq", "def h: \"home\";\n");
    write("mods/bo0.jq", "def s0: 0; def s1: 0;\n");
    write("mods/bo1.jq", "def s1: 1;\n");
    write("f1.json", "1\n2\n");
    write("f2.json", "3\n");
    write("home2/.jq", "def fromhome: \"hi\";\n");
    write(
        "mm/x.jq",
        "module {name: \"x\", v: [1,2]};\ninclude \"m\" {search: \"../mods\"};\nimport \"sub\" as s;\nimport \"d\" as $dd {search: \"../mods\"};\ndef f: 1;\ndef g($a; b): 2;\n",
    );
    dir
}

/// Runs `program args…` in `dir` with the case's stdin and environment (HOME made absolute;
/// NO_COLOR and JQ_COLORS only as the case sets them): exit code and stdout bytes.
fn exec(program: &Path, prefix: &[&str], case: &Case, dir: &Path) -> (Option<i32>, Vec<u8>) {
    let mut cmd = Command::new(program);
    cmd.args(prefix)
        .args(case.args)
        .current_dir(dir)
        .env_remove("NO_COLOR")
        .env_remove("JQ_COLORS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in case.env {
        if *k == "HOME" {
            cmd.env(k, dir.join(v));
        } else {
            cmd.env(k, v);
        }
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = case.stdin.as_bytes().to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (out.status.code(), out.stdout)
}

fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

#[test]
fn command_lines_print_what_jq_171_prints() {
    let dir = fixtures();
    let mut failures = Vec::new();
    for case in CASES {
        let (code, stdout) = exec(&bin(), &["filter"], case, dir.path());
        if code != Some(case.code) || stdout != case.stdout {
            failures.push(format!(
                "{} (imgkit filter {:?}):\n  got  exit {code:?} {}\n  want exit {} {}",
                case.name,
                case.args,
                show(&stdout),
                case.code,
                show(case.stdout)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The `jq` on PATH, or `None` (with a message) when it is missing outside CI.
fn jq_on_path() -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("jq"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none_or(|v| v.is_empty()),
            "jq is missing: scripts/test installs it"
        );
        eprintln!("skipping: jq not installed (scripts/test installs it)");
    }
    found
}

#[test]
fn command_lines_match_the_installed_jq_where_16_and_171_agree() {
    let Some(jq) = jq_on_path() else { return };
    let dir = fixtures();
    let mut failures = Vec::new();
    for case in CASES.iter().filter(|c| c.jq16_agrees) {
        let ours = exec(&bin(), &["filter"], case, dir.path());
        let theirs = exec(&jq, &[], case, dir.path());
        if ours != theirs {
            failures.push(format!(
                "{}: imgkit exit {:?} {}, jq exit {:?} {}",
                case.name,
                ours.0,
                show(&ours.1),
                theirs.0,
                show(&theirs.1)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn library_path_long_option_search_list_and_missing_file_input() {
    // `--library-path` is jq 1.8's spelling of -L (jq 1.7.1 has only -L): the same search.
    let dir = fixtures();
    let case = Case {
        name: "library_long",
        args: &[
            "--library-path",
            "mods",
            "-n",
            "-c",
            "import \"d\" as $d; $d",
        ],
        stdin: "",
        env: &[],
        stdout: b"[{\"k\":1},{\"k\":2}]\n",
        code: 0,
        jq16_agrees: false,
    };
    let (code, stdout) = exec(&bin(), &["filter"], &case, dir.path());
    assert_eq!((code, show(&stdout)), (Some(0), show(case.stdout)));
    // `-L` folders as real paths, in order (jq 1.7.1).
    let case = Case {
        name: "search_list_given",
        args: &[
            "-L",
            "mods",
            "-L",
            "mods/sub",
            "-n",
            "-c",
            "get_search_list",
        ],
        stdin: "",
        env: &[],
        stdout: b"",
        code: 0,
        jq16_agrees: false,
    };
    let real = |p: &str| dir.path().join(p).canonicalize().unwrap();
    let want = serde_json::json!([real("mods"), real("mods/sub")]).to_string() + "\n";
    let (code, stdout) = exec(&bin(), &["filter"], &case, dir.path());
    assert_eq!((code, show(&stdout)), (Some(0), show(want.as_bytes())));
    // As jq: an input file that cannot be opened is reported and skipped, the others are
    // read, and the run exits 2.
    let case = Case {
        name: "missing_input_file",
        args: &["-c", ".", "sl.json", "no-such.json", "sl.json"],
        stdin: "",
        env: &[],
        stdout: b"1\n2\n[3]\n1\n2\n[3]\n",
        code: 2,
        jq16_agrees: false,
    };
    let (code, stdout) = exec(&bin(), &["filter"], &case, dir.path());
    assert_eq!((code, show(&stdout)), (Some(2), show(case.stdout)));
}

/// Runs `imgkit filter ARGS FILE` with stdout on a terminal (util-linux `script` gives it a
/// pseudo-terminal, which turns `\n` into `\r\n`); `None` when `script` is missing outside CI.
fn on_a_terminal(args: &str, file: &Path, env: &str) -> Option<Vec<u8>> {
    let Ok(out) = Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!(
            "{env} '{}' filter {args} '{}'",
            bin().display(),
            file.display()
        ))
        .arg("/dev/null")
        .env_remove("NO_COLOR")
        .env_remove("JQ_COLORS")
        .stdin(Stdio::null())
        .output()
    else {
        assert!(
            std::env::var_os("CI").is_none_or(|v| v.is_empty()),
            "script (util-linux) is missing"
        );
        eprintln!("skipping: no `script` to give imgkit a terminal");
        return None;
    };
    Some(out.stdout)
}

#[test]
fn colours_are_on_by_default_on_a_terminal_unless_no_color() {
    let dir = fixtures();
    let file = dir.path().join("one.json");
    std::fs::write(&file, "{\"a\":1}").unwrap();
    // Recorded from jq 1.7.1 on a terminal.
    let coloured: &[u8] = b"\x1b[1;39m{\r\n  \x1b[0m\x1b[1;34m\"a\"\x1b[0m\x1b[1;39m: \x1b[0m\x1b[0;39m1\x1b[0m\x1b[1;39m\r\n\x1b[1;39m}\x1b[0m\r\n";
    let Some(out) = on_a_terminal(".", &file, "") else {
        return;
    };
    assert_eq!(show(&out), show(coloured));
    let plain = on_a_terminal(".", &file, "NO_COLOR=1").unwrap();
    assert_eq!(show(&plain), show(b"{\r\n  \"a\": 1\r\n}\r\n"));
    let plain = on_a_terminal("-M .", &file, "").unwrap();
    assert_eq!(show(&plain), show(b"{\r\n  \"a\": 1\r\n}\r\n"));
    // NO_COLOR set but empty does not count, as in jq.
    let out = on_a_terminal(".", &file, "NO_COLOR=").unwrap();
    assert_eq!(show(&out), show(coloured));
}

/// jq 1.7.1 names the file and the line a runtime error's input came from (recorded:
/// `jq: error (at f1.json:1): …`, `(at f1.json:2)`, `(at f2.json:1)`; the line counts per file,
/// as `input_line_number`).
#[test]
fn runtime_errors_name_the_input_file_and_line() {
    let dir = fixtures();
    let out = Command::new(bin())
        .args(["filter", ".a", "f1.json", "f2.json"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    let places: Vec<&str> = err
        .lines()
        .filter_map(|l| l.split_once("(at ")?.1.split_once(')').map(|(p, _)| p))
        .collect();
    assert_eq!(places, ["f1.json:1", "f1.json:2", "f2.json:1"], "{err}");
}
