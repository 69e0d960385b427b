//! The anchoring rule (docs/PROOFS.md, "Anchoring"): when a verifier demands that an answer's root be anchored
//! on a chain, which anchors count and what must link to what.
//!
//! A chain contract records anyone's claim "(node id, namespace) had root hash H at seq S" together with the
//! signed root record. It cannot check ed25519 signatures cheaply, so this module does: an anchor counts only if
//! its record verifies under the owner's key and says what the anchor claims. Counting anchors are public,
//! signed statements of the owner's history: an answer is accepted only if it lies on that history, between
//! the nearest counting anchor at or below its seq (which must exist and be recent enough) and the nearest one
//! above it (if any). Fetching anchors and roots is the caller's job; this is pure and panics on no input.

use crate::merkle::Hash;
use crate::root::{verify_chain, SignedRoot};

/// An anchor as read from the chain, not yet trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// Who submitted it (a chain account; informational: any submitter's anchor counts if its record verifies).
    pub submitter: [u8; 20],
    /// The seq it claims.
    pub seq: u64,
    /// The root hash it claims.
    pub root: Hash,
    /// When the chain recorded it (block timestamp, s since the Unix epoch).
    pub time: u64,
    /// The signed root record it carries (`SignedRoot::encode` bytes).
    pub signed_root: Vec<u8>,
}

/// An anchor whose signed record verified: a public statement by the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    /// Its seq.
    pub seq: u64,
    /// Its root hash.
    pub root: Hash,
    /// Its earliest block timestamp (s): the same root may be anchored more than once.
    pub time: u64,
}

/// Why an answer's root does not meet the anchoring rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnchorError {
    /// No counting anchor at or below the answer's seq.
    #[error("no anchor of this namespace at or below seq {seq} verifies under the owner's key")]
    NotAnchored {
        /// The answer's seq.
        seq: u64,
    },
    /// The anchor below the answer is older than allowed.
    #[error("the newest anchor at or below seq {seq} (seq {anchored}) is {age} s old; at most {max} s allowed")]
    TooOld {
        /// The answer's seq.
        seq: u64,
        /// The anchor's seq.
        anchored: u64,
        /// Its age (s).
        age: u64,
        /// The limit (s).
        max: u64,
    },
    /// Two counting anchors give different roots for one seq: the owner signed two histories, publicly.
    #[error("the owner anchored two different roots for seq {seq} (equivocation on chain)")]
    Equivocation {
        /// The seq.
        seq: u64,
    },
    /// The answer's root is not the one anchored for its seq, or does not link to the anchors around it.
    #[error("the answer's root (seq {seq}) is not on the anchored history: {reason}")]
    OffHistory {
        /// The answer's seq.
        seq: u64,
        /// What did not link.
        reason: String,
    },
    /// The roots between the answer and an anchor were not all given (more than the caller will fetch).
    #[error("{missing} roots between seq {from} and seq {to} are needed to link to the anchor; at most {max} are fetched")]
    GapTooLong {
        /// Lower seq.
        from: u64,
        /// Upper seq.
        to: u64,
        /// Roots needed.
        missing: u64,
        /// The caller's limit.
        max: u64,
    },
}

/// The anchors that count for (`owner`, `ns`): those whose signed record decodes, verifies (strictly) under
/// `owner`, is for `ns`, and has the anchor's seq and root hash. The result is sorted by seq, one entry per
/// (seq, root) with the earliest time; two entries for one seq mean the owner equivocated.
pub fn counted(anchors: &[Anchor], owner: &[u8; 32], ns: &str) -> Vec<Counted> {
    let mut out: Vec<Counted> = Vec::new();
    for a in anchors {
        let Ok(sr) = SignedRoot::decode(&a.signed_root) else {
            continue;
        };
        if sr.verify(Some(owner)).is_err()
            || sr.record.namespace != ns
            || sr.record.seq != a.seq
            || sr.record.hash() != a.root
        {
            continue;
        }
        out.push(Counted {
            seq: a.seq,
            root: a.root,
            time: a.time,
        });
    }
    // Sorted, then one entry per (seq, root) with its earliest time: O(n log n) however many logs the chain returns.
    out.sort_by_key(|c| (c.seq, c.root, c.time));
    out.dedup_by(|later, first| later.seq == first.seq && later.root == first.root);
    out
}

