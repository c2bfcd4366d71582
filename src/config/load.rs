//! Finding and reading the config: the search order, reading the file, and reading the secret,
//! token and key files it names. This is the only part of `config` that touches the filesystem.

use std::path::{Path, PathBuf};

use super::raw::{Format, parse_lenient};
use super::validate::{Context, validate};
use super::{Config, Credential, Problem};
use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no config file found; looked at {}", .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound(Vec<PathBuf>),
    #[error("{}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl LoadError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            LoadError::Invalid(p) => p,
            LoadError::NotFound(_) => &[],
        }
    }
}

/// Where a config is looked for when neither `--config` nor `HOOKMIRROR_CONFIG` names one.
pub fn candidate_paths() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["/etc/hookmirror/config", "./hookmirror"] {
        for ext in ["yaml", "yml", "toml", "json"] {
            out.push(PathBuf::from(format!("{dir}.{ext}")));
        }
    }
    out
}

/// `explicit` (from `--config` or `HOOKMIRROR_CONFIG`), else the first candidate that exists.
pub fn find_config(explicit: Option<&Path>) -> Result<PathBuf, LoadError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let candidates = candidate_paths();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or(LoadError::NotFound(candidates))
}

/// Finds, reads, validates and resolves the config.
pub fn load(explicit: Option<&Path>) -> Result<Config, LoadError> {
    load_file(&find_config(explicit)?)
}

/// Reads, validates and resolves the config at `path`.
pub fn load_file(path: &Path) -> Result<Config, LoadError> {
    let problem = |m: String| {
        LoadError::Invalid(vec![Problem {
            file: Some(path.to_path_buf()),
            ..Problem::new(m)
        }])
    };
    let format = Format::from_path(path).ok_or_else(|| {
        problem("unknown extension: name the file .yaml, .yml, .toml or .json".into())
    })?;
    let text = std::fs::read_to_string(path).map_err(|e| problem(format!("cannot read: {e}")))?;
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let in_file = |mut ps: Vec<Problem>| {
        for p in &mut ps {
            p.file.get_or_insert_with(|| path.clone());
        }
        LoadError::Invalid(ps)
    };
    let (raw, mut problems) = parse_lenient(&text, format).map_err(in_file)?;
    let env = |name: &str| std::env::var(name).ok();
    let ctx = Context {
        file: Some(path.clone()),
        text: Some(&text),
        format,
        base_dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
        home: std::env::var_os("HOME").map(PathBuf::from),
        env: &env,
    };
    let mut config = match validate(raw, &ctx) {
        Ok(c) if problems.is_empty() => c,
        Ok(_) => return Err(in_file(problems)),
        Err(more) => {
            problems.extend(more);
            problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
            return Err(in_file(problems));
        }
    };
    resolve_files(&mut config).map_err(|mut ps| {
        // The `fleet` block's files are named with the line of their key, a repo's key files
        // with the line of their key in that repo.
        for p in &mut ps {
            let field = p.field.clone().unwrap_or_default();
            if let Some(key) = field.strip_prefix("fleet.") {
                p.line = super::validate::block_line(&text, format, "fleet", key, None);
            } else if field.starts_with("verify.") {
                let named = |r: &super::Repo| p.repo == Some(format!("`{}`", r.name));
                let index = config.repos.iter().position(named);
                let key = field.rsplit('.').next().unwrap_or(&field);
                p.line = super::lines::find_key_line(&text, format, key, index);
            }
        }
        in_file(ps)
    })?;
    Ok(config)
}

