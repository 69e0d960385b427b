//! Filtered recall proofs (`CPF1`, docs/PROOFS.md, "Filtered recall proof").
//!
//! A filter is an AND of metadata equalities and an optional created_at range. With at least one metadata pair,
//! the set of memories that can pass is the intersection of the pairs' facet posting lists (index version 2,
//! [`crate::lexical::facet_term`]), each complete and authenticated against the term tree; without one, it is
//! every graph node. The proof carries the graph leaf of every member of that set, so the verifier sees each
//! one's liveness, created_at and vector, and ranks the passing ones itself: exactly (semantic), by BM25 over
//! the query terms' complete posting lists with each term's idf over its whole list (lexical), or by fusing both
//! top-`depth` rankings (hybrid). Each hit's record must also carry the filter's pairs and a created_at in range.

use std::collections::{HashMap, HashSet};

use crate::commit::{distance, GraphNode};
use crate::hybrid::{
    check_hits, check_request, put_leaves, put_lex_pages, put_str16, read_leaves, read_lex_pages,
    read_term, resolve_terms, text_tokenizer_known, Request, Resolved, TermLeaf, MAX_TERM_LEAVES,
};
use crate::lexical::{
    bm25_top_among, facet_term, fixed_score, fuse, Corpus, Posting, MAX_QUERY_TERMS, TOKENIZER_V2,
};
use crate::merkle::Hash;
use crate::proof::{
    decode_node, encode_node, node_leaves, proof_score, put_lemmas_pub, read_lemmas_pub, ProofNode,
    Returned, Verified, VerifyError, VerifyLimits,
};
use crate::root::SignedRoot;
use crate::wire::Reader;

/// Magic of a filtered recall proof.
pub const FILTERED_MAGIC: &[u8; 4] = b"CPF1";
/// Rank by BM25.
pub const FMODE_LEXICAL: u8 = 1;
/// Rank by reciprocal-rank fusion of the semantic and the BM25 top-`depth`.
pub const FMODE_HYBRID: u8 = 2;
/// Rank by embedding distance (exact over the passing memories).
pub const FMODE_SEMANTIC: u8 = 3;
/// Most metadata pairs in one filter.
pub const MAX_FILTER_PAIRS: usize = 16;
/// Longest metadata key or value a filter may name, in bytes.
pub const MAX_FILTER_BYTES: usize = 4096;

/// What a recall is restricted to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecallFilter {
    /// Metadata equalities, keys strictly increasing by bytes.
    pub pairs: Vec<(String, String)>,
    /// created_at ≥ since.
    pub since: Option<u64>,
    /// created_at < until.
    pub until: Option<u64>,
}

impl RecallFilter {
    /// True if a memory with this created_at and metadata passes.
    pub fn passes(&self, created_at: u64, metadata: &crate::record::Metadata) -> bool {
        self.in_range(created_at)
            && self
                .pairs
                .iter()
                .all(|(k, v)| metadata.get(k).is_some_and(|x| x == v))
    }

    fn in_range(&self, created_at: u64) -> bool {
        self.since.is_none_or(|s| created_at >= s) && self.until.is_none_or(|u| created_at < u)
    }

    /// The facet terms of the pairs, in pair order.
    pub fn facets(&self) -> Vec<String> {
        self.pairs.iter().map(|(k, v)| facet_term(k, v)).collect()
    }
}

/// A filtered recall proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilteredProof {
    /// The root.
    pub root: SignedRoot,
    /// [`FMODE_LEXICAL`], [`FMODE_HYBRID`] or [`FMODE_SEMANTIC`].
    pub mode: u8,
    /// Hits asked for.
    pub k: u32,
    /// Candidates each ranking contributes to the fusion (equal to k outside hybrid mode).
    pub depth: u32,
    /// The filter.
    pub filter: RecallFilter,
    /// The query's text terms (lexical and hybrid; none in semantic mode).
    pub terms: Vec<String>,
    /// The quantised query vector (hybrid and semantic; empty in lexical mode).
    pub query: Vec<i8>,
    /// Term leaves for the query terms and the filter's facet terms, position strictly increasing.
    pub leaves: Vec<TermLeaf>,
    /// Sibling hashes of the term tree.
    pub lex_lemmas: Vec<Hash>,
    /// The term tree's pages the term leaves touch (against version-3 roots, whose term tree is paged).
    pub lex_pages: Option<crate::paged::ChunkedPages>,
    /// The graph leaf of every member of the candidate set, node increasing.
    pub nodes: Vec<ProofNode>,
    /// Sibling hashes of the graph tree.
    pub lemmas: Vec<Hash>,
}

