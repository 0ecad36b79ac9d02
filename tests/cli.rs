//! The command line itself: help, version, completions.

use crate::util::Test;

#[test]
fn completions_are_generated_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let run = Test::new().args(["completions", shell]).run().success();
        assert!(run.stdout.contains("imgkit"), "{shell}: {}", run.stdout);
    }
}

#[test]
fn an_unknown_command_is_a_usage_error() {
    Test::new()
        .args(["frobnicate"])
        .run()
        .code(2)
        .stderr_has("unrecognized subcommand");
}
