//! The stable codes of configuration diagnostics (`docs/CONFIG.md` lists them with examples).

/// The file cannot be read, or its extension names no known format.
pub const IO: &str = "AG-CFG-1000";
/// Syntax error in YAML, JSON or TOML.
pub const SYNTAX: &str = "AG-CFG-1001";
/// A key the model does not have.
pub const UNKNOWN_KEY: &str = "AG-CFG-1002";
/// The same key twice in one map.
pub const DUPLICATE_KEY: &str = "AG-CFG-1003";
/// A value of the wrong type (a list where a string was expected, …).
pub const TYPE: &str = "AG-CFG-1004";
/// A value of the right type that is not valid (a bad address, a bad duration, …).
pub const VALUE: &str = "AG-CFG-1005";
/// Nothing to serve: no route anywhere.
pub const NO_ROUTES: &str = "AG-CFG-1006";
/// A section of the SPEC that this build does not implement yet.
pub const NOT_YET: &str = "AG-CFG-1007";
/// An `ANYGATE__…` variable that cannot be applied.
pub const ENV: &str = "AG-CFG-1008";
/// A route HEAD (the key) that does not parse.
pub const ROUTE_HEAD: &str = "AG-CFG-1101";
/// A route ACTION (the value) that does not parse.
pub const ROUTE_ACTION: &str = "AG-CFG-1102";
/// Two rules with the same methods and the same path shape.
pub const ROUTE_CONFLICT: &str = "AG-CFG-1103";
/// A static directory that does not exist.
pub const STATIC_DIR: &str = "AG-CFG-1104";
/// A group `prefix` that is not a plain path.
pub const GROUP_PREFIX: &str = "AG-CFG-1105";
/// A group `host` that is not a host name or wildcard, or a host given twice on a path.
pub const GROUP_HOST: &str = "AG-CFG-1108";
/// Warning: a rule that can never match.
pub const SHADOWED: &str = "AG-CFG-1201";
/// Warning: two rules share some methods and a path shape; declaration order decides.
pub const OVERLAP: &str = "AG-CFG-1202";
/// A `plugins` entry names a kind this build does not have.
pub const PLUGIN_KIND: &str = "AG-CFG-1106";
/// A plugin's `args` are not valid for its kind.
pub const PLUGIN_ARGS: &str = "AG-CFG-1107";
