//! Capability tokens: biscuit tokens (ed25519, offline attenuation, revocation ids) that grant rights on
//! namespace prefixes. Minting and checking need the node's authority key; attenuating and inspecting need
//! nothing but the token. The datalog the node writes and expects is specified in docs/SECURITY.md.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use biscuit_auth::builder::{self, Policy, Term};
use biscuit_auth::{
    error, AuthorizerBuilder, AuthorizerLimits, Biscuit, BlockBuilder, KeyPair, PublicKey,
    UnverifiedBiscuit,
};

use super::Right;

/// Why a token could not be made, read or changed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A namespace prefix breaks the namespace rules.
    #[error("prefix {prefix:?}: {reason}")]
    Prefix {
        /// The prefix as given.
        prefix: String,
        /// What is wrong.
        reason: String,
    },
    /// No prefix or no right was given.
    #[error("{0}")]
    Empty(&'static str),
    /// A right name is not one of read, write, forget, admin.
    #[error("unknown right {0:?} (use read, write, forget, admin)")]
    UnknownRight(String),
    /// The token bytes are not a token, or not one this key signed.
    #[error("not a valid token: {0}")]
    Malformed(String),
}

impl From<error::Token> for TokenError {
    fn from(e: error::Token) -> Self {
        TokenError::Malformed(e.to_string())
    }
}

/// Checks a namespace prefix and returns it in canonical form (no trailing `/`; empty means every namespace).
/// A prefix covers the namespace of the same name and everything below it: `team` covers `team` and
/// `team/a`, not `teammate`.
pub fn prefix(p: &str) -> Result<String, TokenError> {
    let p = p.trim().trim_end_matches('/');
    if p.is_empty() {
        return Ok(String::new());
    }
    cairn_index::validate::namespace(p).map_err(|e| TokenError::Prefix {
        prefix: p.to_owned(),
        reason: e.reason,
    })?;
    Ok(p.to_owned())
}

/// Whether prefix `p` (canonical) covers namespace `ns`: the rule the datalog policy states, in Rust.
pub fn covers(p: &str, ns: &str) -> bool {
    p.is_empty() || ns == p || (ns.starts_with(p) && ns.as_bytes().get(p.len()) == Some(&b'/'))
}

/// Parses a list of right names (`read,write` or repeated).
pub fn rights(names: &[String]) -> Result<Vec<Right>, TokenError> {
    let mut out = Vec::new();
    for n in names.iter().flat_map(|n| n.split(',')) {
        let n = n.trim();
        if n.is_empty() {
            continue;
        }
        let r = Right::parse(n).ok_or_else(|| TokenError::UnknownRight(n.to_owned()))?;
        if !out.contains(&r) {
            out.push(r);
        }
    }
    if out.is_empty() {
        return Err(TokenError::Empty("at least one right is needed"));
    }
    Ok(out)
}

fn canonical_prefixes(prefixes: &[String]) -> Result<Vec<String>, TokenError> {
    let mut out = Vec::new();
    for p in prefixes {
        let p = prefix(p)?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err(TokenError::Empty("at least one namespace prefix is needed"));
    }
    Ok(out)
}

/// What a minted or attenuated token is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Canonical namespace prefixes.
    pub prefixes: Vec<String>,
    /// Rights on each of them.
    pub rights: Vec<Right>,
    /// Expiry (seconds since the Unix epoch), if any.
    pub expires: Option<u64>,
}

