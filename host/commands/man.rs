//! `imgkit __man DIR` (internal, not in help or completions): man pages generated from the clap
//! definitions, `imgkit.1` and one `imgkit-COMMAND.1` per command, for packagers and `just man`.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
/// `cmd` is imgkit's command line, as `cli.rs` declares it.
pub(crate) fn run(args: &[OsString], mut cmd: clap::Command) -> anyhow::Result<ExitCode> {
    let [dir] = args else {
        anyhow::bail!("usage: imgkit __man DIR");
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    cmd.build();
    write_page(&cmd, &dir)?;
    for sub in cmd.get_subcommands() {
        if !sub.is_hide_set() && sub.get_name() != "help" {
            write_page(sub, &dir)?;
        }
    }
    eprintln!("imgkit: wrote man pages into {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

fn write_page(cmd: &clap::Command, dir: &Path) -> anyhow::Result<()> {
    let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name());
    let path = dir.join(format!("{name}.1"));
    let mut file =
        File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    clap_mangen::Man::new(cmd.clone())
        .render(&mut file)
        .with_context(|| format!("cannot write {}", path.display()))
}
