//! Command-line definitions (clap). What the commands do lives in [`crate::commands`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Keeps local git checkouts in step with GitHub, GitLab, Gitea/Forgejo and Bitbucket.
///
/// A forge sends a push webhook; hookmirror verifies it and brings the checkout to the new commit
/// (clone if missing, fetch the tracked ref, reset --hard). Schedules and an authenticated API
/// trigger the same path.
#[derive(Debug, Parser)]
#[command(name = "hookmirror", version, about, long_about = None, after_help = AFTER_HELP)]
pub struct Cli {
    /// Config file (.yaml, .yml, .toml or .json). Default: the first of
    /// /etc/hookmirror/config.{yaml,yml,toml,json} and ./hookmirror.{yaml,yml,toml,json}.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "HOOKMIRROR_CONFIG",
        value_name = "PATH"
    )]
    pub config: Option<PathBuf>,

    /// Log level (error, warn, info, debug, trace), overriding the config's `log.level`.
    /// RUST_LOG-style directives work too, e.g. `hookmirror=debug`.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config; print one line per repository, or every problem found (exit 2).
    Check,
    /// Sync the named repositories (default: all) once, without a server, and print one line per
    /// repository. Exits 1 if any failed: usable from cron or CI.
    Sync {
        /// Repository names (see `hookmirror check`).
        names: Vec<String>,
    },
    /// Run the daemon: receive webhooks on `listen`, serve the API, run schedules. Reloads the
    /// config when it changes or on SIGHUP; stops gracefully on SIGTERM or SIGINT.
    Serve,
    /// API tokens: `token new` makes one.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Ask the running daemon (at the config's `listen`) how each repository is doing, and print
    /// a table. Exits 1 if a repository's last sync failed or the daemon cannot be asked.
    Status {
        /// An API token with the `read` scope, when reads are protected. Default: the
        /// `token_file` of the first configured token that may read.
        #[arg(long, env = "HOOKMIRROR_API_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Print a shell completion script (e.g. `hookmirror completions bash >
    /// /etc/bash_completion.d/hookmirror`).
    Completions {
        /// bash, elvish, fish, powershell or zsh.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `hookmirror man > hookmirror.1; man -l hookmirror.1`.
    Man,
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Print a fresh random token (once: only its SHA-256 goes into the config) and the block to
    /// paste under `api: tokens:`. Needs no config.
    New {
        /// Shown in logs and refusals, never the secret (letters, digits, `-`, `_`, `.`).
        #[arg(long)]
        name: String,
        /// read, sync or admin; repeat for more.
        #[arg(long = "scope", value_name = "SCOPE", required = true)]
        scopes: Vec<String>,
        /// A repository name or glob (`docs-*`) the token is limited to; repeat for more.
        /// Default: every repository.
        #[arg(long = "repo", value_name = "NAME|GLOB")]
        repos: Vec<String>,
        /// The date (2027-06-30, from 00:00 UTC) or moment (RFC 3339) the token stops working.
        #[arg(long, value_name = "DATE")]
        expires: Option<String>,
    },
}

const AFTER_HELP: &str = "\
Examples:
  hookmirror check --config /etc/hookmirror/config.yaml
  hookmirror sync                 # sync every repository once
  hookmirror sync site docs       # sync two repositories
  hookmirror serve                # run the daemon
  hookmirror token new --name ci-docs --scope sync --repo docs   # a scoped API token
  hookmirror status               # ask the running daemon how each repository is doing

Exit codes: 0 success, 1 a sync failed, 2 invalid config or usage.";

/// Writes the completion script for `shell` to `out`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    use clap::CommandFactory;
    clap_complete::generate(shell, &mut Cli::command(), "hookmirror", out);
}

/// Writes the man page (roff) made from the same definitions to `out`.
pub fn man(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    use clap::CommandFactory;
    clap_mangen::Man::new(Cli::command()).render(out)
}
