//! JWT bearer tokens for the `auth` filter (RFC 7519, signatures RFC 7515), verified with
//! `jsonwebtoken` on aws-lc-rs, the provider TLS uses.
//!
//! ```yaml
//! jwt:
//!   keys:
//!     - { kid: main, alg: ES256, file: jwt-es256.pem }   # a public key (PEM)
//!     - { alg: HS256, secret_file: jwt.secret }           # or `secret: "..."`
//!   jwks_file: jwks.json          # public keys as a JWK set, reloaded when the file changes
//!   issuer: https://id.example.com   # one or a list
//!   audience: api                    # one or a list
//!   leeway: 30s
//!   claims: { sub: X-User-Id, email: X-User-Email }   # claim → request field sent on
//!   roles: [admin]                   # any one of them is enough; read from `roles_claim`
//!   roles_claim: roles               # a list, or a space-separated string (`scope`)
//! ```
//!
//! # Algorithm pinning
//!
//! Every key carries exactly one algorithm: a configured key its `alg`, a JWK its `alg` or,
//! without one, the algorithm its key type implies (EC P-256 → ES256, P-384 → ES384, RSA →
//! RS256, OKP Ed25519 → EdDSA; an `oct` JWK must say its `alg`). A token is checked only
//! against keys whose algorithm is the one its header names (and whose `kid` matches, when
//! it has one): an RSA public key can never be used as an HMAC secret (the `alg` confusion
//! attack), and `alg: none` matches no key.
//!
//! # Validation
//!
//! Signature, then `exp` (required) and `nbf` with `leeway`, then `iss` and `aud` when
//! configured. Any failure is a 401 with `error="invalid_token"`; valid claims without one
//! of `roles` are a 403 (`AG-SEC-6006`, `error="insufficient_scope"`). The request fields
//! named in `claims` are always removed from what the client sent, then set from the
//! token: a client cannot pose as a user by sending `X-User-Id` itself.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use anygate_config::args::Args;
use anygate_config::node::Node;
use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// One verification key, pinned to one algorithm.
struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
    /// The validation rules for this key's algorithm.
    validation: Validation,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// What every key's validation checks besides the signature.
#[derive(Clone, Debug, Default)]
struct Rules {
    issuer: Vec<String>,
    audience: Vec<String>,
    leeway: u64,
}

impl Rules {
    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.algorithms = vec![alg];
        v.leeway = self.leeway;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp"]);
        if self.audience.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.audience);
        }
        if !self.issuer.is_empty() {
            v.set_issuer(&self.issuer);
        }
        v
    }
}

/// The JWK set of a file, reloaded when the file changes.
#[derive(Debug)]
struct Jwks {
    path: PathBuf,
    keys: ArcSwap<Vec<Key>>,
    rules: Rules,
}

/// The outcome of checking a token.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Valid, with these claims.
    Valid(serde_json::Value),
    /// Not a valid token for any key.
    Invalid,
}

/// The `jwt` part of an `auth` filter.
#[derive(Debug)]
pub(crate) struct Jwt {
    keys: Vec<Key>,
    jwks: Option<Arc<Jwks>>,
    /// Claim → lowercase request field.
    pub(crate) claims: Vec<(String, Box<[u8]>)>,
    pub(crate) roles: Vec<String>,
    pub(crate) roles_claim: String,
}

