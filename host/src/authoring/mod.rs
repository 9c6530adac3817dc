//! `ebb plugin`: the connector author's toolchain. `new` scaffolds a crate
//! on the SDK that builds, tests and loads as it is; `build` compiles it
//! for `wasm32-wasip2` and prints what to paste into `ebb.toml`; `inspect`
//! says what a `.wasm` is; `test` runs one against a mock endpoint. None of
//! them reads `ebb.toml`: they work in a plugin's own folder.

mod builder;
mod harness;
mod inspect;
mod mock;
mod problem;
mod report;
mod scaffold;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

pub use problem::Problem;
use report::Format;
use scaffold::Kind;

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Create a plugin crate that builds, tests and loads as it is.
    New {
        kind: Kind,
        /// The crate's name, and its folder's unless --path is given.
        name: String,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        path: Option<PathBuf>,
    },
    /// Build the plugin crate in this folder (or --path) for wasm32-wasip2
    /// with its release profile, and print the lines that load it.
    Build {
        #[arg(long, default_value = ".")]
        path: PathBuf,
    },
    /// Describe a built plugin: its world, WIT version, spec, hosts, size
    /// and sha256.
    Inspect {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Run a built plugin, or a JavaScript transform (FILE.js), on events
    /// from a file, against a local mock endpoint, and show its requests
    /// and each event's outcome; exits 1 unless every event was accepted.
    #[command(after_help = TEST_HELP)]
    Test {
        file: PathBuf,
        /// For FILE.js: a library it imports by name (repeatable).
        #[arg(long = "library", value_name = "NAME=FILE")]
        libraries: Vec<String>,
        /// For FILE.js: the event shape, `ebb` (the envelope) or
        /// `rudderstack` (an identify call).
        #[arg(long, default_value = "ebb")]
        shape: String,
        /// The plugin's config: a TOML file of its keys, or a .json file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// One JSON event per line: {"op","id","fields","previous"}.
        #[arg(long)]
        events: PathBuf,
        /// How the mock answers (see below); without it every request gets
        /// 200 with `{}`.
        #[arg(long)]
        respond: Option<PathBuf>,
        /// The action to deliver with; needed when the plugin declares several.
        #[arg(long)]
        action: Option<String>,
        /// Grant a host besides those the plugin declares or its config names.
        #[arg(long = "allow-host", value_name = "HOST[:PORT]")]
        allow_hosts: Vec<String>,
        /// Attempts per batch, as a sync's `retry.max_attempts`.
        #[arg(long, default_value_t = 3)]
        max_attempts: u32,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

const TEST_HELP: &str = "\
The plugin keeps its config: every request it is allowed to make goes to the
mock instead, and is printed under the URL it was meant for, secrets hidden.
A --respond script (TOML, or .json) lists rules, tried in order; the first
that matches and is not used up answers:

  [[respond]]
  path = \"/v1/batch\"     # optional: only requests to this path
  method = \"POST\"        # optional
  times = 1              # optional: answers this many requests, then is used up
  status = 429
  headers = { \"Retry-After\" = \"1\" }
  body = \"slow down\"     # or json = { ... }

A JavaScript transform runs in the built-in `ebb:js` as a sync runs it, with
`metadata(event).sync` = \"test\"; what it logs is printed on stderr:

  ebb plugin test transforms/rebuild.js --events events.jsonl \\
      --library warehouseActionsUtils=transforms/utils.js --shape rudderstack";

pub async fn execute(
    command: PluginCommand,
    engine: &crate::plugin::Engine,
) -> Result<ExitCode, Problem> {
    match command {
        PluginCommand::New { kind, name, path } => {
            scaffold::create(kind, &name, path)?;
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Build { path } => {
            builder::build(engine, &path).await?;
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Inspect { file, format } => {
            inspect::inspect(engine, &file, format).await?;
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Test {
            file,
            libraries,
            shape,
            config,
            events,
            respond,
            action,
            allow_hosts,
            max_attempts,
            format,
        } => {
            let test = harness::Test {
                file,
                libraries,
                shape,
                config,
                events,
                respond,
                action,
                allow_hosts,
                max_attempts,
                format,
            };
            Ok(match harness::run(engine, test).await? {
                true => ExitCode::SUCCESS,
                false => ExitCode::FAILURE,
            })
        }
    }
}
