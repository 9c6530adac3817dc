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
    return_freed_memory_sooner();
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

/// mimalloc (v3) keeps memory it freed for a second before it gives it
/// back to the system (`purge_delay`, 1,000 ms). A sync frees and allocates
/// fast enough that this was 30–80 MiB of peak RSS, which took a 10 M-row
/// first sync past its 256 MiB bound; a tenth of that delay keeps it under,
/// at a cost within the machine's noise (BENCHMARKS.md, "Seventh round").
/// Another delay set with `MIMALLOC_PURGE_DELAY` is left as it is.
fn return_freed_memory_sooner() {
    use std::ffi::{c_int, c_long};
    // The option's number in `mi_option_e` of the mimalloc that
    // `libmimalloc-sys` builds; its Rust bindings do not name it.
    const PURGE_DELAY: c_int = 15;
    const DEFAULT: c_long = 1000;
    unsafe extern "C" {
        fn mi_option_get(option: c_int) -> c_long;
        fn mi_option_set(option: c_int, value: c_long);
    }
    // SAFETY: both only read or write a number in mimalloc's table of
    // options, and ignore an option number they do not know. The delay is
    // changed only if option 15 holds mimalloc's default for it, so a
    // mimalloc that numbers its options otherwise is left alone.
    unsafe {
        if mi_option_get(PURGE_DELAY) == DEFAULT {
            mi_option_set(PURGE_DELAY, DEFAULT / 10);
        }
    }
}
