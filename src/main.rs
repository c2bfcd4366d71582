//! The `hookmirror` binary: parse the command line, set up logging, run, map errors to exit codes.

use clap::Parser;

use hookmirror::cli::{Cli, Command};
use hookmirror::{commands, config, logging};

/// jemalloc for everything, libgit2's and OpenSSL's C allocations too (its `malloc` replaces
/// glibc's): glibc keeps the memory freed by each thread that ran a sync in that thread's arena
/// (one per thread, up to 8 per core), which left an idle daemon with 1,000 repositories at
/// 41 MB; jemalloc's background thread returns freed pages to the system after its 10 s decay
/// (20 MB; see README, Performance).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// One background thread returns freed memory for all arenas (idle, nothing else would).
fn return_freed_memory() {
    let _ = tikv_jemalloc_ctl::max_background_threads::write(1);
    let _ = tikv_jemalloc_ctl::background_thread::write(true);
}

fn main() {
    return_freed_memory();
    let cli = Cli::parse();
    let code = match &cli.command {
        // These need no config.
        Command::Token { action } => {
            commands::token(action, &mut std::io::stdout(), &mut std::io::stderr())
        }
        Command::Completions { shell } => {
            hookmirror::cli::completions(*shell, &mut std::io::stdout());
            0
        }
        Command::Man => match hookmirror::cli::man(&mut std::io::stdout()) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("hookmirror: {e}");
                1
            }
        },
        _ => with_config(cli),
    };
    std::process::exit(code);
}

/// The commands that load the config first.
fn with_config(cli: Cli) -> i32 {
    hookmirror::sync::init_libgit2();
    let config = match config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            commands::print_load_error(&e, &mut std::io::stderr());
            return commands::EXIT_CONFIG;
        }
    };
    match cli.command {
        Command::Check => commands::check(&config, &mut std::io::stdout()),
        Command::Sync { names } => {
            logging::init_cli(&config.log, cli.log_level.as_deref());
            commands::sync(
                &config,
                &names,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            )
        }
        Command::Status { token } => hookmirror::client::status(
            &config,
            token.as_deref(),
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        ),
        Command::Serve => {
            if let Err(e) = logging::init(&config.log, cli.log_level.as_deref()) {
                eprintln!("hookmirror: {e}");
                return commands::EXIT_CONFIG;
            }
            match hookmirror::run::serve(config) {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("hookmirror: {e:#}");
                    1
                }
            }
        }
        // Handled in `main` without a config.
        Command::Token { .. } | Command::Completions { .. } | Command::Man => 0,
    }
}