impl FilteredProof {
    /// `"CPF1" signed_root u8(mode) u32be(k) u32be(depth) u16be(p) (str16 key, u32be(len) value)×p u8(flags)
    /// [u64be since] [u64be until] u16be(t) term×t u16be(dim) i8×dim leaves lemmas [pages, against version-3
    /// roots] u32be(c) node×c lemmas`.
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(1024 + self.nodes.len() * (self.query.len() + 100));
        o.extend_from_slice(FILTERED_MAGIC);
        o.extend_from_slice(&self.root.encode());
        o.push(self.mode);
        o.extend_from_slice(&self.k.to_be_bytes());
        o.extend_from_slice(&self.depth.to_be_bytes());
        o.extend_from_slice(&(self.filter.pairs.len() as u16).to_be_bytes());
        for (k, v) in &self.filter.pairs {
            put_str16(&mut o, k);
            o.extend_from_slice(&(v.len() as u32).to_be_bytes());
            o.extend_from_slice(v.as_bytes());
        }
        let flags =
            u8::from(self.filter.since.is_some()) | (u8::from(self.filter.until.is_some()) << 1);
        o.push(flags);
        for x in [self.filter.since, self.filter.until].into_iter().flatten() {
            o.extend_from_slice(&x.to_be_bytes());
        }
        o.extend_from_slice(&(self.terms.len() as u16).to_be_bytes());
        for t in &self.terms {
            put_str16(&mut o, t);
        }
        o.extend_from_slice(&(self.query.len() as u16).to_be_bytes());
        o.extend(self.query.iter().map(|&x| x as u8));
        put_leaves(&mut o, &self.leaves);
        put_lemmas_pub(&mut o, &self.lex_lemmas);
        put_lex_pages(&mut o, &self.root, self.lex_pages.as_ref());
        o.extend_from_slice(&(self.nodes.len() as u32).to_be_bytes());
        for n in &self.nodes {
            encode_node(&mut o, n);
        }
        put_lemmas_pub(&mut o, &self.lemmas);
        o
    }

    /// Parses a proof within `lim`. Never panics.
    pub fn decode(b: &[u8], lim: &VerifyLimits) -> Result<Self, VerifyError> {
        if b.len() > lim.max_proof_bytes {
            return Err(VerifyError::TooLarge("proof bytes"));
        }
        let mut r = Reader::new(b);
        if r.bytes(4)? != FILTERED_MAGIC {
            return Err(VerifyError::Malformed("not a filtered recall proof"));
        }
        let root = SignedRoot::read(&mut r)?;
        let mode = r.u8()?;
        if !(FMODE_LEXICAL..=FMODE_SEMANTIC).contains(&mode) {
            return Err(VerifyError::Malformed("mode"));
        }
        let k = r.u32()?;
        let depth = r.u32()?;
        if k == 0 || k > lim.max_k {
            return Err(VerifyError::TooLarge("k"));
        }
        if depth < k || depth > lim.max_k {
            return Err(VerifyError::TooLarge("depth"));
        }
        if mode != FMODE_HYBRID && depth != k {
            return Err(VerifyError::Malformed(
                "depth differs from k outside hybrid mode",
            ));
        }
        let np = r.u16()? as usize;
        if np > MAX_FILTER_PAIRS {
            return Err(VerifyError::TooLarge("filter pairs"));
        }
        let mut pairs: Vec<(String, String)> = Vec::with_capacity(np);
        for _ in 0..np {
            let kl = r.u16()? as usize;
            if kl > MAX_FILTER_BYTES {
                return Err(VerifyError::TooLarge("filter key"));
            }
            let key = std::str::from_utf8(r.bytes(kl)?)
                .map_err(|_| VerifyError::Malformed("filter key utf-8"))?
                .to_owned();
            let vl = r.u32()? as usize;
            if vl > MAX_FILTER_BYTES {
                return Err(VerifyError::TooLarge("filter value"));
            }
            let value = std::str::from_utf8(r.bytes(vl)?)
                .map_err(|_| VerifyError::Malformed("filter value utf-8"))?
                .to_owned();
            if pairs
                .last()
                .is_some_and(|(p, _)| p.as_bytes() >= key.as_bytes())
            {
                return Err(VerifyError::Malformed(
                    "filter keys not strictly increasing",
                ));
            }
            pairs.push((key, value));
        }
        let flags = r.u8()?;
        if flags > 3 {
            return Err(VerifyError::Malformed("filter flags"));
        }
        let since = if flags & 1 != 0 { Some(r.u64()?) } else { None };
        let until = if flags & 2 != 0 { Some(r.u64()?) } else { None };
        let t = r.u16()? as usize;
        if t > MAX_QUERY_TERMS {
            return Err(VerifyError::TooLarge("query terms"));
        }
        let terms = (0..t)
            .map(|_| read_term(&mut r))
            .collect::<Result<Vec<_>, _>>()?;
        let dim = r.u16()? as usize;
        let query: Vec<i8> = r.bytes(dim)?.iter().map(|&x| x as i8).collect();
        let leaves = read_leaves(&mut r, MAX_TERM_LEAVES + 2 * MAX_FILTER_PAIRS)?;
        let lex_lemmas = read_lemmas_pub(&mut r, lim)?;
        let lex_pages = read_lex_pages(&mut r, &root, leaves.len())?;
        let count = r.u32()? as usize;
        let rdim = root.record.dim as usize;
        if count > lim.max_items || count.saturating_mul(rdim / 2 + 48) > r.remaining() {
            return Err(VerifyError::TooLarge("nodes"));
        }
        let mut nodes = Vec::with_capacity(count);
        for _ in 0..count {
            nodes.push(decode_node(&mut r, rdim)?);
        }
        let lemmas = read_lemmas_pub(&mut r, lim)?;
        if !r.is_empty() {
            return Err(VerifyError::Malformed("trailing bytes"));
        }
        Ok(FilteredProof {
            root,
            mode,
            k,
            depth,
            filter: RecallFilter {
                pairs,
                since,
                until,
            },
            terms,
            query,
            leaves,
            lex_lemmas,
            lex_pages,
            nodes,
            lemmas,
        })
    }
}

