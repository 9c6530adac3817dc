//! The `ebb` binary: parses arguments, sets up logging, runs one command and
//! turns its error into one message on stderr and a non-zero exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use ebb::cli::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

/// Rows are built on the reading task's thread and freed on the diff's;
/// mimalloc frees across threads without the arena locks glibc takes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    // A model reading millions of rows is a long statement by design: the
    // driver's slow-statement warnings are only wanted when asked for. A
    // server's log is the record of what it did, so `serve` logs runs.
    // What plugins log (target `ebb::plugin`) shows from `-v` on, down to
    // their debug lines, which are written for their authors; `ebb plugin`
    // is for authors, so it shows them always.
    let serving = matches!(cli.command, Command::Serve);
    let authoring = matches!(cli.command, Command::Plugin { .. });
    let default = match (cli.verbose, serving) {
        (0, _) if authoring => "warn,ebb::plugin=debug,sqlx::query=error",
        (0, false) => "warn,sqlx::query=error",
        (0, true) => "info,sqlx::query=error",
        (1, _) => "info,ebb::plugin=debug,sqlx::query=error",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // A log line that cannot be written (stderr closed, as in `2>&1 | head`)
    // is dropped: the subscriber's own report of it would go to the same
    // closed stderr with `eprintln!`, which panics, on whatever thread
    // logged, the state store's included.
    let logs = tracing_subscriber::fmt()
        .log_internal_errors(false)
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            ebb::tell!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ebb::cli::execute(cli)) {
        Ok(code) => code,
        Err(e) => {
            ebb::tell!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
