//! A small hand-written argument parser shared by the `sparsegrad` commands (no dependency):
//! `--flag`, `--key value`, `--key=value`, and positional words, with errors that name the
//! offending option.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A command-line error: printed with the command's usage line, exit status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parsed arguments of one command.
#[derive(Debug, Default)]
pub struct Args {
    values: BTreeMap<String, String>,
    flags: Vec<String>,
    pub positional: Vec<String>,
}

impl Args {
    /// Parses `words`; `flags` are the options that take no value, `options` those that take
    /// one. Anything else starting with `-` is an error naming it.
    pub fn parse(words: &[String], flags: &[&str], options: &[&str]) -> Result<Args, UsageError> {
        let mut a = Args::default();
        let mut it = words.iter();
        while let Some(w) = it.next() {
            if w == "--" {
                a.positional.extend(it.by_ref().cloned());
                break;
            }
            if let Some(name) = w.strip_prefix("--") {
                let (key, inline) = match name.split_once('=') {
                    Some((k, v)) => (k, Some(v.to_string())),
                    None => (name, None),
                };
                if flags.contains(&key) {
                    if inline.is_some() {
                        return Err(UsageError(format!("option --{key} takes no value")));
                    }
                    a.flags.push(key.to_string());
                } else if options.contains(&key) {
                    let v = match inline {
                        Some(v) => v,
                        None => {
                            it.next().cloned().ok_or_else(|| UsageError(format!("option --{key} needs a value")))?
                        }
                    };
                    a.values.insert(key.to_string(), v);
                } else {
                    return Err(UsageError(format!("unknown option --{key}")));
                }
            } else if w.starts_with('-') && w.len() > 1 && w != "-h" {
                return Err(UsageError(format!("unknown option {w}")));
            } else if w == "-h" {
                a.flags.push("help".to_string());
            } else {
                a.positional.push(w.clone());
            }
        }
        Ok(a)
    }

    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|s| s.as_str())
    }

    /// The value of `--name` parsed as `V`, or `default` when absent.
    pub fn get<V: FromStr>(&self, name: &str, default: V) -> Result<V, UsageError> {
        match self.values.get(name) {
            None => Ok(default),
            Some(s) => s.parse().map_err(|_| UsageError(format!("invalid value '{s}' for --{name}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_flags_options_and_positionals() {
        let a = Args::parse(&w("--json --op=relu extra --seed 3"), &["json"], &["op", "seed"]).unwrap();
        assert!(a.flag("json"));
        assert_eq!(a.value("op"), Some("relu"));
        assert_eq!(a.get("seed", 0u64).unwrap(), 3);
        assert_eq!(a.positional, vec!["extra"]);
    }

    #[test]
    fn errors_name_the_option() {
        assert_eq!(Args::parse(&w("--bogus"), &[], &[]).unwrap_err().0, "unknown option --bogus");
        assert_eq!(Args::parse(&w("--op"), &[], &["op"]).unwrap_err().0, "option --op needs a value");
        let a = Args::parse(&w("--seed x"), &[], &["seed"]).unwrap();
        assert_eq!(a.get("seed", 0u64).unwrap_err().0, "invalid value 'x' for --seed");
    }
}