impl Jwt {
    pub(crate) fn build(args: &mut Args<'_>, base: &Path) -> Option<Self> {
        let mut a = args.map("jwt")?;
        let rules = Rules {
            issuer: a
                .strings("issuer")
                .iter()
                .map(|(s, _)| (*s).to_owned())
                .collect(),
            audience: a
                .strings("audience")
                .iter()
                .map(|(s, _)| (*s).to_owned())
                .collect(),
            leeway: a.duration("leeway").map_or(30, |d| d.as_secs()),
        };
        let mut keys = Vec::new();
        if let Some(list) = a.take("keys") {
            match &list.kind {
                anygate_config::Kind::Seq(items) => {
                    for item in items {
                        if let Some(k) = configured_key(&mut a, item, base, &rules) {
                            keys.push(k);
                        }
                    }
                }
                _ => a.error(
                    list.span,
                    "`keys` must be a list of `{ alg, file | secret }`",
                ),
            }
        }
        let jwks = a.string("jwks_file").and_then(|(file, node)| {
            let path = base.join(file);
            match load_jwks(&path, &rules) {
                Ok(k) => Some(Arc::new(Jwks {
                    path,
                    keys: ArcSwap::from_pointee(k),
                    rules: rules.clone(),
                })),
                Err(e) => {
                    a.error(node.span, e);
                    None
                }
            }
        });
        let mut claims = Vec::new();
        for (claim, _, field, node) in a.string_map("claims") {
            if anygate_http::message::is_token(field.as_bytes()) && !field.is_empty() {
                claims.push((
                    claim.to_owned(),
                    field.to_ascii_lowercase().into_bytes().into(),
                ));
            } else {
                a.error(node.span, format!("`{field}` is not a field name"));
            }
        }
        let roles = a
            .strings("roles")
            .iter()
            .map(|(s, _)| (*s).to_owned())
            .collect();
        let roles_claim = a
            .string("roles_claim")
            .map_or_else(|| "roles".to_owned(), |(s, _)| s.to_owned());
        if keys.is_empty() && jwks.is_none() && !a.failed() {
            let span = a.span();
            a.error_help(
                span,
                "`jwt` needs verification keys",
                "give `keys: [{ alg: ES256, file: key.pem }]` or `jwks_file`",
            );
        }
        let failed = a.failed();
        args.absorb(
            a,
            &[
                "keys",
                "jwks_file",
                "issuer",
                "audience",
                "leeway",
                "claims",
                "roles",
                "roles_claim",
            ],
        );
        if failed {
            return None;
        }
        if let Some(j) = &jwks {
            watch(Arc::downgrade(j));
        }
        Some(Self {
            keys,
            jwks,
            claims,
            roles,
            roles_claim,
        })
    }

    /// Checks `token`.
    pub(crate) fn verify(&self, token: &[u8]) -> Verdict {
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return Verdict::Invalid;
        };
        let from_file = self.jwks.as_ref().map(|j| j.keys.load());
        let file_keys = from_file.as_deref().map_or(&[][..], |k| k.as_slice());
        let candidates = self.keys.iter().chain(file_keys).filter(|k| {
            k.alg == header.alg
                && match (&header.kid, &k.kid) {
                    (Some(want), Some(have)) => want == have,
                    (Some(_), None) | (None, _) => true,
                }
        });
        for k in candidates {
            if let Ok(data) =
                jsonwebtoken::decode::<serde_json::Value>(token, &k.key, &k.validation)
            {
                return Verdict::Valid(data.claims);
            }
        }
        Verdict::Invalid
    }

    /// Whether `claims` grant one of the required roles (always, when none is required).
    pub(crate) fn has_role(&self, claims: &serde_json::Value) -> bool {
        if self.roles.is_empty() {
            return true;
        }
        let granted: Vec<&str> = match claims.get(&self.roles_claim) {
            Some(serde_json::Value::Array(items)) => {
                items.iter().filter_map(serde_json::Value::as_str).collect()
            }
            Some(serde_json::Value::String(s)) => s.split_ascii_whitespace().collect(),
            _ => Vec::new(),
        };
        self.roles.iter().any(|r| granted.contains(&r.as_str()))
    }

    pub(crate) fn summary(&self) -> String {
        let n = self.keys.len() + self.jwks.as_ref().map_or(0, |j| j.keys.load().len());
        let mut s = format!("jwt ({n} key(s)");
        if !self.roles.is_empty() {
            s.push_str(&format!(", roles {}", self.roles.join("|")));
        }
        s.push(')');
        s
    }
}

/// The value of a claim as a field value: strings as they are, numbers and booleans
/// written, lists joined with `,`; `None` for anything else or a value a field cannot hold.
pub(crate) fn claim_value(v: &serde_json::Value) -> Option<String> {
    let s = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Array(items) => {
            let parts: Option<Vec<String>> = items
                .iter()
                .map(|i| match i {
                    serde_json::Value::Array(_) | serde_json::Value::Object(_) => None,
                    other => claim_value(other),
                })
                .collect();
            parts?.join(",")
        }
        _ => return None,
    };
    anygate_http::message::is_field_value(s.as_bytes()).then_some(s)
}

fn parse_alg(text: &str) -> Option<Algorithm> {
    use std::str::FromStr;
    Algorithm::from_str(text).ok()
}

