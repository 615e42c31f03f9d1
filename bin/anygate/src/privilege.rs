//! Running as root only as long as it takes to bind: `server.user` / `server.group`.
//!
//! Started as root, `serve` resolves the user and group before binding (an unknown name is
//! a configuration error at its line and column), binds every listener (ports below 1024
//! need root), then drops for good: supplementary groups, group, user, in that order, each
//! checked, and root checked to be out of reach. Only then is the configuration compiled,
//! so that the static roots are checked as the user who will serve them: one the user
//! cannot read is refused at start with the route's position, not answered with 403s later.
//!
//! Without `server.user`, `anygate serve` refuses to start as root unless
//! `server.allow_root: true` (`ANYGATE__SERVER__ALLOW_ROOT=true`). Started as another user,
//! `server.user` cannot be honoured and is ignored with a warning (nginx does the same).
//! The policy is the command line's: [`crate::serve::Server::start`] drops privileges when
//! asked but never refuses root, so that a program embedding the server decides.
//!
//! After the drop, reloads read the configuration and the files it names as the user: they
//! must be readable by it (certificates included; nginx's master process, which stays
//! root, does not have this constraint).

use anygate_config::{Config, Diagnostic, Failure, codes, source::Severity};
use anygate_runtime::process;

/// Who to become after binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drop {
    /// The user, as written.
    pub name: String,
    /// Its user id.
    pub uid: u32,
    /// The group id (`server.group`, else the user's primary group).
    pub gid: u32,
}

fn unplaced(code: &'static str, message: String, help: &str) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        code,
        message,
        span: None,
        notes: Vec::new(),
        help: Some(help.into()),
    }
}

fn failure(config: &mut Config, diagnostic: Diagnostic) -> Failure {
    Failure {
        sources: std::mem::take(&mut config.sources),
        diagnostics: vec![diagnostic],
    }
}

/// Resolves `server.user`/`server.group` when running as root (`euid` 0): `None` when
/// there is nothing to drop to. Started as another user, a set `server.user` comes back as
/// a warning to print.
pub fn plan(config: &mut Config, euid: u32) -> Result<(Option<Drop>, Option<String>), Failure> {
    let Some((name, span)) = config.server.user.clone() else {
        if let Some(&(_, gspan)) = config.server.group.as_ref()
            && euid == 0
        {
            let d = Diagnostic::error(codes::VALUE, gspan, "`server.group` needs `server.user`");
            return Err(failure(config, d));
        }
        return Ok((None, None));
    };
    if euid != 0 {
        return Ok((
            None,
            Some(format!(
                "server.user `{name}` is ignored: not started as root (running as uid {euid})"
            )),
        ));
    }
    let help = "create it (`useradd --system anygate`) or name an existing one, or a numeric id";
    let user = match found(process::user(&name), ("user", &name), span, Some(help)) {
        Ok(u) => u,
        Err(d) => return Err(failure(config, d)),
    };
    let gid = match config.server.group.clone() {
        None => user.gid,
        Some((group, gspan)) => match found(process::group(&group), ("group", &group), gspan, None)
        {
            Ok(g) => g,
            Err(d) => return Err(failure(config, d)),
        },
    };
    if user.uid == 0 && !config.server.allow_root {
        let d = Diagnostic::error(codes::VALUE, span, format!("user `{name}` is root"))
            .help("name an unprivileged user, or set `server.allow_root: true` to run as root");
        return Err(failure(config, d));
    }
    Ok((
        Some(Drop {
            name,
            uid: user.uid,
            gid,
        }),
        None,
    ))
}

/// A user or group lookup's answer, or the error at `span` (with `missing_help` when there
/// is no such `what`).
fn found<T>(
    lookup: std::io::Result<Option<T>>,
    (what, name): (&str, &str),
    span: anygate_config::source::Span,
    missing_help: Option<&str>,
) -> Result<T, Diagnostic> {
    match lookup {
        Ok(Some(v)) => Ok(v),
        Ok(None) => {
            let d = Diagnostic::error(
                codes::VALUE,
                span,
                format!("no {what} `{name}` on this system"),
            );
            Err(match missing_help {
                Some(h) => d.help(h),
                None => d,
            })
        }
        Err(e) => Err(Diagnostic::error(
            codes::VALUE,
            span,
            format!("cannot look up {what} `{name}`: {e}"),
        )),
    }
}

/// The command line's rule: refuses to serve as root without `server.user`, unless
/// `server.allow_root`.
pub fn refuse_root(config: &mut Config, euid: u32) -> Result<(), Failure> {
    if euid != 0 || config.server.user.is_some() || config.server.allow_root {
        return Ok(());
    }
    let d = unplaced(
        codes::VALUE,
        "not serving as root: set `server.user` to drop to an unprivileged user after binding"
            .into(),
        "or set `server.allow_root: true` (`ANYGATE__SERVER__ALLOW_ROOT=true`) to run as root anyway",
    );
    Err(failure(config, d))
}

/// Becomes `drop`'s user for good (every thread of the process).
pub fn apply(drop: &Drop) -> std::io::Result<()> {
    process::drop_privileges(drop.uid, drop.gid).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot drop to user `{}` (uid {}, gid {}): {e}",
                drop.name, drop.uid, drop.gid
            ),
        )
    })
}

/// Checks, as the user the process now runs as, that every static root is readable.
pub fn check_static_roots(config: &mut Config) -> Result<(), Failure> {
    let mut diagnostics = Vec::new();
    for r in &config.routes {
        if let Some(root) = &r.static_root
            && let Err(problem) = anygate_config::model::static_root_readable(root)
        {
            diagnostics.push(
                Diagnostic::error(
                    codes::STATIC_DIR,
                    r.value,
                    format!("static directory `{}` {problem}", root.display()),
                )
                .help(
                    "let the user of `server.user` read it (and search the directories above it)",
                ),
            );
        }
    }
    if diagnostics.is_empty() {
        return Ok(());
    }
    Err(Failure {
        sources: std::mem::take(&mut config.sources),
        diagnostics,
    })
}
