//! Who may ask: capability tokens checked on every gRPC call.
//!
//! A token (see [`token`]) grants rights on namespace prefixes and is signed by the node's *authority key*
//! (`authority.key` in the data dir, mode 0600), a key kept apart from the node key that signs roots, so either
//! can be rotated without touching the other. On first start the node mints an admin token for everything and
//! writes it to `admin.token` (0600) for the person who runs it. [`rules`] maps every RPC to the right it needs;
//! the service asks [`Auth`] before doing anything.

pub mod rules;
pub mod token;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use biscuit_auth::{Algorithm, Biscuit, KeyPair, PrivateKey};
use tonic::metadata::MetadataMap;
use tonic::Status;

pub use rules::Need;
use token::{Checker, Grant, Refusal};

/// File name of the authority key in the data dir.
pub const AUTHORITY_FILE: &str = "authority.key";
/// File name of the admin token the node writes for its operator.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// A right a token can grant on a namespace prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Right {
    /// Recall, Get, List, GetRoot, WatchRoots, Stats.
    Read,
    /// Remember.
    Write,
    /// Forget.
    Forget,
    /// Peers, follows, snapshots, alerts, tokens.
    Admin,
}

impl Right {
    /// Every right, in the order docs list them.
    pub const ALL: [Right; 4] = [Right::Read, Right::Write, Right::Forget, Right::Admin];

    /// The name used in tokens and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Right::Read => "read",
            Right::Write => "write",
            Right::Forget => "forget",
            Right::Admin => "admin",
        }
    }

    /// The right with this name.
    pub fn parse(s: &str) -> Option<Right> {
        Right::ALL.into_iter().find(|r| r.name() == s)
    }
}

/// Why the authority key or admin token could not be loaded or written.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    /// I/O on a file of the data dir.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The authority key file is not a 32-byte ed25519 key.
    #[error("{0} is damaged (expected a 32-byte ed25519 key); move it aside to make a new authority (every token made with the old one stops working)")]
    Damaged(String),
    /// Minting the admin token failed.
    #[error("cannot mint the admin token: {0}")]
    Token(#[from] token::TokenError),
}

/// A token that passed its signature and revocation checks, kept so a client's next call skips parsing.
struct Verified {
    token: Biscuit,
    /// Its revocation ids, one per block (checked on every call).
    ids: Vec<Vec<u8>>,
    /// BLAKE3 of the token's text: the key of its cached decisions.
    key: [u8; 32],
}

/// The caller of one gRPC call: who it is as far as rights go.
#[derive(Clone)]
pub struct Caller(Option<Arc<Verified>>);

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("Caller(unchecked)"),
            Some(v) => write!(f, "Caller({} blocks)", v.token.block_count()),
        }
    }
}

/// Most parsed tokens kept; past it the cache is emptied (clients with many tokens only pay for re-parsing).
const CACHE: usize = 4096;
/// How long an allowed (token, right, namespace) decision is reused before the datalog runs again. Token times
/// have one-second resolution, so an expiry takes effect within this of its time; revocation is checked on
/// every call, before this cache.
const DECISION_TTL: std::time::Duration = std::time::Duration::from_secs(1);

type DecisionKey = ([u8; 32], Right, String);

struct Enforced {
    authority: KeyPair,
    checker: Checker,
    revoked: RwLock<HashSet<Vec<u8>>>,
    cache: Mutex<HashMap<[u8; 32], Arc<Verified>>>,
    decisions: Mutex<HashMap<DecisionKey, std::time::Instant>>,
}

/// The node's access control. Cheap to share.
pub struct Auth(Option<Enforced>);

impl Auth {
    /// Access control off (`--no-auth`): every call is allowed.
    pub fn disabled() -> Auth {
        Auth(None)
    }