/// Reads every secret and token file the config names (trailing newline trimmed) and checks that
/// SSH keys, known_hosts and CA files that are named can be read. Called again on reload so a
/// rotated secret file takes effect.
pub fn resolve_files(config: &mut Config) -> Result<(), Vec<Problem>> {
    let mut problems = Vec::new();
    let file = config.source.clone();
    let mut read = |cred: &mut Credential, repo: Option<&str>, field: &str| {
        let Some(path) = &cred.file else { return };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let value = text.trim_end_matches(['\n', '\r']);
                if value.is_empty() {
                    problems.push(problem(
                        &file,
                        repo,
                        field,
                        format!("{} is empty", path.display()),
                    ));
                }
                cred.value = Secret::new(value);
            }
            Err(e) => problems.push(problem(
                &file,
                repo,
                field,
                format!("cannot read {}: {e}", path.display()),
            )),
        }
    };
    // An API token whose file is gone or unreadable is disabled, not a reason to refuse the
    // config: refusing a reload kept the old config, and with it the token, in force.
    let mut warnings = Vec::new();
    for t in &mut config.api.tokens {
        let Some(path) = t.file.clone() else { continue };
        let field = match t.name.as_str() {
            super::SINGLE_TOKEN_NAME => "api.token_file".to_string(),
            name => format!("api.tokens[{name}].token_file"),
        };
        match read_token(&path) {
            Ok(token) => {
                t.sha256 = super::token_sha256(&token);
                t.disabled = None;
                if let Some(why) = exposed(&path) {
                    warnings.push(problem(&file, None, &field, why));
                }
            }
            Err(why) => {
                t.sha256 = [0; 32];
                warnings.push(problem(
                    &file,
                    None,
                    &field,
                    format!("{why}; token `{}` is disabled until it can be read", t.name),
                ));
                t.disabled = Some(why);
            }
        }
    }
    let mut wrong_secrets = Vec::new();
    let mut notify_secrets =
        |targets: &mut [super::NotifyTarget],
         repo: Option<&str>,
         read: &mut dyn FnMut(&mut Credential, Option<&str>, &str)| {
            for (i, t) in targets.iter_mut().enumerate() {
                let field = format!("notify.{i}.secret_file");
                read(&mut t.secret, repo, &field);
                if let Some(path) = &t.secret.file
                    && !t.secret.value.is_empty()
                    && let Some(why) = super::notify_secret_problem(t.secret.value.expose())
                {
                    wrong_secrets.push(problem(
                        &file,
                        repo,
                        &field,
                        format!("{}: {why}", path.display()),
                    ));
                }
            }
        };
    notify_secrets(&mut config.notify, None, &mut read);
    for s in config.hooks.iter_mut().flat_map(|h| &mut h.secrets) {
        read(s, None, "hooks.secret_file");
    }
    if let Some(f) = &mut config.fleet {
        if let Some(c) = &mut f.credentials {
            read(c, None, "fleet.credentials_file");
        }
        if let Some(t) = &mut f.token {
            read(t, None, "fleet.token_file");
        }
    }
    let mut unreadable = same_token_twice(config);
    for repo in &mut config.repos {
        let name = repo.name.clone();
        for s in &mut repo.secrets {
            read(s, Some(&name), "secret_file");
        }
        if let Some(p) = &mut repo.auth.ssh_key_passphrase {
            read(p, Some(&name), "auth.ssh_key_passphrase_file");
        }
        if let Some(t) = &mut repo.auth.token {
            read(t, Some(&name), "auth.token_file");
        }
        notify_secrets(&mut repo.notify, Some(&name), &mut read);
        if let Some(path) = &repo.auth.ssh_key {
            match std::fs::read_to_string(path) {
                Ok(text) if !text.trim_start().starts_with("-----BEGIN") => {
                    unreadable.push(problem(
                        &file,
                        Some(&name),
                        "auth.ssh_key",
                        format!("{} is not a private key (a .pub file?)", path.display()),
                    ))
                }
                Ok(_) => {}
                Err(e) => unreadable.push(problem(
                    &file,
                    Some(&name),
                    "auth.ssh_key",
                    format!("cannot read {}: {e}", path.display()),
                )),
            }
        }
        if let Some(path) = &repo.auth.ca_file {
            let why = match std::fs::read_to_string(path) {
                Ok(text) if text.contains("-----BEGIN CERTIFICATE-----") => None,
                Ok(_) => Some(format!(
                    "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    path.display()
                )),
                Err(e) => Some(format!("cannot read {}: {e}", path.display())),
            };
            if let Some(why) = why {
                unreadable.push(problem(&file, Some(&name), "auth.ca_file", why));
            }
        }
        if let Some(why) = repo.auth.ssh_key.as_deref().and_then(exposed) {
            warnings.push(problem(&file, Some(&name), "auth.ssh_key", why));
        }
        unreadable.extend(key_file_problems(&file, repo));
        if let Some(path) = &repo.auth.known_hosts
            && let Err(e) = std::fs::File::open(path)
        {
            unreadable.push(problem(
                &file,
                Some(&name),
                "auth.known_hosts",
                format!("cannot read {}: {e}", path.display()),
            ));
        }
    }
    problems.extend(wrong_secrets);
    problems.extend(unreadable);
    config.warnings.extend(warnings);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// An API token from its file (trailing newline trimmed), or why there is none.
fn read_token(path: &Path) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim_end_matches(['\n', '\r']);
            if token.is_empty() {
                Err(format!("{} is empty", path.display()))
            } else {
                Ok(token.to_string())
            }
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Why a file holding a credential is exposed: other users may read or replace it (as ssh
/// refuses such a key). Group access is left alone: `root:hookmirror 0640` is a common setup.
fn exposed(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o006 != 0).then(|| {
        format!(
            "{} can be read or written by other users (mode {:04o}): chmod o-rwx {}",
            path.display(),
            mode & 0o7777,
            path.display()
        )
    })
}

/// The `verify` key files of `repo` that cannot be read or do not parse.
fn key_file_problems(file: &Option<PathBuf>, repo: &super::Repo) -> Vec<Problem> {
    let v = &repo.deploy.verify;
    let ssh = v.ssh_allowed_signers.iter().map(|p| (true, p));
    let mut out = Vec::new();
    for (is_ssh, path) in ssh.chain(v.gpg_keys.iter().map(|p| (false, p))) {
        let parsed = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|text| {
                let checked = match is_ssh {
                    true => crate::signers::parse_allowed_signers(&text).map(|_| ()),
                    false => crate::signers::parse_gpg_keys(&text).map(|_| ()),
                };
                checked.map_err(|e| format!("{}: {e}", path.display()))
            });
        if let Err(why) = parsed {
            let field = match is_ssh {
                true => "verify.ssh_allowed_signers",
                false => "verify.gpg_keys",
            };
            out.push(problem(file, Some(&repo.name), field, why));
        }
    }
    out
}

fn problem(file: &Option<PathBuf>, repo: Option<&str>, field: &str, message: String) -> Problem {
    Problem {
        file: file.clone(),
        line: None,
        repo: repo.map(|r| format!("`{r}`")),
        field: Some(field.to_string()),
        message,
    }
}

/// A token read from a file that is also another token's: which one called could not be told.
fn same_token_twice(config: &Config) -> Vec<Problem> {
    let tokens = &config.api.tokens;
    let mut out = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if t.file.is_none() || t.disabled.is_some() {
            continue;
        }
        if let Some(other) = tokens[..i]
            .iter()
            .chain(&tokens[i + 1..])
            .find(|o| o.sha256 == t.sha256)
        {
            out.push(problem(
                &config.source,
                None,
                &format!("api.tokens[{}].token_file", t.name),
                format!(
                    "holds the same token as `{}`: give each caller a token of its own",
                    other.name
                ),
            ));
        }
    }
    out
}
