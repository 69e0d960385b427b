//! Client-side verification of Get / List / Recall answers against a trusted node id and the last root the
//! client has seen, using the pure verifier of `cairn-index`. Nothing the node says is taken on trust: ids are
//! recomputed from record bytes, and the text, metadata and times shown must be the ones in those bytes.

use cairn_index::id::MemoryId;
use cairn_index::proof::{self, ListRange, Returned, VerifyError, VerifyLimits};
use cairn_index::record::MemoryRecord;
use cairn_proto::v1 as pb;

pub use cairn_index::filtered::RecallFilter;
pub use cairn_index::proof::{LastSeen, RecallAsked, Verified};

/// Parses a hex node id.
pub fn parse_node_id(s: &str) -> Result<[u8; 32], VerifyError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out)
        .map_err(|_| VerifyError::Malformed("node id is not 64 hex characters"))?;
    Ok(out)
}

fn parse_id(s: &str) -> Result<MemoryId, VerifyError> {
    s.parse::<MemoryId>()
        .map_err(|_| VerifyError::Mismatch(format!("{s:?} is not a memory id")))
}

/// Checks that what the node displays (text, metadata, created_at, namespace) is what the record bytes say.
fn check_shown(
    record: &[u8],
    text: &str,
    metadata: &std::collections::BTreeMap<String, String>,
    created_at: u64,
    namespace: Option<&str>,
) -> Result<(), VerifyError> {
    let rec = MemoryRecord::decode(record)
        .map_err(|e| VerifyError::Mismatch(format!("record does not decode: {e}")))?;
    if rec.text != text || &rec.metadata != metadata || rec.created_at != created_at {
        return Err(VerifyError::Mismatch(
            "shown text, metadata or time differ from the record".into(),
        ));
    }
    if namespace.is_some_and(|ns| ns != rec.namespace) {
        return Err(VerifyError::Mismatch(
            "shown namespace differs from the record".into(),
        ));
    }
    Ok(())
}

fn fresh(v: Verified, last: Option<&LastSeen>) -> Result<Verified, VerifyError> {
    proof::check_fresh(&v.root, last, &[])?;
    Ok(v)
}

/// Verifies a Recall answer requested with `proof = true` for `asked` (k after defaulting: 0 means 10).
/// A lexical or hybrid answer is checked without binding its terms to a question: use [`recall_query`] when
/// the query text is at hand.
pub fn recall(
    namespace: &str,
    asked: &RecallAsked,
    resp: &pb::RecallResponse,
    trusted: &[u8; 32],
    last: Option<&LastSeen>,
) -> Result<Verified, VerifyError> {
    recall_query(namespace, asked, None, 0, resp, trusted, last)
}

/// Verifies a Recall answer of any mode: semantic answers against their `CPR2` proof, lexical and hybrid ones
/// against their `CPX1` proof, whose query terms must be those of `query` (when given) and whose fusion depth
/// must be at least `min_depth`. The mode is the one the response names.
pub fn recall_query(
    namespace: &str,
    asked: &RecallAsked,
    query: Option<&str>,
    min_depth: u32,
    resp: &pb::RecallResponse,
    trusted: &[u8; 32],
    last: Option<&LastSeen>,
) -> Result<Verified, VerifyError> {
    recall_filtered(
        namespace,
        asked,
        query,
        min_depth,
        &RecallFilter::default(),
        resp,
        trusted,
        last,
    )
}

/// The filter of a Recall request as the filtered-proof verifier holds it (pairs sorted by key).
pub fn filter_of(f: Option<&pb::Filter>) -> RecallFilter {
    let Some(f) = f else {
        return RecallFilter::default();
    };
    let mut pairs: Vec<(String, String)> = f
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    pairs.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    RecallFilter {
        pairs,
        since: f.since,
        until: f.until,
    }
}