    /// Loads the authority key from `data_dir` (made on first start), writes `admin.token` if it is missing, and
    /// starts with the revocation ids already recorded.
    pub fn open(data_dir: &Path, revoked: Vec<Vec<u8>>) -> Result<Auth, AuthFileError> {
        let key_path = data_dir.join(AUTHORITY_FILE);
        let shown = key_path.display().to_string();
        let io = |path: &Path, source| AuthFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let authority = match std::fs::read(&key_path) {
            Ok(bytes) => {
                let key = PrivateKey::from_bytes(&bytes, Algorithm::Ed25519)
                    .map_err(|_| AuthFileError::Damaged(shown.clone()))?;
                KeyPair::from(&key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let kp = KeyPair::new();
                crate::identity::write_private(&key_path, &kp.private().to_bytes())
                    .map_err(|e| io(&key_path, e))?;
                // A new authority makes every old admin token useless; a new one is written below.
                let _ = std::fs::remove_file(data_dir.join(ADMIN_TOKEN_FILE));
                tracing::info!(path = %shown, "created authority key");
                kp
            }
            Err(e) => return Err(io(&key_path, e)),
        };
        let checker = Checker::new(authority.public())?;
        let admin_path = data_dir.join(ADMIN_TOKEN_FILE);
        if !admin_path.exists() {
            let all = Grant::new(&[String::new()], &Right::ALL, None)?;
            let t = token::mint(&authority, &all)?
                .to_base64()
                .map_err(|e| token::TokenError::Malformed(e.to_string()))?;
            crate::identity::write_private(&admin_path, format!("{t}\n").as_bytes())
                .map_err(|e| io(&admin_path, e))?;
            tracing::info!(path = %admin_path.display(), "wrote an admin token");
        }
        Ok(Auth(Some(Enforced {
            authority,
            checker,
            revoked: RwLock::new(revoked.into_iter().collect()),
            cache: Mutex::new(HashMap::new()),
            decisions: Mutex::new(HashMap::new()),
        })))
    }

    /// Whether calls are checked at all.
    pub fn enforced(&self) -> bool {
        self.0.is_some()
    }

    /// The caller of a call, from its `authorization: Bearer <token>` metadata: UNAUTHENTICATED if the token is
    /// missing, malformed, signed by another key or revoked.
    pub fn caller(&self, meta: &MetadataMap) -> Result<Caller, Status> {
        let Some(e) = &self.0 else {
            return Ok(Caller(None));
        };
        let raw = meta
            .get("authorization")
            .ok_or_else(|| {
                Status::unauthenticated(
                    "this node needs a token: send `authorization: Bearer <token>` (cairn --token, CAIRN_TOKEN)",
                )
            })?
            .to_str()
            .map_err(|_| Status::unauthenticated("authorization: not ASCII"))?;
        let tok = raw
            .strip_prefix("Bearer ")
            .or_else(|| raw.strip_prefix("bearer "))
            .unwrap_or(raw)
            .trim();
        let key: [u8; 32] = *blake3::hash(tok.as_bytes()).as_bytes();
        let cached = e.cache.lock().ok().and_then(|c| c.get(&key).cloned());
        let v = match cached {
            Some(v) => v,
            None => {
                let token = e
                    .checker
                    .parse(tok)
                    .map_err(|err| Status::unauthenticated(format!("bad token: {err}")))?;
                let ids = token.revocation_identifiers();
                let v = Arc::new(Verified { token, ids, key });
                if let Ok(mut c) = e.cache.lock() {
                    if c.len() >= CACHE {
                        c.clear();
                    }
                    c.insert(key, v.clone());
                }
                v
            }
        };
        if let Ok(revoked) = e.revoked.read() {
            if v.ids.iter().any(|id| revoked.contains(id)) {
                return Err(Status::unauthenticated("token revoked"));
            }
        }
        Ok(Caller(Some(v)))
    }

    /// Allows the call if the caller holds `right` on `ns` (`""`: node-wide); otherwise PERMISSION_DENIED naming
    /// both, or UNAUTHENTICATED if the token expired.
    pub fn check(&self, caller: &Caller, right: Right, ns: &str) -> Result<(), Status> {
        let (Some(e), Some(v)) = (&self.0, &caller.0) else {
            return Ok(());
        };
        let dkey = (v.key, right, ns.to_owned());
        if let Ok(d) = e.decisions.lock() {
            if d.get(&dkey).is_some_and(|t| t.elapsed() < DECISION_TTL) {
                return Ok(());
            }
        }
        match e.checker.allows(&v.token, right, ns) {
            Ok(()) => {
                if let Ok(mut d) = e.decisions.lock() {
                    if d.len() >= CACHE {
                        d.clear();
                    }
                    d.insert(dkey, std::time::Instant::now());
                }
                Ok(())
            }
            Err(Refusal::Expired) => Err(Status::unauthenticated("token expired")),
            Err(Refusal::Denied) if ns.is_empty() => Err(Status::permission_denied(format!(
                "token lacks the right {:?} on the whole node (a token for every namespace)",
                right.name()
            ))),
            Err(Refusal::Denied) => Err(Status::permission_denied(format!(
                "token lacks the right {:?} on namespace {ns:?}",
                right.name()
            ))),
            Err(Refusal::Limits(m)) => Err(Status::permission_denied(format!(
                "token could not be checked within limits: {m}"
            ))),
        }
    }

    /// Whether the caller holds `right` on `ns` (for filtering lists).
    pub fn covers(&self, caller: &Caller, right: Right, ns: &str) -> bool {
        self.check(caller, right, ns).is_ok()
    }

    /// Whether the caller holds any right on `ns`.
    pub fn covers_any(&self, caller: &Caller, ns: &str) -> bool {
        Right::ALL.into_iter().any(|r| self.covers(caller, r, ns))
    }

    /// Authenticates a call and checks what its method needs per [`rules::RULES`]. `ns` is the namespace the
    /// request names (ignored by node-wide and filtered methods). A method missing from the table is refused.
    pub fn guard(&self, meta: &MetadataMap, method: &str, ns: &str) -> Result<Caller, Status> {
        let need = rules::need(method).ok_or_else(|| {
            Status::permission_denied(format!("no access rule for method {method}"))
        })?;
        if need == Need::Open {
            return Ok(Caller(None));
        }
        let caller = self.caller(meta)?;
        match need {
            Need::Open | Need::Filtered => {
                // A valid token that has expired still must not pass.
                self.check_live(&caller)?;
            }
            Need::Namespace(r) => self.check(&caller, r, ns)?,
            Need::Node(r) => self.check(&caller, r, "")?,
        }
        Ok(caller)
    }

    /// UNAUTHENTICATED if the caller's token has expired (for calls that need no particular right).
    fn check_live(&self, caller: &Caller) -> Result<(), Status> {
        let (Some(e), Some(v)) = (&self.0, &caller.0) else {
            return Ok(());
        };
        // Read on a namespace no one can name: only the time checks can tell expired from denied.
        match e.checker.allows(&v.token, Right::Read, "\u{0}") {
            Err(Refusal::Expired) => Err(Status::unauthenticated("token expired")),
            _ => Ok(()),
        }
    }

    /// Mints a token for `grant`, if the caller holds admin on every prefix of it.
    pub fn mint(&self, caller: &Caller, grant: &Grant) -> Result<(String, Vec<String>), Status> {
        let Some(e) = &self.0 else {
            return Err(Status::failed_precondition(
                "access control is off on this node (--no-auth): it mints no tokens",
            ));
        };
        for p in &grant.prefixes {
            self.check(caller, Right::Admin, p)?;
        }
        let t = token::mint(&e.authority, grant)
            .map_err(|err| Status::internal(format!("minting failed: {err}")))?;
        let ids = t.revocation_identifiers().iter().map(hex::encode).collect();
        let s = t
            .to_base64()
            .map_err(|err| Status::internal(format!("minting failed: {err}")))?;
        Ok((s, ids))
    }

    /// Makes a revocation id take effect (after it is durable in the state file).
    pub fn mark_revoked(&self, id: Vec<u8>) {
        if let Some(e) = &self.0 {
            if let Ok(mut r) = e.revoked.write() {
                r.insert(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(token: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", format!("Bearer {token}").parse().unwrap());
        m
    }

    #[test]
    fn admin_token_is_written_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = Auth::open(dir.path(), Vec::new()).unwrap();
        let tok = std::fs::read_to_string(dir.path().join(ADMIN_TOKEN_FILE)).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in [ADMIN_TOKEN_FILE, AUTHORITY_FILE] {
                let mode = std::fs::metadata(dir.path().join(f))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{f}");
            }
        }
        let c = a.guard(&meta(tok.trim()), "Forget", "any/ns").unwrap();
        a.check(&c, Right::Admin, "").unwrap();
        // Reopening keeps the authority: the same token still works.
        let b = Auth::open(dir.path(), Vec::new()).unwrap();
        b.guard(&meta(tok.trim()), "AddPeer", "").unwrap();
    }

    #[test]
    fn unknown_missing_and_revoked_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Auth::open(dir.path(), Vec::new()).unwrap();
        let tok = std::fs::read_to_string(dir.path().join(ADMIN_TOKEN_FILE)).unwrap();
        let err = a.guard(&MetadataMap::new(), "Recall", "a").unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(a.guard(&MetadataMap::new(), "NodeInfo", "").is_ok());
        let err = a.guard(&meta(tok.trim()), "NoSuchMethod", "a").unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        let id = token::inspect(tok.trim()).unwrap().revocation_ids[0].clone();
        a.mark_revoked(hex::decode(id).unwrap());
        let err = a.guard(&meta(tok.trim()), "Recall", "a").unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
    }
}