impl Grant {
    /// A grant from user input: prefixes and rights are checked, `ttl` counts from now.
    pub fn new(
        prefixes: &[String],
        rights: &[Right],
        ttl: Option<Duration>,
    ) -> Result<Grant, TokenError> {
        if rights.is_empty() {
            return Err(TokenError::Empty("at least one right is needed"));
        }
        let expires = ttl.map(|t| unix_now().saturating_add(t.as_secs().max(1)));
        Ok(Grant {
            prefixes: canonical_prefixes(prefixes)?,
            rights: rights.to_vec(),
            expires,
        })
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Mints a token signed by `authority`: one `right(prefix, op)` fact per prefix and right, and an expiry check.
pub fn mint(authority: &KeyPair, grant: &Grant) -> Result<Biscuit, TokenError> {
    let mut b = Biscuit::builder();
    for p in &grant.prefixes {
        for r in &grant.rights {
            b = b.fact(builder::fact(
                "right",
                &[builder::string(p), builder::string(r.name())],
            ))?;
        }
    }
    if let Some(exp) = grant.expires {
        b = b.code_with_params(
            "check if time($t), $t <= {exp};",
            HashMap::from([("exp".to_owned(), builder::date(&at(exp)))]),
            HashMap::new(),
        )?;
    }
    Ok(b.build(authority)?)
}

/// The checks of an attenuation block: only these rights, only below these prefixes, not after this time.
fn attenuation_block(grant: &Grant) -> Result<BlockBuilder, TokenError> {
    let ops = grant
        .rights
        .iter()
        .map(|r| format!("operation(\"{}\")", r.name()))
        .collect::<Vec<_>>()
        .join(" or ");
    let mut code = format!("check if {ops};\n");
    let mut params: HashMap<String, Term> = HashMap::new();
    if !grant.prefixes.iter().any(String::is_empty) {
        let alts = (0..grant.prefixes.len())
            .map(|i| format!("namespace($ns), $ns == {{p{i}}} || $ns.starts_with({{s{i}}})"))
            .collect::<Vec<_>>()
            .join(" or ");
        code.push_str(&format!("check if {alts};\n"));
        for (i, p) in grant.prefixes.iter().enumerate() {
            params.insert(format!("p{i}"), builder::string(p));
            params.insert(format!("s{i}"), builder::string(&format!("{p}/")));
        }
    }
    if let Some(exp) = grant.expires {
        code.push_str("check if time($t), $t <= {exp};\n");
        params.insert("exp".to_owned(), builder::date(&at(exp)));
    }
    Ok(BlockBuilder::new().code_with_params(code, params, HashMap::new())?)
}

/// Narrows a token offline: appends a block that only allows `grant`. Needs no key; the result can only do
/// less than the token it came from (a block's checks add to every earlier block's, and its facts are not
/// trusted by the node's policy).
pub fn attenuate(token: &str, grant: &Grant) -> Result<String, TokenError> {
    let t = UnverifiedBiscuit::from_base64(token.trim())?;
    let narrowed = t.append(attenuation_block(grant)?)?;
    Ok(narrowed.to_base64()?)
}

/// A token's blocks as datalog source and its revocation ids (hex), read without checking its signature.
pub struct Inspected {
    /// Datalog source of each block, the authority block first.
    pub blocks: Vec<String>,
    /// Revocation id of each block (hex).
    pub revocation_ids: Vec<String>,
}

/// Reads a token without a key (for `cairn token inspect`): what it says, not whether it is valid.
pub fn inspect(token: &str) -> Result<Inspected, TokenError> {
    let t = UnverifiedBiscuit::from_base64(token.trim())?;
    let mut blocks = Vec::new();
    for i in 0..t.block_count() {
        blocks.push(t.print_block_source(i)?);
    }
    Ok(Inspected {
        blocks,
        revocation_ids: t.revocation_identifiers().iter().map(hex::encode).collect(),
    })
}

/// The node's authorization policy: allow iff the authority block grants the operation on a prefix covering the
/// namespace. (Facts of attenuation blocks are not trusted by policies, so a holder cannot add rights.)
pub const POLICY: &str = r#"allow if right($p, $op), operation($op), namespace($ns), $p == "" || $ns == $p || $ns.starts_with($p + "/")"#;

/// Checks tokens against one authority public key.
pub struct Checker {
    root: PublicKey,
    policy: Policy,
    limits: AuthorizerLimits,
}

/// Why a token does not allow a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The token's time ran out (a `time` check failed).
    Expired,
    /// The token does not grant the operation on the namespace.
    Denied,
    /// The check could not run within its limits (a hostile token).
    Limits(String),
}

impl Checker {
    /// A checker for tokens signed by `root`.
    pub fn new(root: PublicKey) -> Result<Self, TokenError> {
        Ok(Checker {
            root,
            policy: Policy::try_from(POLICY)?,
            limits: AuthorizerLimits {
                max_facts: 1000,
                max_iterations: 100,
                // Generous for a debug build on a busy machine; a release build takes tens of µs.
                max_time: Duration::from_millis(50),
            },
        })
    }

    /// Parses a token and checks its signatures.
    pub fn parse(&self, token: &str) -> Result<Biscuit, TokenError> {
        Ok(Biscuit::from_base64(token.trim(), self.root)?)
    }

