//! The `ebb` command line: argument parsing and one function per command.
//! Commands print results on stdout (tables for people, `--format json` or
//! csv for programs) and leave errors to `main`, which prints them once.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use crate::alert;
use crate::authoring::PluginCommand;
use crate::config::Config;
use crate::metrics::PluginCalls;
use crate::output::{self, Format};
use crate::plugin::{Engine, EngineOptions, builtin};
use crate::run::{self, Started};
use crate::state::{Dropped, Page, State};
use crate::status::Status;

#[derive(Parser)]
#[command(
    name = "ebb",
    version,
    about = "Sync warehouse models to business tools, sending only what changed"
)]
pub struct Cli {
    /// The config file; relative paths inside it start at its folder.
    #[arg(
        long,
        short,
        global = true,
        env = "EBB_CONFIG",
        default_value = "ebb.toml"
    )]
    pub config: PathBuf,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log lines as text or JSON objects.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Validate the config, connect to sources, load plugins, check mappings.
    Check,
    /// Show the first rows of a model.
    Preview {
        model: String,
        #[arg(long, default_value_t = 10)]
        limit: usize,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show what a run would send now: counts per op, then the first
    /// records (for updates, only the fields that change); sends and
    /// commits nothing.
    Plan {
        sync: String,
        /// How many records to list (the counts cover all); default 20 in
        /// a table, all as JSON or CSV.
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Run a sync once.
    Run {
        sync: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// List a sync's runs, newest first.
    History {
        sync: String,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// List rows still owed to the destination, with their errors; or stop
    /// owing some of them.
    #[command(after_help = DROP_HELP)]
    Errors {
        sync: String,
        /// Only rows that last failed in this run.
        #[arg(long)]
        run: Option<i64>,
        /// Stop owing the row with this key (repeatable); see below.
        #[arg(long = "drop", value_name = "KEY", conflicts_with_all = ["drop_all", "run"])]
        drop: Vec<String>,
        /// Stop owing every listed row (with --run, those of that run).
        #[arg(long)]
        drop_all: bool,
        /// One line per distinct error, with how many rows it holds and
        /// their first keys, the largest first.
        #[arg(long, conflicts_with_all = ["drop", "drop_all"])]
        group: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Send again exactly what one of a sync's recent runs delivered.
    Replay {
        sync: String,
        /// The run to replay (see `ebb history`).
        #[arg(long)]
        run: i64,
        /// Do not ask for confirmation on a terminal.
        #[arg(long, short = 'y')]
        yes: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Send one record's current row through the sync's transforms and
    /// mapping to its destination, print the requests made (secrets hidden)
    /// and the outcome; writes no state.
    TestRecord {
        sync: String,
        /// The record's primary key; without it, the first row the model
        /// returns.
        #[arg(long)]
        key: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Forget what a sync delivered; its next run sends everything as added.
    Reset {
        sync: String,
        /// Do not ask for confirmation on a terminal.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Keep every sync on its schedule and serve the HTTP API, until
    /// SIGTERM or Ctrl-C.
    Serve,
    /// Write, build, inspect and test plugins (reads no ebb.toml).
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

impl Cli {
    /// The command line, or exit with clap's message.
    ///
    /// `ebb plugin test --config FILE` names the plugin's config, and shares
    /// its id with the global `--config` (the ebb.toml), whose default and
    /// `EBB_CONFIG` would otherwise fill it: it keeps only a value typed on
    /// the command line.
    pub fn parse_args() -> Cli {
        let matches = Cli::command().get_matches();
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let typed = matches
            .subcommand_matches("plugin")
            .and_then(|m| m.subcommand_matches("test"))
            .and_then(|m| m.value_source("config"))
            == Some(ValueSource::CommandLine);
        if let Command::Plugin {
            command: PluginCommand::Test { config, .. },
        } = &mut cli.command
            && !typed
        {
            *config = None;
        }
        cli
    }
}

pub async fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Plugin { command } = cli.command {
        let engine = Engine::new(EngineOptions {
            builtins: builtin::ALL,
            ..EngineOptions::default()
        })
        .context("cannot start the plugin engine")?;
        return Ok(crate::authoring::execute(command, &engine).await?);
    }
    let cfg = Config::load(&cli.config)?;
    match cli.command {
        Command::Check => check(&cfg).await,
        Command::Preview {
            model,
            limit,
            format,
        } => {
            let (columns, rows) = crate::preview::rows(&cfg, &model, limit).await?;
            output::preview(&columns, &rows, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan {
            sync,
            limit,
            format,
        } => {
            let limit = limit.or((format == Format::Table).then_some(20));
            let plan = run::plan(&cfg, &engine(&cfg)?, &sync, limit, &progress(format)).await?;
            output::plan(&sync, &plan, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { sync, format } => run_sync(&cfg, &sync, format).await,
        Command::History {
            sync,
            limit,
            format,
        } => {
            cfg.sync(&sync)?;
            let runs = match State::open_existing(&cfg.state_url).await? {
                Some(state) => state.history(&sync, limit).await?,
                None => Vec::new(),
            };
            output::history(&runs, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Errors {
            sync,
            run,
            drop,
            drop_all,
            group,
            format,
        } => {
            cfg.sync(&sync)?;
            if drop_all || !drop.is_empty() {
                let dropped = run::drop_owed(&cfg, &sync, drop, drop_all, run).await?;
                return drop_owed(&sync, dropped, format);
            }
            let state = State::open_existing(&cfg.state_url).await?;
            if group {
                let every = Page {
                    limit: i64::MAX,
                    offset: 0,
                };
                let groups = match state {
                    Some(state) => state.error_groups(&sync, run, every).await?.groups,
                    None => Vec::new(),
                };
                output::error_groups(&groups, format)?;
                return Ok(ExitCode::SUCCESS);
            }
            let rows = match state {
                Some(state) => state.owed(&sync, run).await?,
                None => Vec::new(),
            };
            output::owed(&rows, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay {
            sync,
            run,
            yes,
            format,
        } => {
            let destination = &cfg.sync(&sync)?.destination;
            let question = format!(
                "Replay run {run} of sync `{sync}`? Every event it delivered is sent again to destination `{destination}`."
            );
            if !confirmed(yes, &question)? {
                crate::tell!("replay cancelled; nothing was sent");
                return Ok(ExitCode::FAILURE);
            }
            let replayed = run::replay(&cfg, &engine(&cfg)?, &sync, run).await?;
            output::replayed(&replayed, format)?;
            Ok(match replayed.rejected + replayed.failed {
                0 => ExitCode::SUCCESS,
                _ => ExitCode::FAILURE,
            })
        }
        Command::TestRecord { sync, key, format } => {
            let tested = run::test_record(&cfg, &engine(&cfg)?, &sync, key.as_deref()).await?;
            output::tested(&tested, format)?;
            Ok(match tested.accepted() {
                true => ExitCode::SUCCESS,
                false => ExitCode::FAILURE,
            })
        }
        Command::Serve => crate::serve::serve(cfg.clone(), engine(&cfg)?).await,
        Command::Plugin { .. } => unreachable!("handled before the config is read"),
        Command::Reset { sync, yes } => {
            let destination = &cfg.sync(&sync)?.destination;
            let question = format!(
                "Reset sync `{sync}`? Ebb forgets what it delivered to destination `{destination}`, \
                 and the next run sends every record again as added."
            );
            if !confirmed(yes, &question)? {
                crate::tell!("reset cancelled; nothing changed");
                return Ok(ExitCode::FAILURE);
            }
            run::reset(&cfg, &sync).await?;
            crate::say!("sync `{sync}` reset: its next run sends every record as added");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Asks on a terminal before a command that changes what a sync delivered
/// or sends again; `--yes`, and scripts (stdin not a terminal), go ahead.
fn confirmed(yes: bool, question: &str) -> anyhow::Result<bool> {
    use std::io::{IsTerminal, Write};
    if yes || !std::io::stdin().is_terminal() {
        return Ok(true);
    }
    let mut stderr = std::io::stderr();
    // A closed stderr only loses the question.
    let _ = write!(stderr, "{question} [y/N] ");
    let _ = stderr.flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// `ebb run`: runs the sync once, alerts if the run calls for it and
/// prints its summary; the exit code tells success, partial or failure.
async fn run_sync(cfg: &Config, sync: &str, format: Format) -> anyhow::Result<ExitCode> {
    let progress = progress(format);
    let summary = match run::start(cfg, &engine(cfg)?, sync, None).await? {
        Started::Skipped(summary) => summary,
        Started::Running(claimed) => {
            let state = claimed.state().clone();
            let summary = claimed.execute(cfg, &progress, run::interrupted()).await?;
            alert::run_ended(cfg, &state, &summary).await;
            summary
        }
    };
    output::summary(&summary, format)?;
    Ok(match summary.status {
        Status::Success | Status::Skipped => ExitCode::SUCCESS,
        Status::Partial => ExitCode::from(2),
        Status::Failed | Status::Running => ExitCode::FAILURE,
    })
}

const DROP_HELP: &str = "\
Dropping an owed row (--drop KEY, --drop-all) takes it off this list and
treats it as delivered: the snapshot takes the record the failed attempt was
derived from, so the next run does not send it again unless the row changes
in the warehouse (a later change goes out as an update, a removal as a
deletion). A dropped deletion forgets the key. A row that never had a usable
key is only taken off the list; the next run reports it again if the
warehouse still returns it. Dropping is all or nothing: if a key is not owed,
nothing is dropped.";

/// Reports what `errors --drop` removed, or fails naming the keys not owed.
fn drop_owed(sync: &str, dropped: Dropped, format: Format) -> anyhow::Result<ExitCode> {
    match dropped {
        Dropped::Unknown(keys) => {
            let keys: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
            anyhow::bail!(
                "sync `{sync}` owes no row with key {}; nothing was dropped; `ebb errors {sync}` lists the rows owed",
                keys.join(", ")
            )
        }
        Dropped::Rows(rows) => {
            if format == Format::Table {
                crate::say!(
                    "dropped {} owed row(s) of sync `{sync}`; they are not sent again unless they change",
                    rows.len()
                );
            }
            output::owed(&rows, format)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn engine(cfg: &Config) -> anyhow::Result<Engine> {
    Engine::new(EngineOptions {
        cache_dir: Some(cfg.cache_dir.clone()),
        builtins: builtin::ALL,
        observer: Some(Arc::new(PluginCalls::new(cfg))),
    })
    .context("cannot start the plugin engine")
}

/// A spinner on a terminal when people read the output; hidden otherwise.
fn progress(format: Format) -> ProgressBar {
    if format != Format::Table {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Whether a model is full or incremental, why, and what that means for
/// deletions, as `check` reports it.
fn reading(model: &crate::config::Model, kind: crate::config::SourceKind) -> String {
    use crate::extract::Reading;
    match crate::extract::reading(model, kind) {
        Reading::Full => "full: the query uses no {{last_sync_time}} or {{cursor}} outside comments and strings; deletions are detected".to_owned(),
        Reading::Incremental { template, line } => format!(
            "incremental: the query uses {{{{{template}}}}} at line {line}; deletions are not detected"
        ),
    }
}

/// Checks every source, model and sync and prints one line for each (what
/// is fine on stdout, each problem as an `error:` line on stderr), so all
/// problems show at once; exits 1 when any is found.
async fn check(cfg: &Config) -> anyhow::Result<ExitCode> {
    use crate::extract::{Templates, bind};
    use crate::source::Warehouse;

    crate::say!("config {}: ok", cfg.file.display());
    let mut problems = 0;
    let mut report = |line: String| {
        problems += 1;
        crate::tell!("error: {}", output::one_line(&line));
    };
    let mut failed_models = std::collections::BTreeSet::new();
    for source in cfg.sources.values() {
        let models = cfg.models.values().filter(|m| m.source == source.name);
        let mut warehouse = match Warehouse::connect(source).await {
            Ok(w) => w,
            Err(e) => {
                report(e.to_string());
                failed_models.extend(models.map(|m| m.name.clone()));
                continue;
            }
        };
        crate::say!("source `{}`: ok", source.name);
        for model in models {
            let checked = match bind(model, source.kind, &Templates::first_run(model)) {
                Ok(query) => warehouse.check(&query).await.map_err(|e| e.to_string()),
                // Already names the model.
                Err(e) => Err(e.to_string()),
            };
            match checked {
                Ok(()) => crate::say!(
                    "model `{}`: ok ({})",
                    model.name,
                    reading(model, source.kind)
                ),
                Err(e) => {
                    report(e);
                    failed_models.insert(model.name.clone());
                }
            }
        }
    }
    let engine = engine(cfg)?;
    for sync in cfg.syncs.values() {
        if failed_models.contains(&sync.model) {
            crate::say!(
                "sync `{}`: not checked (model `{}` failed)",
                sync.name,
                sync.model
            );
            continue;
        }
        match run::prepare(cfg, &engine, &sync.name).await {
            Ok(p) => crate::say!(
                "sync `{}`: ok (model `{}`, destination `{}` action `{}`, {} transform(s))",
                sync.name,
                sync.model,
                sync.destination,
                p.loader.action,
                p.steps.len()
            ),
            Err(e) => report(format!("sync `{}`: {e:#}", sync.name)),
        }
    }
    Ok(match problems {
        0 => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}