/// What the verifier must fetch to check an answer at `seq` against the counting anchors: the roots strictly
/// between the anchor below and the answer, and those after the answer up to and including the anchor above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The newest counting anchor at or below the answer.
    pub below: Counted,
    /// The oldest counting anchor above the answer, if any.
    pub above: Option<Counted>,
}

impl Plan {
    /// Seqs of the roots to fetch between `below` and the answer (exclusive on both ends).
    pub fn below_range(&self, seq: u64) -> std::ops::Range<u64> {
        self.below.seq.saturating_add(1)..seq.max(self.below.seq.saturating_add(1))
    }

    /// Seqs of the roots to fetch after the answer up to `above` (inclusive), empty without one.
    pub fn above_range(&self, seq: u64) -> std::ops::Range<u64> {
        match self.above {
            Some(a) => seq.saturating_add(1)..a.seq.saturating_add(1),
            None => 0..0,
        }
    }
}

/// Chooses the anchors an answer at `seq` is checked against, refusing at once when the owner equivocated on
/// chain, when nothing counting is at or below `seq`, when that anchor is older than `max_age` s at `now`
/// (s since the epoch), or when more than `max_fetch` roots would be needed.
pub fn plan(
    counted: &[Counted],
    seq: u64,
    now: u64,
    max_age: u64,
    max_fetch: u64,
) -> Result<Plan, AnchorError> {
    for w in counted.windows(2) {
        if w[0].seq == w[1].seq {
            return Err(AnchorError::Equivocation { seq: w[0].seq });
        }
    }
    let below = counted
        .iter()
        .rev()
        .find(|c| c.seq <= seq)
        .copied()
        .ok_or(AnchorError::NotAnchored { seq })?;
    let age = now.saturating_sub(below.time);
    if age > max_age {
        return Err(AnchorError::TooOld {
            seq,
            anchored: below.seq,
            age,
            max: max_age,
        });
    }
    let above = counted.iter().find(|c| c.seq > seq).copied();
    let p = Plan { below, above };
    for r in [p.below_range(seq), p.above_range(seq)] {
        let n = r.end.saturating_sub(r.start);
        if n > max_fetch {
            return Err(AnchorError::GapTooLong {
                from: r.start.saturating_sub(1),
                to: r.end,
                missing: n,
                max: max_fetch,
            });
        }
    }
    Ok(p)
}

