//! Loading a plugin: size and format checks, compile (or the cache), import and export checks.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmtime::{Config, Engine, ExternType, InstancePre, Module, OptLevel};

use crate::cache::{self, CacheOutcome};
use crate::error::Error;
use crate::imports::{self, WASI_P1};
use crate::limits::{Limits, Options};
use crate::run::State;

/// A loaded, compiled and checked plugin, ready to [`run`](Plugin::run) any number of times.
pub struct Plugin {
    pub(crate) path: PathBuf,
    pub(crate) name: String,
    pub(crate) engine: Engine,
    pub(crate) pre: InstancePre<State>,
    pub(crate) options: Options,
    cache: CacheOutcome,
    load_time: Duration,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.path)
            .field("options", &self.options)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Loads the module at `path` with `limits`, the default sandbox and imgkit's cache.
    pub fn load(path: &Path, limits: Limits) -> Result<Plugin, Error> {
        Self::load_with(
            path,
            Options {
                limits,
                cache_dir: cache::default_cache_dir(),
                ..Options::default()
            },
        )
    }

    /// Loads the module at `path` with explicit options.
    pub fn load_with(path: &Path, options: Options) -> Result<Plugin, Error> {
        let started = Instant::now();
        let plugin = path.to_path_buf();
        let read_err = |source| Error::Read {
            plugin: plugin.clone(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read_err)?.len();
        if size > options.limits.max_module {
            return Err(Error::ModuleTooLarge {
                plugin,
                size,
                limit: options.limits.max_module,
            });
        }
        let bytes = std::fs::read(path).map_err(read_err)?;
        check_format(&plugin, &bytes)?;

        let engine = engine().map_err(|e| Error::Runtime {
            plugin: plugin.clone(),
            reason: e,
        })?;
        let (module, outcome) = compile(&engine, &plugin, &bytes, options.cache_dir.as_deref())?;
        check_interface(&plugin, &module)?;

        let linker = imports::linker(&engine).map_err(|e| Error::Runtime {
            plugin: plugin.clone(),
            reason: format!("{e:#}"),
        })?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| Error::InvalidModule {
                plugin: plugin.clone(),
                reason: format!("{e:#}"),
            })?;
        let name = path
            .file_name()
            .map_or_else(|| "plugin".to_owned(), |n| n.to_string_lossy().into_owned());
        Ok(Plugin {
            path: plugin,
            name,
            engine,
            pre,
            options,
            cache: outcome,
            load_time: started.elapsed(),
        })
    }

    /// The module file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The options it runs with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Whether the compiled module came from the cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cache
    }

    /// How long loading took (read, compile or cache hit, checks).
    pub fn load_time(&self) -> Duration {
        self.load_time
    }
}

/// The engine every plugin runs on: fuel and epochs on, a 1 MiB wasm stack, optimized code.
fn engine() -> Result<Engine, String> {
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(1 << 20)
        .cranelift_opt_level(OptLevel::Speed);
    Engine::new(&config).map_err(|e| format!("{e:#}"))
}

fn check_format(plugin: &Path, bytes: &[u8]) -> Result<(), Error> {
    let plugin = plugin.to_path_buf();
    if !bytes.starts_with(b"\0asm") {
        // The text format, for hand-written test plugins.
        if plugin.extension().is_some_and(|e| e == "wat") {
            return Ok(());
        }
        return Err(Error::NotWasm { plugin });
    }
    match bytes.get(4..8) {
        Some([1, 0, 0, 0]) => Ok(()),
        Some([_, _, 1, 0]) => Err(Error::Component { plugin }),
        _ => Err(Error::InvalidModule {
            plugin,
            reason: "unknown WebAssembly binary version".into(),
        }),
    }
}

fn compile(
    engine: &Engine,
    plugin: &Path,
    bytes: &[u8],
    cache_dir: Option<&Path>,
) -> Result<(Module, CacheOutcome), Error> {
    let key = cache::key(engine, bytes);
    let mut replaced = false;
    if let Some(dir) = cache_dir {
        match cache::load(engine, dir, &key) {
            Ok(Some(module)) => return Ok((module, CacheOutcome::Hit)),
            Ok(None) => {}
            Err(()) => replaced = true,
        }
    }
    let module = Module::new(engine, bytes).map_err(|e| Error::InvalidModule {
        plugin: plugin.to_path_buf(),
        reason: format!("{e:#}"),
    })?;
    let outcome = match cache_dir.map(|dir| cache::store(dir, &key, &module)) {
        Some(Ok(())) if replaced => CacheOutcome::Replaced,
        Some(Ok(())) => CacheOutcome::Compiled,
        _ => CacheOutcome::CompiledUncached,
    };
    Ok((module, outcome))
}

fn check_interface(plugin: &Path, module: &Module) -> Result<(), Error> {
    for import in module.imports() {
        let known = imports::IMPORTS
            .iter()
            .any(|(name, _)| *name == import.name());
        if import.module() != WASI_P1 || !known || !matches!(import.ty(), ExternType::Func(_)) {
            return Err(Error::UnsupportedImport {
                plugin: plugin.to_path_buf(),
                module: import.module().to_owned(),
                name: import.name().to_owned(),
            });
        }
    }
    match module.get_export("_start") {
        Some(ExternType::Func(f)) if f.params().len() == 0 && f.results().len() == 0 => Ok(()),
        _ => Err(Error::NoStart {
            plugin: plugin.to_path_buf(),
        }),
    }
}