/// One entry of `keys`.
fn configured_key(a: &mut Args<'_>, item: &Node, base: &Path, rules: &Rules) -> Option<Key> {
    let mut k = Args::new(Some(item), item.span, "a `jwt` key");
    let kid = k.string("kid").map(|(s, _)| s.to_owned());
    let alg = match k.string("alg") {
        Some((text, node)) => match parse_alg(text) {
            Some(alg) => Some(alg),
            None => {
                k.error_help(
                    node.span,
                    format!("unknown algorithm `{text}`"),
                    "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA",
                );
                None
            }
        },
        None => {
            k.error(
                item.span,
                "a key needs its `alg` (algorithms are pinned per key)",
            );
            None
        }
    };
    let file = k.string("file");
    let secret = k.string("secret").map(|(s, n)| (s.as_bytes().to_vec(), n));
    let secret_file = k.string("secret_file");
    let key = match (alg, file, secret, secret_file) {
        (Some(alg), Some((f, node)), None, None) => {
            let path = base.join(f);
            match std::fs::read(&path) {
                Ok(pem) => match public_key(alg, &pem) {
                    Ok(key) => Some((alg, key)),
                    Err(e) => {
                        k.error(node.span, format!("`{}`: {e}", path.display()));
                        None
                    }
                },
                Err(e) => {
                    k.error(node.span, format!("cannot read `{}`: {e}", path.display()));
                    None
                }
            }
        }
        (Some(alg), None, secret, secret_file) if is_hmac(alg) => {
            let bytes = match (secret, secret_file) {
                (Some((s, _)), None) => Some(s),
                (None, Some((f, node))) => {
                    let path = base.join(f);
                    match std::fs::read(&path) {
                        Ok(mut b) => {
                            while b.last().is_some_and(u8::is_ascii_whitespace) {
                                b.pop();
                            }
                            Some(b)
                        }
                        Err(e) => {
                            k.error(node.span, format!("cannot read `{}`: {e}", path.display()));
                            None
                        }
                    }
                }
                _ => {
                    k.error(
                        item.span,
                        "an HMAC key needs one of `secret`, `secret_file`",
                    );
                    None
                }
            };
            match bytes {
                Some(b) if b.len() >= 32 => DecodingKey::from_secret(&b).ok().map(|key| (alg, key)),
                Some(_) => {
                    k.error(item.span, "an HMAC secret needs at least 32 bytes");
                    None
                }
                None => None,
            }
        }
        (Some(_), _, _, _) => {
            k.error_help(
                item.span,
                "a key is `file` (a public key, for RS/PS/ES/EdDSA) or `secret`/`secret_file` (HS)",
                "HMAC algorithms take a secret, the others a public key file",
            );
            None
        }
        (None, ..) => None,
    };
    a.absorb(k, &["kid", "alg", "file", "secret", "secret_file"]);
    key.map(|(alg, key)| Key {
        kid,
        alg,
        key,
        validation: rules.validation(alg),
    })
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn public_key(alg: Algorithm, pem: &[u8]) -> Result<DecodingKey, String> {
    let key = match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => DecodingKey::from_rsa_pem(pem),
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
        _ => return Err("an HMAC algorithm takes `secret`, not a key file".to_owned()),
    };
    key.map_err(|e| format!("not a public key for {alg:?}: {e}"))
}

/// The algorithm a JWK is pinned to.
fn jwk_alg(jwk: &Jwk) -> Option<Algorithm> {
    if let Some(a) = jwk.common.key_algorithm {
        return parse_alg(&format!("{a:?}"));
    }
    match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::OctetKeyPair(_) => Some(Algorithm::EdDSA),
        _ => None,
    }
}

fn load_jwks(path: &Path, rules: &Rules) -> Result<Vec<Key>, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let set: JwkSet = serde_json::from_slice(&text)
        .map_err(|e| format!("`{}` is not a JWK set: {e}", path.display()))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        // A key without a pinned algorithm, or one that does not load, is left out.
        let (Some(alg), Ok(key)) = (jwk_alg(jwk), DecodingKey::from_jwk(jwk)) else {
            continue;
        };
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
            validation: rules.validation(alg),
        });
    }
    if keys.is_empty() {
        return Err(format!("`{}` holds no usable key", path.display()));
    }
    Ok(keys)
}

/// How often a JWK set file is looked at.
const POLL: Duration = Duration::from_millis(250);

/// Reloads the JWK set when its file changes, on a side thread, until the filter is gone.
/// A file that no longer parses keeps the keys already loaded.
fn watch(jwks: Weak<Jwks>) {
    let stamp = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
    };
    let Some(path) = jwks.upgrade().map(|j| j.path.clone()) else {
        return;
    };
    let mut seen = stamp(&path);
    let _ = anygate_runtime::signal::spawn_side_thread("anygate-jwks", move || {
        loop {
            std::thread::sleep(POLL);
            let Some(j) = jwks.upgrade() else { return };
            let now = stamp(&j.path);
            if now != seen {
                seen = now;
                match load_jwks(&j.path, &j.rules) {
                    Ok(keys) => j.keys.store(Arc::new(keys)),
                    // Half written, say: the write that completes it changes the stamp again.
                    Err(e) => anygate_obs::log::server(
                        anygate_obs::log::Level::Warn,
                        &format!("jwks: {e}; keeping the keys loaded"),
                    ),
                }
            }
        }
    });
}