    /// Whether `token` allows `right` on namespace `ns` (`""` for node-wide calls) at time `now`.
    pub fn allows(&self, token: &Biscuit, right: Right, ns: &str) -> Result<(), Refusal> {
        let build = || -> Result<_, error::Token> {
            AuthorizerBuilder::new()
                .fact(builder::fact("operation", &[builder::string(right.name())]))?
                .fact(builder::fact("namespace", &[builder::string(ns)]))?
                .time()
                .policy(self.policy.clone())
                .map(|b| b.set_limits(self.limits.clone()))?
                .build(token)
        };
        let mut az = build().map_err(|e| Refusal::Limits(e.to_string()))?;
        match az.authorize() {
            Ok(_) => Ok(()),
            Err(error::Token::FailedLogic(logic)) => {
                let checks = match &logic {
                    error::Logic::Unauthorized { checks, .. }
                    | error::Logic::NoMatchingPolicy { checks } => checks.clone(),
                    _ => Vec::new(),
                };
                let expired = checks.iter().any(|c| match c {
                    error::FailedCheck::Block(b) => b.rule.contains("time("),
                    error::FailedCheck::Authorizer(a) => a.rule.contains("time("),
                });
                Err(if expired {
                    Refusal::Expired
                } else {
                    Refusal::Denied
                })
            }
            Err(e) => Err(Refusal::Limits(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(p: &[&str], r: &[Right], ttl: Option<u64>) -> Grant {
        let p: Vec<String> = p.iter().map(|s| s.to_string()).collect();
        Grant::new(&p, r, ttl.map(Duration::from_secs)).unwrap()
    }

    #[test]
    fn prefixes_cover_whole_segments() {
        assert!(covers("", "a"));
        assert!(covers("team", "team"));
        assert!(covers("team", "team/a/b"));
        assert!(!covers("team", "teammate"));
        assert!(!covers("team/a", "team"));
        assert_eq!(prefix("team/").unwrap(), "team");
        assert_eq!(prefix("/").unwrap(), "");
        assert!(prefix("a//b").is_err());
        assert!(prefix("a b").is_err());
    }

    #[test]
    fn minted_token_allows_exactly_its_grant() {
        let kp = KeyPair::new();
        let c = Checker::new(kp.public()).unwrap();
        let t = mint(&kp, &grant(&["team"], &[Right::Read, Right::Write], None)).unwrap();
        let t = c.parse(&t.to_base64().unwrap()).unwrap();
        assert_eq!(c.allows(&t, Right::Read, "team"), Ok(()));
        assert_eq!(c.allows(&t, Right::Write, "team/x"), Ok(()));
        assert_eq!(c.allows(&t, Right::Forget, "team/x"), Err(Refusal::Denied));
        assert_eq!(c.allows(&t, Right::Read, "teammate"), Err(Refusal::Denied));
        assert_eq!(c.allows(&t, Right::Read, ""), Err(Refusal::Denied));
        let all = mint(&kp, &grant(&[""], &[Right::Admin], None)).unwrap();
        assert_eq!(c.allows(&all, Right::Admin, ""), Ok(()));
        assert_eq!(c.allows(&all, Right::Admin, "x/y"), Ok(()));
        assert_eq!(c.allows(&all, Right::Read, "x/y"), Err(Refusal::Denied));
    }

    #[test]
    fn attenuation_narrows_and_never_widens() {
        let kp = KeyPair::new();
        let c = Checker::new(kp.public()).unwrap();
        let root = mint(&kp, &grant(&["team"], &[Right::Read, Right::Write], None))
            .unwrap()
            .to_base64()
            .unwrap();
        let narrow = attenuate(&root, &grant(&["team/a"], &[Right::Read], Some(3600))).unwrap();
        let n = c.parse(&narrow).unwrap();
        assert_eq!(c.allows(&n, Right::Read, "team/a/x"), Ok(()));
        assert_eq!(c.allows(&n, Right::Read, "team/b"), Err(Refusal::Denied));
        assert_eq!(c.allows(&n, Right::Write, "team/a"), Err(Refusal::Denied));
        // Asking for more than the token had gives nothing more.
        let wide = attenuate(&root, &grant(&[""], &[Right::Admin, Right::Read], None)).unwrap();
        let w = c.parse(&wide).unwrap();
        assert_eq!(c.allows(&w, Right::Admin, ""), Err(Refusal::Denied));
        assert_eq!(c.allows(&w, Right::Read, "other"), Err(Refusal::Denied));
        assert_eq!(c.allows(&w, Right::Read, "team/b"), Ok(()));
        // A forged block that states a right is not trusted.
        let t = UnverifiedBiscuit::from_base64(&root).unwrap();
        let forged = t
            .append(BlockBuilder::new().code(r#"right("", "admin");"#).unwrap())
            .unwrap()
            .to_base64()
            .unwrap();
        let f = c.parse(&forged).unwrap();
        assert_eq!(c.allows(&f, Right::Admin, ""), Err(Refusal::Denied));
        // Ids: one per block, the first shared with the token it came from.
        let (a, b) = (inspect(&root).unwrap(), inspect(&narrow).unwrap());
        assert_eq!(b.revocation_ids.len(), 2);
        assert_eq!(a.revocation_ids[0], b.revocation_ids[0]);
    }

    #[test]
    fn expiry_is_reported_as_expired() {
        let kp = KeyPair::new();
        let c = Checker::new(kp.public()).unwrap();
        let mut g = grant(&["a"], &[Right::Read], None);
        g.expires = Some(unix_now() - 10);
        let t = mint(&kp, &g).unwrap();
        assert_eq!(c.allows(&t, Right::Read, "a"), Err(Refusal::Expired));
        let live = mint(&kp, &grant(&["a"], &[Right::Read], None))
            .unwrap()
            .to_base64()
            .unwrap();
        let mut g2 = grant(&["a"], &[Right::Read], None);
        g2.expires = Some(unix_now() - 10);
        let old = c.parse(&attenuate(&live, &g2).unwrap()).unwrap();
        assert_eq!(c.allows(&old, Right::Read, "a"), Err(Refusal::Expired));
    }

    #[test]
    fn other_keys_and_garbage_are_refused() {
        let (kp, other) = (KeyPair::new(), KeyPair::new());
        let c = Checker::new(kp.public()).unwrap();
        let t = mint(&other, &grant(&[""], &[Right::Admin], None))
            .unwrap()
            .to_base64()
            .unwrap();
        assert!(c.parse(&t).is_err());
        for junk in ["", "x", "AAAA", "====", &"A".repeat(10_000)] {
            assert!(c.parse(junk).is_err());
            assert!(inspect(junk).is_err());
        }
    }
}