/// Checks an answer's root (already verified by its proof) against a [`Plan`]: the roots `between_below`
/// (seqs of [`Plan::below_range`], in order) must link the anchor below to `answer`, and `after` (seqs of
/// [`Plan::above_range`]) must link `answer` to the anchor above, ending at its exact hash. Every root is checked
/// for the owner's signature and namespace ([`verify_chain`]).
pub fn check(
    answer: &SignedRoot,
    plan: &Plan,
    between_below: &[SignedRoot],
    after: &[SignedRoot],
) -> Result<(), AnchorError> {
    let seq = answer.record.seq;
    let owner = answer.record.node_id;
    let ns = answer.record.namespace.as_str();
    let off = |reason: String| AnchorError::OffHistory { seq, reason };
    if plan.below.seq > seq {
        return Err(off(format!(
            "the anchor below is at seq {}",
            plan.below.seq
        )));
    }
    if plan.below.seq == seq {
        if answer.record.hash() != plan.below.root {
            return Err(off(format!(
                "seq {seq} was anchored with root {}",
                hex::encode(plan.below.root)
            )));
        }
        if !between_below.is_empty() {
            return Err(off("roots given between an anchor and itself".into()));
        }
    } else {
        verify_chain(
            between_below.iter().chain(std::iter::once(answer)),
            &owner,
            ns,
            Some((plan.below.seq, plan.below.root)),
        )
        .map_err(|e| off(format!("from the anchor at seq {}: {e}", plan.below.seq)))?;
    }
    if let Some(above) = plan.above {
        verify_chain(after, &owner, ns, Some((seq, answer.record.hash())))
            .map_err(|e| off(format!("to the anchor at seq {}: {e}", above.seq)))?;
        let last = after.last().map(|r| (r.record.seq, r.record.hash()));
        if last != Some((above.seq, above.root)) {
            return Err(off(format!(
                "the roots after it do not end at the anchor at seq {}",
                above.seq
            )));
        }
    } else if !after.is_empty() {
        return Err(off(
            "roots given after the answer without an anchor above".into()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::root::{RootRecord, ROOT_VERSION};
    use ed25519_dalek::SigningKey;

    fn chain(key: &SigningKey, ns: &str, n: u64, salt: u8) -> Vec<SignedRoot> {
        let mut out: Vec<SignedRoot> = Vec::new();
        for seq in 1..=n {
            let prev = out.last().map(|r| r.record.hash()).unwrap_or([0; 32]);
            // `salt` makes a fork: the same seqs with other contents from seq 3 on.
            let g = if seq >= 3 { salt } else { 0 };
            let rec = RootRecord {
                version: ROOT_VERSION,
                namespace: ns.into(),
                seq,
                prev,
                graph_leaves: seq,
                graph_root: [g; 32],
                time_leaves: seq,
                time_root: [0; 32],
                entry: 0,
                max_level: 0,
                m: 16,
                m0: 32,
                quantiser: 1,
                distance: 1,
                dim: 4,
                model: [0; 32],
                created_at: seq,
                node_id: key.verifying_key().to_bytes(),
                lexicon: Some(crate::root::LexCommit {
                    tokenizer: 1,
                    terms: 0,
                    root: [0; 32],
                    total_len: 0,
                }),
            };
            out.push(SignedRoot::sign(rec, key));
        }
        out
    }

    fn anchor_of(r: &SignedRoot, time: u64) -> Anchor {
        Anchor {
            submitter: [7; 20],
            seq: r.record.seq,
            root: r.record.hash(),
            time,
            signed_root: r.encode(),
        }
    }

    fn run(
        answer: &SignedRoot,
        roots: &[SignedRoot],
        anchors: &[Anchor],
        now: u64,
    ) -> Result<(), AnchorError> {
        let owner = answer.record.node_id;
        let c = counted(anchors, &owner, &answer.record.namespace);
        let seq = answer.record.seq;
        let p = plan(&c, seq, now, 3600, 1000)?;
        let get = |r: std::ops::Range<u64>| -> Vec<SignedRoot> {
            r.filter_map(|s| roots.get((s - 1) as usize).cloned())
                .collect()
        };
        check(
            answer,
            &p,
            &get(p.below_range(seq)),
            &get(p.above_range(seq)),
        )
    }

    /// Anchored answers and answers descending from an anchor pass; a fork whose seq was anchored with another
    /// hash fails, below and above the anchor; forged, foreign and stale anchors do not count.
    #[test]
    fn answers_must_lie_on_the_anchored_history() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let owner = key.verifying_key().to_bytes();
        let honest = chain(&key, "ns", 10, 1);
        let fork = chain(&key, "ns", 10, 2);
        let a4 = anchor_of(&honest[3], 1000);
        // The anchored root itself, and roots after it.
        assert_eq!(
            run(&honest[3], &honest, std::slice::from_ref(&a4), 1000),
            Ok(())
        );
        assert_eq!(
            run(&honest[9], &honest, std::slice::from_ref(&a4), 1000),
            Ok(())
        );
        // Before any anchor: nothing to descend from.
        assert_eq!(
            run(&honest[1], &honest, std::slice::from_ref(&a4), 1000),
            Err(AnchorError::NotAnchored { seq: 2 })
        );
        // The owner serves a fork: at the anchored seq, after it, and below it (the anchor above does not link).
        assert!(matches!(
            run(&fork[3], &fork, std::slice::from_ref(&a4), 1000),
            Err(AnchorError::OffHistory { seq: 4, .. })
        ));
        assert!(matches!(
            run(&fork[7], &fork, std::slice::from_ref(&a4), 1000),
            Err(AnchorError::OffHistory { seq: 8, .. })
        ));
        let a1 = anchor_of(&honest[0], 1000);
        assert!(matches!(
            run(&fork[2], &fork, &[a1.clone(), a4.clone()], 1000),
            Err(AnchorError::OffHistory { seq: 3, .. })
        ));
        assert_eq!(run(&honest[2], &honest, &[a1, a4.clone()], 1000), Ok(()));
        // Too old.
        assert!(matches!(
            run(&honest[5], &honest, std::slice::from_ref(&a4), 1000 + 3601),
            Err(AnchorError::TooOld { .. })
        ));
        // An anchor of the fork's seq 6, signed by the owner too: equivocation on chain fails every answer.
        let f6 = anchor_of(&fork[5], 1000);
        let h6 = anchor_of(&honest[5], 1000);
        assert_eq!(
            run(&honest[9], &honest, &[a4.clone(), f6.clone(), h6], 1000),
            Err(AnchorError::Equivocation { seq: 6 })
        );
        // The same root anchored twice (two submitters) counts once, with its earliest time.
        let mut early = a4.clone();
        early.time = 500;
        assert_eq!(
            counted(&[a4.clone(), early], &owner, "ns"),
            vec![Counted {
                seq: 4,
                root: honest[3].record.hash(),
                time: 500
            }]
        );
        // Anchors that do not verify do not count: another key, a wrong claimed hash or seq, junk bytes, another
        // namespace.
        let other = SigningKey::from_bytes(&[8; 32]);
        let mut forged = anchor_of(&chain(&other, "ns", 4, 1)[3], 1000);
        forged.root = honest[3].record.hash();
        let mut wrong_hash = a4.clone();
        wrong_hash.root = [1; 32];
        let mut wrong_seq = a4.clone();
        wrong_seq.seq = 5;
        let junk = Anchor {
            signed_root: vec![0xff; 40],
            ..a4.clone()
        };
        let foreign = anchor_of(&chain(&key, "other", 4, 1)[3], 1000);
        let noise = [forged, wrong_hash, wrong_seq, junk, foreign];
        assert!(counted(&noise, &owner, "ns").is_empty());
        assert_eq!(
            run(&honest[9], &honest, &noise, 1000),
            Err(AnchorError::NotAnchored { seq: 10 })
        );
        // A long gap is refused before anything is fetched.
        let c = counted(&[a1_of(&honest)], &owner, "ns");
        assert!(matches!(
            plan(&c, 10, 1000, 3600, 5),
            Err(AnchorError::GapTooLong { missing: 8, .. })
        ));
    }

    fn a1_of(h: &[SignedRoot]) -> Anchor {
        anchor_of(&h[0], 1000)
    }

    proptest::proptest! {
        /// Any bytes as an anchor's record are ignored or counted, never a panic.
        #[test]
        fn any_anchor_bytes_are_safe(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
                                     seq in proptest::prelude::any::<u64>()) {
            let a = Anchor { submitter: [0; 20], seq, root: [0; 32], time: 0, signed_root: b };
            let c = counted(&[a], &[3; 32], "ns");
            let _ = plan(&c, seq, u64::MAX, 0, u64::MAX);
        }
    }
}