/// [`recall_query`] for a Recall that asked `filter` (use [`filter_of`] on the request's filter): a filtered
/// answer is checked against its `CPF1` proof, which must be for exactly this filter; an unfiltered answer to a
/// filtered question is refused.
#[allow(clippy::too_many_arguments)]
pub fn recall_filtered(
    namespace: &str,
    asked: &RecallAsked,
    query: Option<&str>,
    min_depth: u32,
    filter: &RecallFilter,
    resp: &pb::RecallResponse,
    trusted: &[u8; 32],
    last: Option<&LastSeen>,
) -> Result<Verified, VerifyError> {
    let ids: Vec<MemoryId> = resp
        .hits
        .iter()
        .map(|h| parse_id(&h.id))
        .collect::<Result<_, _>>()?;
    for h in &resp.hits {
        check_shown(&h.record, &h.text, &h.metadata, h.created_at, None)?;
    }
    let returned: Vec<Returned<'_>> = ids
        .iter()
        .zip(&resp.hits)
        .map(|(id, h)| Returned {
            id,
            record: &h.record,
        })
        .collect();
    let scores: Vec<f32> = resp.hits.iter().map(|h| h.score).collect();
    if resp
        .proof
        .starts_with(cairn_index::filtered::FILTERED_MAGIC)
        || *filter != RecallFilter::default()
    {
        use cairn_index::filtered::{FMODE_HYBRID, FMODE_LEXICAL, FMODE_SEMANTIC};
        let mode = match pb::RecallMode::try_from(resp.mode) {
            Ok(pb::RecallMode::Lexical) => FMODE_LEXICAL,
            Ok(pb::RecallMode::Hybrid) => FMODE_HYBRID,
            _ => FMODE_SEMANTIC,
        };
        let v = cairn_index::filtered::verify_filtered(
            &resp.proof,
            namespace,
            trusted,
            &cairn_index::filtered::FilteredAsked {
                mode,
                k: asked.k,
                min_depth: min_depth.max(asked.k),
                filter,
                query,
            },
            &returned,
            &scores,
            &VerifyLimits::default(),
        )?;
        return fresh(v, last);
    }
    let mode = match pb::RecallMode::try_from(resp.mode) {
        Ok(pb::RecallMode::Lexical) => Some(cairn_index::hybrid::MODE_LEXICAL),
        Ok(pb::RecallMode::Hybrid) => Some(cairn_index::hybrid::MODE_HYBRID),
        _ => None,
    };
    if let Some(mode) = mode {
        let v = cairn_index::hybrid::verify_hybrid(
            &resp.proof,
            namespace,
            trusted,
            &cairn_index::hybrid::HybridAsked {
                mode,
                k: asked.k,
                min_ef: asked.min_ef,
                min_depth: min_depth.max(asked.k),
                query,
            },
            &returned,
            &scores,
            &VerifyLimits::default(),
        )?;
        return fresh(v, last);
    }
    let v = proof::verify_recall(
        &resp.proof,
        namespace,
        trusted,
        asked,
        &returned,
        &scores,
        &VerifyLimits::default(),
    )?;
    fresh(v, last)
}

/// Parses the ids of returned memories and checks that what they show is what their record bytes say.
fn checked_memories(memories: &[pb::Memory]) -> Result<Vec<MemoryId>, VerifyError> {
    let ids = memories
        .iter()
        .map(|m| parse_id(&m.id))
        .collect::<Result<Vec<_>, _>>()?;
    for m in memories {
        check_shown(
            &m.record,
            &m.text,
            &m.metadata,
            m.created_at,
            Some(&m.namespace),
        )?;
    }
    Ok(ids)
}

fn returned<'a>(ids: &'a [MemoryId], memories: &'a [pb::Memory]) -> Vec<Returned<'a>> {
    ids.iter()
        .zip(memories)
        .map(|(id, m)| Returned {
            id,
            record: &m.record,
        })
        .collect()
}

/// Verifies a Get answer requested with `proof = true` (the memories returned; missing ids are not proven).
pub fn get(
    namespace: &str,
    resp: &pb::GetResponse,
    trusted: &[u8; 32],
    last: Option<&LastSeen>,
) -> Result<Verified, VerifyError> {
    let ids = checked_memories(&resp.memories)?;
    let returned = returned(&ids, &resp.memories);
    let v = proof::verify_get(
        &resp.proof,
        namespace,
        trusted,
        &returned,
        &VerifyLimits::default(),
    )?;
    fresh(v, last)
}

