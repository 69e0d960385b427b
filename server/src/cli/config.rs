//! `cairn serve --config FILE`: every `serve` flag can come from a TOML file (`max-in-flight = 512`,
//! `witness = ["…", "…"]`, `tls = true`). The file's settings are placed before the command line's, and the command
//! line wins for single-valued flags (repeatable ones add up). `--print-config` prints the effective settings.

use std::ffi::OsString;
use std::path::Path;

use clap::CommandFactory;

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("config file {path} is not valid TOML: {reason}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message.
        reason: String,
    },
    /// A key is not a `serve` flag, or its value has the wrong shape.
    #[error("config file {path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// Flags of `serve` that make no sense in a config file.
const NOT_IN_FILE: &[&str] = &["config", "print-config", "help"];

fn serve_command() -> clap::Command {
    let mut cli = super::Cli::command();
    cli.build();
    cli.find_subcommand("serve")
        .cloned()
        .unwrap_or_else(|| clap::Command::new("serve"))
}

/// The `--config FILE` of a `cairn serve` command line, if any.
fn config_path(argv: &[OsString]) -> Option<(usize, OsString)> {
    let serve = argv.iter().position(|a| a == "serve")?;
    let mut i = serve + 1;
    while i < argv.len() {
        let a = argv[i].to_string_lossy();
        if a == "--config" {
            return argv.get(i + 1).map(|p| (serve, p.clone()));
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some((serve, OsString::from(p)));
        }
        i += 1;
    }
    None
}

/// Turns a config file into `serve` arguments.
pub fn file_args(path: &Path) -> Result<Vec<OsString>, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: shown.clone(),
            reason: e.message().to_owned(),
        })?;
    let cmd = serve_command();
    let bad = |reason: String| ConfigError::Key {
        path: shown.clone(),
        reason,
    };
    let known: Vec<&clap::Arg> = cmd
        .get_arguments()
        .filter(|a| a.get_long().is_some_and(|l| !NOT_IN_FILE.contains(&l)))
        .collect();
    let mut out = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let Some(arg) = known.iter().find(|a| a.get_long() == Some(long.as_str())) else {
            let mut names: Vec<&str> = known.iter().filter_map(|a| a.get_long()).collect();
            names.sort_unstable();
            return Err(bad(format!(
                "unknown setting {key:?}; the settings are the flags of `cairn serve`: {}",
                names.join(", ")
            )));
        };
        let flag = format!("--{long}");
        let is_switch = matches!(arg.get_action(), clap::ArgAction::SetTrue);
        let scalar = |v: &toml::Value| -> Result<String, ConfigError> {
            match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(i) => Ok(i.to_string()),
                toml::Value::Float(f) => Ok(f.to_string()),
                toml::Value::Boolean(b) => Ok(b.to_string()),
                _ => Err(bad(format!("{key}: expected a string, number or boolean"))),
            }
        };
        match value {
            toml::Value::Boolean(b) if is_switch => {
                if *b {
                    out.push(OsString::from(&flag));
                }
            }
            _ if is_switch => return Err(bad(format!("{key}: expected true or false"))),
            toml::Value::Array(items) => {
                if !matches!(arg.get_action(), clap::ArgAction::Append) {
                    return Err(bad(format!("{key}: takes one value, not a list")));
                }
                for v in items {
                    out.push(OsString::from(&flag));
                    out.push(OsString::from(scalar(v)?));
                }
            }
            v => {
                out.push(OsString::from(&flag));
                out.push(OsString::from(scalar(v)?));
            }
        }
    }
    Ok(out)
}

/// The command line with a `serve --config FILE`'s settings inserted right after `serve` (so later, command-line
/// flags win). Unchanged when there is no `--config`.
pub fn expand(argv: Vec<OsString>) -> Result<Vec<OsString>, ConfigError> {
    let Some((serve, path)) = config_path(&argv) else {
        return Ok(argv);
    };
    let extra = file_args(Path::new(&path))?;
    let mut out = Vec::with_capacity(argv.len() + extra.len());
    out.extend_from_slice(&argv[..=serve]);
    out.extend(extra);
    out.extend_from_slice(&argv[serve + 1..]);
    Ok(out)
}

fn toml_value(arg: &clap::Arg, raw: &[String]) -> String {
    let one = |s: &str| {
        if s.parse::<i64>().is_ok() || s == "true" || s == "false" {
            s.to_owned()
        } else {
            toml::Value::String(s.to_owned()).to_string()
        }
    };
    if matches!(arg.get_action(), clap::ArgAction::Append) {
        format!(
            "[{}]",
            raw.iter().map(|s| one(s)).collect::<Vec<_>>().join(", ")
        )
    } else {
        raw.first().map(|s| one(s)).unwrap_or_else(|| "\"\"".into())
    }
}

/// The effective `serve` settings as TOML (what `--print-config` shows): every flag, from the command line,
/// the environment, the config file or its default. Unset optional settings are shown commented out.
pub fn print(m: &clap::ArgMatches) -> String {
    let cmd = serve_command();
    let mut out = String::from("# cairn serve: effective configuration\n");
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if NOT_IN_FILE.contains(&long) {
            continue;
        }
        let id = arg.get_id().as_str();
        let raw: Vec<String> = m
            .get_raw(id)
            .map(|vs| vs.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        if raw.is_empty() {
            out.push_str(&format!("# {long} =\n"));
        } else {
            out.push_str(&format!("{long} = {}\n", toml_value(arg, &raw)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn file_settings_go_before_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("cairn.toml");
        std::fs::write(
            &f,
            "max_in_flight = 512\nlisten = \"127.0.0.1:7999\"\ntls = true\nno-auth = false\nwitness = [\"aa\", \"bb\"]\n",
        )
        .unwrap();
        let argv = os(&[
            "cairn",
            "serve",
            "--config",
            f.to_str().unwrap(),
            "--listen",
            "127.0.0.1:1",
        ]);
        let got: Vec<String> = expand(argv)
            .unwrap()
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        let at = |s: &str| got.iter().position(|g| g == s).unwrap();
        assert!(at("--max-in-flight") < at("--config"));
        assert!(got.contains(&"--tls".to_owned()));
        assert!(!got.contains(&"--no-auth".to_owned()));
        assert_eq!(got.iter().filter(|g| *g == "--witness").count(), 2);
        // The command line's --listen comes last, so it wins.
        let listens: Vec<usize> = got
            .iter()
            .enumerate()
            .filter(|(_, g)| *g == "--listen")
            .map(|(i, _)| i)
            .collect();
        assert_eq!(got[listens[1] + 1], "127.0.0.1:1");
    }

    #[test]
    fn unknown_and_misshapen_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        for (text, needle) in [
            ("max_in_fligth = 3", "unknown setting"),
            ("tls = \"yes\"", "true or false"),
            ("listen = [\"a\", \"b\"]", "one value"),
            ("listen = { a = 1 }", "expected a string"),
            ("= broken", "not valid TOML"),
        ] {
            std::fs::write(&f, text).unwrap();
            let e = file_args(&f).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
        assert!(file_args(&dir.path().join("missing.toml")).is_err());
    }
}
