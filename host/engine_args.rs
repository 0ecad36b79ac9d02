//! The options that pick and reach an engine, shared by every command that talks to one, and
//! the choice of engine when none is named.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use imgkit_engine::probe::{Probe, probe};
use imgkit_engine::rancher_desktop;
use imgkit_engine::{Engine, EngineKind, EngineOptions};

use crate::diagnostics::with_hint;

/// `--engine`'s values: the library's [`EngineKind`] through its `FromStr`, each with the help
/// `imgkit save --help` shows (the engine crate knows no command line).
pub(crate) fn engine_kind_parser() -> impl clap::builder::TypedValueParser<Value = EngineKind> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser as _};
    let help = |k: EngineKind| match k {
        EngineKind::Docker => "dockerd (moby), over its Engine API (the `docker` CLI as fallback)",
        EngineKind::Nerdctl => "containerd, through the `nerdctl` CLI",
        EngineKind::Ctr => {
            "containerd, over its gRPC API when its socket answers (its own `ctr` CLI as fallback)"
        }
        EngineKind::Podman => "podman (no daemon)",
    };
    let order = [
        EngineKind::Docker,
        EngineKind::Nerdctl,
        EngineKind::Ctr,
        EngineKind::Podman,
    ];
    PossibleValuesParser::new(order.map(|k| PossibleValue::new(k.as_str()).help(help(k))))
        .map(|s| s.parse::<EngineKind>().expect("one of the possible values"))
}

/// `--engine`, `-n/--namespace`, `--address`, `--host`, `--context`, `--engine-bin`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct EngineArgs {
    /// The engine [default: the one engine reachable here].
    #[arg(long, value_parser = engine_kind_parser(), env = "IMGKIT_ENGINE")]
    pub(crate) engine: Option<EngineKind>,
    /// containerd namespace for ctr and nerdctl (`k8s.io` holds Kubernetes' images).
    #[arg(
        short = 'n',
        long,
        value_name = "NS",
        env = "CONTAINERD_NAMESPACE",
        default_value = "default"
    )]
    pub(crate) namespace: String,
    /// containerd socket for ctr and nerdctl [default: $CONTAINERD_ADDRESS, else
    /// /run/containerd/containerd.sock].
    #[arg(long, value_name = "SOCKET")]
    pub(crate) address: Option<String>,
    /// docker daemon: unix://, tcp:// or npipe:// (over its Engine API), ssh:// (through the
    /// docker CLI) [default: $DOCKER_HOST, else the current docker context, else docker's own
    /// default, else Rancher Desktop's ~/.rd/docker.sock].
    #[arg(long, value_name = "URL")]
    pub(crate) host: Option<String>,
    /// docker context.
    #[arg(long, value_name = "NAME", conflicts_with = "host")]
    pub(crate) context: Option<String>,
    /// The engine's binary [default: $IMGKIT_<ENGINE>_BIN, else the engine's name on PATH, else
    /// Rancher Desktop's ~/.rd/bin].
    #[arg(long, value_name = "PATH")]
    pub(crate) engine_bin: Option<PathBuf>,
    /// Print each engine command line (set from the global -v).
    #[arg(skip)]
    pub(crate) trace: bool,
}

/// `-v` for the whole process: every engine command line is printed (`+ argv` on stderr), also
/// those built outside [`EngineArgs`] (`run`'s endpoints, the save and load of a transfer).
static VERBOSE: AtomicBool = AtomicBool::new(false);

/// Turns the printing of engine command lines on (the global `-v`).
pub(crate) fn set_verbose(on: bool) {
    VERBOSE.store(on, Ordering::Relaxed);
}

/// The engine's trace callback when `-v` is on.
pub(crate) fn trace() -> Option<fn(&str)> {
    VERBOSE
        .load(Ordering::Relaxed)
        .then_some(print_command as fn(&str))
}

pub(crate) fn print_command(argv: &str) {
    eprintln!("+ {argv}");
}