/// Verifies a Get-by-key answer requested with `proof = true`: the Get proof, then that every memory's record
/// carries the key it is shown with and that every asked key not reported missing is among them. (That no other
/// memory holds a key is not proven.)
pub fn get_keys(
    namespace: &str,
    keys: &[String],
    resp: &pb::GetResponse,
    trusted: &[u8; 32],
    last: Option<&LastSeen>,
) -> Result<Verified, VerifyError> {
    let v = get(namespace, resp, trusted, last)?;
    let mut held = std::collections::HashSet::new();
    for m in &resp.memories {
        let k = m.metadata.get(cairn_index::validate::KEY_META);
        if k.map(String::as_str).unwrap_or("") != m.key {
            return Err(VerifyError::Mismatch(format!(
                "memory {} is shown with key {:?} but its record says {k:?}",
                m.id, m.key
            )));
        }
        held.insert(m.key.as_str());
    }
    for k in keys {
        // A memory left out at the byte cap is named by id in `unreturned`, not by key.
        if !held.contains(k.as_str()) && !resp.missing.contains(k) && resp.unreturned.is_empty() {
            return Err(VerifyError::Mismatch(format!(
                "key {k:?} was asked for but is neither returned nor reported missing"
            )));
        }
    }
    Ok(v)
}

/// Verifies a List page requested with `proof = true` for `range`.
pub fn list(
    namespace: &str,
    range: &ListRange,
    resp: &pb::ListResponse,
    trusted: &[u8; 32],
    last: Option<&LastSeen>,
) -> Result<Verified, VerifyError> {
    let ids = checked_memories(&resp.memories)?;
    let returned = returned(&ids, &resp.memories);
    let v = proof::verify_list(
        &resp.proof,
        namespace,
        trusted,
        range,
        &returned,
        &VerifyLimits::default(),
    )?;
    fresh(v, last)
}

/// The List range a page token and options stand for (the token is hex `u64be(created_at) ‖ id`).
pub fn list_range(
    since: Option<u64>,
    until: Option<u64>,
    limit: u32,
    page_token: &str,
) -> Result<ListRange, VerifyError> {
    let after = if page_token.is_empty() {
        None
    } else {
        let raw = hex::decode(page_token).map_err(|_| VerifyError::Malformed("page token"))?;
        if raw.len() != 40 {
            return Err(VerifyError::Malformed("page token"));
        }
        let mut t = [0u8; 8];
        t.copy_from_slice(&raw[..8]);
        let mut id = [0u8; 32];
        id.copy_from_slice(&raw[8..]);
        Some((u64::from_be_bytes(t), MemoryId(id)))
    };
    Ok(ListRange {
        since: since.unwrap_or(0),
        until: until.unwrap_or(u64::MAX),
        after,
        limit: if limit == 0 { 100 } else { limit },
    })
}

/// The number of distinct witnesses in `pinned` (the caller's witness set; the root's signer never counts)
/// whose cosignature of `root` checks out. Malformed entries and keys outside the set are ignored.
pub fn witnesses(
    root: &cairn_index::root::RootRecord,
    cosigs: &[pb::Cosignature],
    pinned: &[[u8; 32]],
) -> usize {
    cairn_index::root::count_witnesses(root, &parse_cosigs(cosigs), pinned)
}

/// Cosignatures as (witness id, signature); malformed entries are dropped.
pub fn parse_cosigs(cosigs: &[pb::Cosignature]) -> Vec<([u8; 32], [u8; 64])> {
    cosigs
        .iter()
        .filter_map(|c| {
            let mut w = [0u8; 32];
            hex::decode_to_slice(&c.witness, &mut w).ok()?;
            let sig: [u8; 64] = c.signature.as_slice().try_into().ok()?;
            Some((w, sig))
        })
        .collect()
}
