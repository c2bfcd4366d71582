//! The `hookmirror` binary: parse the command line, set up logging, run, map errors to exit codes.

use clap::Parser;

use hookmirror::cli::{Cli, Command};
use hookmirror::{commands, config, logging};

fn main() {
    let cli = Cli::parse();
    // These need no config.
    match &cli.command {
        Command::Completions { shell } => {
            hookmirror::cli::completions(*shell, &mut std::io::stdout());
            std::process::exit(0);
        }
        Command::Man => {
            let code = match hookmirror::cli::man(&mut std::io::stdout()) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("hookmirror: {e}");
                    1
                }
            };
            std::process::exit(code);
        }
        _ => {}
    }
    hookmirror::sync::init_libgit2();
    let config = match config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            commands::print_load_error(&e, &mut std::io::stderr());
            std::process::exit(commands::EXIT_CONFIG);
        }
    };
    let code = match cli.command {
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
        Command::Status => {
            hookmirror::client::status(&config, &mut std::io::stdout(), &mut std::io::stderr())
        }
        Command::Completions { .. } | Command::Man => 0,
        Command::Serve => {
            if let Err(e) = logging::init(&config.log, cli.log_level.as_deref()) {
                eprintln!("hookmirror: {e}");
                std::process::exit(commands::EXIT_CONFIG);
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
    };
    std::process::exit(code);
}