impl EngineArgs {
    /// The options for `kind` (`--engine-bin` applies to the named engine only), completed with
    /// Rancher Desktop's CLI and docker socket where nothing else names them.
    pub(crate) fn options(&self, kind: EngineKind) -> EngineOptions {
        let opts = EngineOptions {
            bin: if Some(kind) == self.engine {
                self.engine_bin.clone()
            } else {
                None
            },
            docker_host: self.host.clone(),
            docker_context: self.context.clone(),
            address: self.address.clone(),
            namespace: Some(self.namespace.clone()),
            trace: self
                .trace
                .then_some(print_command as fn(&str))
                .or_else(trace),
        };
        rancher_desktop::Places::here().apply(kind, opts)
    }

    /// The named engine, or the one engine reachable here.
    pub(crate) fn engine(&self) -> anyhow::Result<Engine> {
        if let Some(kind) = self.engine {
            return Engine::new(kind, self.options(kind)).map_err(engine_error);
        }
        if self.engine_bin.is_some() {
            anyhow::bail!(with_hint(
                anyhow::anyhow!("--engine-bin needs --engine"),
                "say which engine the binary is, e.g. --engine docker --engine-bin /usr/bin/docker"
            ));
        }
        let probes = probe_all(self);
        let reachable: Vec<&Probe> = probes.iter().filter(|p| p.reachable).collect();
        match reachable.as_slice() {
            [one] => Engine::new(one.engine, self.options(one.engine)).map_err(engine_error),
            [] => {
                let why: Vec<String> = probes
                    .iter()
                    .map(|p| {
                        format!(
                            "{}: {}",
                            p.engine,
                            p.error.as_deref().unwrap_or("not reachable")
                        )
                    })
                    .collect();
                Err(with_hint(
                    anyhow::anyhow!("no container engine is reachable here ({})", why.join("; ")),
                    "start one (dockerd, containerd) or install podman, which needs no daemon; `imgkit engines` shows details",
                ))
            }
            many => {
                let names: Vec<&str> = many.iter().map(|p| p.engine.as_str()).collect();
                Err(with_hint(
                    anyhow::anyhow!(
                        "several engines are reachable here ({}); which one?",
                        names.join(", ")
                    ),
                    format!("pick one with --engine {}", names.join("|")),
                ))
            }
        }
    }
}

/// Probes every engine kind in parallel (each is a separate CLI call or two).
pub(crate) fn probe_all(args: &EngineArgs) -> Vec<Probe> {
    thread::scope(|s| {
        let handles: Vec<_> = EngineKind::ALL
            .into_iter()
            .map(|kind| {
                let opts = args.options(kind);
                s.spawn(move || probe(kind, opts))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("probe thread"))
            .collect()
    })
}

/// An engine error with its hint attached.
pub(crate) fn engine_error(e: imgkit_engine::Error) -> anyhow::Error {
    match e.hint() {
        Some(h) => with_hint(e, h),
        None => e.into(),
    }
}

/// How `run` reaches containerd (`ctr:NAMESPACE`): its socket, and how images are unpacked
/// after a native import.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct ContainerdArgs {
    /// containerd's socket for `ctr:` endpoints [default: $CONTAINERD_ADDRESS, else the first
    /// of /run/containerd/containerd.sock, /run/k3s/containerd/containerd.sock (k3s, RKE2) and
    /// MicroK8s' that exists].
    #[arg(long = "address", value_name = "SOCKET")]
    pub(crate) address: Option<String>,
    /// The snapshotter images loaded into `ctr:` are unpacked into (the one the CRI uses).
    #[arg(long, value_name = "NAME", default_value = "overlayfs")]
    pub(crate) snapshotter: String,
    /// Do not unpack images loaded into `ctr:` (kubelet unpacks on a pod's first start).
    #[arg(long)]
    pub(crate) no_unpack: bool,
}

static CONTAINERD: std::sync::OnceLock<ContainerdArgs> = std::sync::OnceLock::new();

/// Sets `run`'s containerd options for the whole process (once; `run --from ctr:all` runs
/// several times with the same options).
pub(crate) fn set_containerd(args: &ContainerdArgs) {
    let _ = CONTAINERD.set(args.clone());
}

/// `run`'s containerd options (`ls`, `save` and `load --engine ctr` set theirs from their
/// engine options: `host/containerd.rs` `for_engine`; defaults when not set).
pub(crate) fn containerd() -> ContainerdArgs {
    CONTAINERD.get().cloned().unwrap_or_else(|| ContainerdArgs {
        snapshotter: "overlayfs".to_owned(),
        ..ContainerdArgs::default()
    })
}