/// What the verifier derived from a filtered proof.
#[derive(Debug)]
pub struct FilteredAnswer<'a> {
    /// (score as reported, graph node), best first.
    pub hits: Vec<(f32, &'a GraphNode)>,
    /// The scored query terms with their posting lists.
    pub lists: Vec<(&'a str, &'a [Posting])>,
    /// Memories that could pass the filter (before liveness and the time range).
    pub candidates: usize,
}

/// The filter's candidate set from its pairs' facet lists (node order kept): the nodes in every list. One
/// home for the rule, used by the prover and the verifier alike.
pub fn intersect(lists: Vec<Vec<u32>>) -> Vec<u32> {
    let mut lists = lists.into_iter();
    let Some(first) = lists.next() else {
        return Vec::new();
    };
    lists.fold(first, |set, nodes| {
        let keep: HashSet<u32> = nodes.into_iter().collect();
        set.into_iter().filter(|n| keep.contains(n)).collect()
    })
}

/// Re-derives the answer a filtered proof implies.
pub fn filtered_answer(p: &FilteredProof) -> Result<FilteredAnswer<'_>, VerifyError> {
    let rec = &p.root.record;
    let Some(lex) = rec.lexicon else {
        return Err(VerifyError::Unsupported);
    };
    if !text_tokenizer_known(lex.tokenizer)
        || (!p.filter.pairs.is_empty() && lex.tokenizer != TOKENIZER_V2)
    {
        return Err(VerifyError::Unsupported);
    }
    let dim = rec.dim as usize;
    match p.mode {
        FMODE_LEXICAL if !p.query.is_empty() => {
            return Err(VerifyError::Malformed(
                "a lexical proof carries no query vector",
            ))
        }
        FMODE_SEMANTIC if !p.terms.is_empty() => {
            return Err(VerifyError::Malformed(
                "a semantic proof carries no query terms",
            ))
        }
        FMODE_HYBRID | FMODE_SEMANTIC if p.query.len() != dim => {
            return Err(VerifyError::Malformed("query dimension"))
        }
        _ => {}
    }
    for (i, t) in p.terms.iter().enumerate() {
        if p.terms[..i].contains(t) {
            return Err(VerifyError::Malformed("a query term is repeated"));
        }
    }
    let facets = p.filter.facets();
    let mut want: Vec<&str> = p.terms.iter().map(String::as_str).collect();
    want.extend(facets.iter().map(String::as_str));
    let resolved = resolve_terms(
        &p.root,
        &want,
        &p.leaves,
        p.lex_pages.as_ref(),
        &p.lex_lemmas,
    )?;
    let (text, facet) = resolved.split_at(p.terms.len());
    // The candidate set: the facet lists' intersection, or every node (counted before anything is allocated:
    // `graph_leaves` is the signer's word, the nodes are what the proof carries).
    let candidates: Vec<u32> = if facet.is_empty() {
        if p.nodes.len() as u64 != rec.graph_leaves {
            return Err(VerifyError::Mismatch(format!(
                "the proof must carry all {} memories of the namespace, it carries {}",
                rec.graph_leaves,
                p.nodes.len()
            )));
        }
        (0..p.nodes.len() as u32).collect()
    } else {
        let mut lists = Vec::with_capacity(facet.len());
        for r in facet {
            lists.push(match r {
                Resolved::Full(l) => l.iter().map(|x| x.node).collect(),
                Resolved::Absent => Vec::new(),
                Resolved::OverCap => {
                    return Err(VerifyError::Mismatch(
                        "a filter pair is in more memories than a proof may list".into(),
                    ))
                }
            });
        }
        intersect(lists)
    };
    if p.nodes.len() != candidates.len()
        || p.nodes
            .iter()
            .zip(&candidates)
            .any(|(n, c)| n.node.node != *c)
    {
        return Err(VerifyError::Mismatch(format!(
            "the proof must carry the {} memories that can pass the filter, it carries {}",
            candidates.len(),
            p.nodes.len()
        )));
    }
    let leaves = node_leaves(&p.nodes)?;
    if !leaves.is_empty() {
        crate::paged::verify_graph(rec, &leaves, &p.lemmas)?;
    }
    let passing: HashMap<u32, &GraphNode> = p
        .nodes
        .iter()
        .map(|n| &n.node)
        .filter(|n| n.alive && p.filter.in_range(n.created_at))
        .map(|n| (n.node, n))
        .collect();
    let lists: Vec<(&str, &[Posting])> = p
        .terms
        .iter()
        .zip(text)
        .filter_map(|(t, r)| match r {
            Resolved::Full(l) => Some((t.as_str(), *l)),
            _ => None,
        })
        .collect();
    let semantic = || {
        let mut s: Vec<(i32, u32)> = passing
            .values()
            .map(|n| (distance(&p.query, &n.vector), n.node))
            .collect();
        s.sort_unstable();
        s.truncate(p.depth as usize);
        s
    };
    let lexical = || {
        let raw: Vec<&[Posting]> = lists.iter().map(|(_, l)| *l).collect();
        let corpus = Corpus {
            docs: rec.time_leaves,
            total_len: lex.total_len,
        };
        bm25_top_among(&raw, corpus, p.depth as usize, &|n| {
            passing.contains_key(&n)
        })
    };
    let ranked: Vec<(f32, u32)> = match p.mode {
        FMODE_SEMANTIC => semantic()
            .into_iter()
            .map(|(d, n)| (proof_score(d), n))
            .collect(),
        FMODE_LEXICAL => lexical()
            .into_iter()
            .map(|(s, n)| (fixed_score(s), n))
            .collect(),
        _ => {
            let sem: Vec<u32> = semantic().into_iter().map(|x| x.1).collect();
            let lex: Vec<u32> = lexical().into_iter().map(|x| x.1).collect();
            fuse(&[&sem, &lex], p.k as usize)
                .into_iter()
                .map(|(s, n)| (fixed_score(s), n))
                .collect()
        }
    };
    let hits = ranked
        .into_iter()
        .take(p.k as usize)
        .filter_map(|(s, n)| passing.get(&n).map(|g| (s, *g)))
        .collect();
    Ok(FilteredAnswer {
        hits,
        lists,
        candidates: candidates.len(),
    })
}

