//! Arguments shared by the subcommands: `-c FILE` and positional words.

use std::path::PathBuf;

/// Parsed arguments of a subcommand.
#[derive(Debug)]
pub struct Args {
    /// `-c`/`--config`, default `anygate.yml`.
    pub config: PathBuf,
    /// The positional arguments, exactly as many as the command takes.
    pub positional: Vec<String>,
    /// `--host NAME` (`explain` only).
    pub host: Option<String>,
}

/// Parses `-c FILE`, `--config FILE`, `--config=FILE` and `positional` words.
pub fn parse(args: &[String], positional: usize) -> Result<Args, String> {
    let parsed = parse_with_host(args, positional)?;
    if parsed.host.is_some() {
        return Err("`--host` is an option of `explain` only".into());
    }
    Ok(parsed)
}

/// [`parse`], with `--host NAME` (or `--host=NAME`) allowed.
pub fn parse_with_host(args: &[String], positional: usize) -> Result<Args, String> {
    let mut config = None;
    let mut host = None;
    let mut words = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-c" || a == "--config" {
            let file = it.next().ok_or_else(|| format!("`{a}` needs a file"))?;
            config = Some(PathBuf::from(file));
        } else if let Some(file) = a.strip_prefix("--config=") {
            config = Some(PathBuf::from(file));
        } else if a == "--host" {
            host = Some(it.next().ok_or("`--host` needs a name")?.clone());
        } else if let Some(name) = a.strip_prefix("--host=") {
            host = Some(name.to_owned());
        } else if a.starts_with('-') && a.len() > 1 {
            return Err(format!("unknown option `{a}`"));
        } else {
            words.push(a.clone());
        }
    }
    if words.len() != positional {
        return Err(format!(
            "expected {positional} argument(s) after the options, found {}",
            words.len()
        ));
    }
    Ok(Args {
        config: config.unwrap_or_else(|| PathBuf::from("anygate.yml")),
        positional: words,
        host,
    })
}