/// What the client asked, to hold a filtered proof to.
#[derive(Debug, Clone, Copy)]
pub struct FilteredAsked<'a> {
    /// [`FMODE_LEXICAL`], [`FMODE_HYBRID`] or [`FMODE_SEMANTIC`].
    pub mode: u8,
    /// k asked.
    pub k: u32,
    /// Minimum fusion depth (hybrid).
    pub min_depth: u32,
    /// The filter asked.
    pub filter: &'a RecallFilter,
    /// The query text: when given, the proof's terms must be exactly its [`query_terms`] (lexical, hybrid).
    pub query: Option<&'a str>,
}

/// Verifies a filtered Recall answer: the candidate set is exactly the memories the committed facet lists
/// allow, every candidate's graph leaf is committed, the ranking over the live candidates in the time range is
/// exactly the proof's, each score is exact, and each hit's record carries the filter's pairs, a created_at in
/// range and the term counts its postings claim.
pub fn verify_filtered(
    proof: &[u8],
    namespace: &str,
    trusted: &[u8; 32],
    asked: &FilteredAsked<'_>,
    returned: &[Returned<'_>],
    scores: &[f32],
    lim: &VerifyLimits,
) -> Result<Verified, VerifyError> {
    let p = FilteredProof::decode(proof, lim)?;
    crate::proof::check_root_pub(&p.root, namespace, trusted)?;
    check_request(
        Request {
            mode: p.mode,
            k: p.k,
            depth: p.depth,
        },
        Request {
            mode: asked.mode,
            k: asked.k,
            depth: asked.min_depth,
        },
        p.mode == FMODE_HYBRID,
        asked
            .query
            .filter(|_| p.mode != FMODE_SEMANTIC)
            .map(|q| (q, p.terms.as_slice())),
    )?;
    if p.filter != *asked.filter {
        return Err(VerifyError::Mismatch(
            "the proof is for another filter".into(),
        ));
    }
    let answer = filtered_answer(&p)?;
    check_hits(
        namespace,
        &answer.hits,
        &answer.lists,
        returned,
        scores,
        &|rec| p.filter.passes(rec.created_at, &rec.metadata),
    )?;
    Ok(Verified { root: p.root })
}
