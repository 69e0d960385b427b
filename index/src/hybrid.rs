//! Lexical and hybrid recall proofs (`CPX1`, docs/PROOFS.md, "Lexical and hybrid recall proof").
//!
//! A lexical answer is the exact BM25 top-k ([`crate::lexical::bm25_top`]) over the complete posting lists of
//! the query's terms, each authenticated against the term tree a version-2 root commits; absent terms are proven
//! absent by their neighbours in the sorted term tree. A hybrid answer fuses that lexical top-`depth` with the
//! semantic top-`depth` of an embedded `CPR2` recall proof by reciprocal rank. The verifier re-derives both
//! rankings and the fusion itself; each hit's record must also show the term counts its postings claim.

use std::collections::HashMap;

use crate::commit::GraphNode;
use crate::lexical::{
    bm25_top, fixed_score, fuse, postings_hash, query_terms, term_leaf_hash, Corpus, DocTerms,
    Posting, MAX_DF, MAX_QUERY_TERMS, MAX_TERM_BYTES, TOKENIZER_V1, TOKENIZER_V2,
};
use crate::merkle::{self, Hash};
use crate::paged::{verify_chunked, ChunkedPages};
use crate::proof::{
    check_record_pub, decode_node, encode_node, put_lemmas_pub, read_lemmas_pub, recall_answer,
    ProofNode, RecallProof, Returned, Verified, VerifyError, VerifyLimits,
};
use crate::root::{SignedRoot, NO_ENTRY};
use crate::wire::Reader;

/// Magic of a lexical or hybrid recall proof.
pub const HYBRID_MAGIC: &[u8; 4] = b"CPX1";
/// Proof mode: BM25 only.
pub const MODE_LEXICAL: u8 = 1;
/// Proof mode: reciprocal-rank fusion of BM25 and the semantic search.
pub const MODE_HYBRID: u8 = 2;
/// Most term leaves in one proof (each query term needs at most two).
pub const MAX_TERM_LEAVES: usize = 2 * MAX_QUERY_TERMS + 2;

/// A term's posting list as a proof carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TermPostings {
    /// The complete list, node ascending (its length is the term's df).
    Full(Vec<Posting>),
    /// Only its hash (a neighbour proving another term absent, or a term over [`MAX_DF`]).
    Hash(Hash),
}

/// One leaf of the term tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermLeaf {
    /// Its position in the term tree (terms sorted by bytes).
    pub position: u64,
    /// The term.
    pub term: String,
    /// Its document frequency.
    pub df: u32,
    /// Its postings.
    pub postings: TermPostings,
}

/// The graph half of a proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphPart {
    /// Lexical mode: the graph leaves of the hits, with one multiproof.
    Nodes {
        /// Node order, strictly increasing.
        nodes: Vec<ProofNode>,
        /// Sibling hashes.
        lemmas: Vec<Hash>,
    },
    /// Hybrid mode: a complete recall proof for the semantic top-`depth` (its nodes may include the lexical
    /// hits as extra nodes).
    Search(Box<RecallProof>),
}

/// A lexical or hybrid recall proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HybridProof {
    /// The root.
    pub root: SignedRoot,
    /// [`MODE_LEXICAL`] or [`MODE_HYBRID`].
    pub mode: u8,
    /// Hits asked for.
    pub k: u32,
    /// How many candidates each ranking contributes to the fusion (and the lexical ranking's length).
    pub depth: u32,
    /// The query's terms ([`query_terms`] of the query text).
    pub terms: Vec<String>,
    /// Term leaves, position strictly increasing.
    pub leaves: Vec<TermLeaf>,
    /// Sibling hashes of the term tree.
    pub lex_lemmas: Vec<Hash>,
    /// The term tree's pages the term leaves touch (against version-3 roots, whose term tree is paged).
    pub lex_pages: Option<ChunkedPages>,
    /// The graph half.
    pub graph: GraphPart,
}

/// Writes a term tree's page descriptors when the root's term tree is paged (version 3): the root decides, so
/// a proof cannot choose the format its root does not have.
pub(crate) fn put_lex_pages(o: &mut Vec<u8>, root: &SignedRoot, pages: Option<&ChunkedPages>) {
    if root.record.paged() {
        crate::proof::put_pages(o, &pages.cloned().unwrap_or_default());
    }
}

/// Reads what [`put_lex_pages`] wrote (at most one descriptor per term leaf).
pub(crate) fn read_lex_pages(
    r: &mut Reader<'_>,
    root: &SignedRoot,
    leaves: usize,
) -> Result<Option<ChunkedPages>, VerifyError> {
    if root.record.paged() {
        Ok(Some(crate::proof::read_pages(r, leaves)?))
    } else {
        Ok(None)
    }
}

pub(crate) fn put_str16(o: &mut Vec<u8>, s: &str) {
    o.extend_from_slice(&(s.len() as u16).to_be_bytes());
    o.extend_from_slice(s.as_bytes());
}

pub(crate) fn read_term(r: &mut Reader<'_>) -> Result<String, VerifyError> {
    let n = r.u16()? as usize;
    if n == 0 || n > MAX_TERM_BYTES {
        return Err(VerifyError::Malformed("term length"));
    }
    std::str::from_utf8(r.bytes(n)?)
        .map(str::to_owned)
        .map_err(|_| VerifyError::Malformed("term utf-8"))
}

/// `u32be(n)` then per leaf `u64be(position) str16(term) u32be(df) u8(flag)` and `(u32be node, u32be tf,
/// u32be dl)×df` (flag 1) or `postings_hash[32]` (flag 0).
pub(crate) fn put_leaves(o: &mut Vec<u8>, leaves: &[TermLeaf]) {
    o.extend_from_slice(&(leaves.len() as u32).to_be_bytes());
    for l in leaves {
        o.extend_from_slice(&l.position.to_be_bytes());
        put_str16(o, &l.term);
        o.extend_from_slice(&l.df.to_be_bytes());
        match &l.postings {
            TermPostings::Full(ps) => {
                o.push(1);
                for p in ps {
                    o.extend_from_slice(&p.node.to_be_bytes());
                    o.extend_from_slice(&p.tf.to_be_bytes());
                    o.extend_from_slice(&p.dl.to_be_bytes());
                }
            }
            TermPostings::Hash(h) => {
                o.push(0);
                o.extend_from_slice(h);
            }
        }
    }
}

/// Reads what [`put_leaves`] writes, at most `max` leaves. Never panics.
pub(crate) fn read_leaves(r: &mut Reader<'_>, max: usize) -> Result<Vec<TermLeaf>, VerifyError> {
    let n = r.u32()? as usize;
    if n > max {
        return Err(VerifyError::TooLarge("term leaves"));
    }
    let mut leaves = Vec::with_capacity(n);
    for _ in 0..n {
        let position = r.u64()?;
        let term = read_term(r)?;
        let df = r.u32()?;
        let postings = match r.u8()? {
            1 => {
                if df > MAX_DF || df as usize * 12 > r.remaining() {
                    return Err(VerifyError::TooLarge("posting list"));
                }
                let mut ps = Vec::with_capacity(df as usize);
                for _ in 0..df {
                    ps.push(Posting {
                        node: r.u32()?,
                        tf: r.u32()?,
                        dl: r.u32()?,
                    });
                }
                TermPostings::Full(ps)
            }
            0 => TermPostings::Hash(r.array()?),
            _ => return Err(VerifyError::Malformed("postings flag")),
        };
        leaves.push(TermLeaf {
            position,
            term,
            df,
            postings,
        });
    }
    Ok(leaves)
}

impl HybridProof {
    /// `"CPX1" signed_root u8(mode) u32be(k) u32be(depth) u16be(t) term×t u32be(n) leaf×n u32be(l) hash×l
    /// [pages, against version-3 roots] u32be(len) graph`.
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(1024);
        o.extend_from_slice(HYBRID_MAGIC);
        o.extend_from_slice(&self.root.encode());
        o.push(self.mode);
        o.extend_from_slice(&self.k.to_be_bytes());
        o.extend_from_slice(&self.depth.to_be_bytes());
        o.extend_from_slice(&(self.terms.len() as u16).to_be_bytes());
        for t in &self.terms {
            put_str16(&mut o, t);
        }
        put_leaves(&mut o, &self.leaves);
        put_lemmas_pub(&mut o, &self.lex_lemmas);
        put_lex_pages(&mut o, &self.root, self.lex_pages.as_ref());
        let g = match &self.graph {
            GraphPart::Nodes { nodes, lemmas } => {
                let mut g = Vec::new();
                g.extend_from_slice(&(nodes.len() as u32).to_be_bytes());
                for n in nodes {
                    encode_node(&mut g, n);
                }
                put_lemmas_pub(&mut g, lemmas);
                g
            }
            GraphPart::Search(p) => p.encode(),
        };
        o.extend_from_slice(&(g.len() as u32).to_be_bytes());
        o.extend_from_slice(&g);
        o
    }

    /// Parses a proof within `lim`. Never panics.
    pub fn decode(b: &[u8], lim: &VerifyLimits) -> Result<Self, VerifyError> {
        if b.len() > lim.max_proof_bytes {
            return Err(VerifyError::TooLarge("proof bytes"));
        }
        let mut r = Reader::new(b);
        if r.bytes(4)? != HYBRID_MAGIC {
            return Err(VerifyError::Malformed("not a lexical or hybrid proof"));
        }
        let root = SignedRoot::read(&mut r)?;
        let mode = r.u8()?;
        if mode != MODE_LEXICAL && mode != MODE_HYBRID {
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
        if mode == MODE_LEXICAL && depth != k {
            return Err(VerifyError::Malformed("a lexical proof's depth is its k"));
        }
        let t = r.u16()? as usize;
        if t > MAX_QUERY_TERMS {
            return Err(VerifyError::TooLarge("query terms"));
        }
        let terms = (0..t)
            .map(|_| read_term(&mut r))
            .collect::<Result<Vec<_>, _>>()?;
        let leaves = read_leaves(&mut r, MAX_TERM_LEAVES)?;
        let lex_lemmas = read_lemmas_pub(&mut r, lim)?;
        let lex_pages = read_lex_pages(&mut r, &root, leaves.len())?;
        let glen = r.u32()? as usize;
        let g = r.bytes(glen)?;
        if !r.is_empty() {
            return Err(VerifyError::Malformed("trailing bytes"));
        }
        let graph = if mode == MODE_HYBRID {
            let p = RecallProof::decode(g, lim)?;
            if p.root != root {
                return Err(VerifyError::Malformed(
                    "the semantic proof is against another root",
                ));
            }
            GraphPart::Search(Box::new(p))
        } else {
            let mut gr = Reader::new(g);
            let count = gr.u32()? as usize;
            let dim = root.record.dim as usize;
            if count > lim.max_items || count.saturating_mul(dim / 2 + 48) > gr.remaining() {
                return Err(VerifyError::TooLarge("nodes"));
            }
            let mut nodes = Vec::with_capacity(count);
            for _ in 0..count {
                nodes.push(decode_node(&mut gr, dim)?);
            }
            let lemmas = read_lemmas_pub(&mut gr, lim)?;
            if !gr.is_empty() {
                return Err(VerifyError::Malformed("trailing bytes"));
            }
            GraphPart::Nodes { nodes, lemmas }
        };
        Ok(HybridProof {
            root,
            mode,
            k,
            depth,
            terms,
            leaves,
            lex_lemmas,
            lex_pages,
            graph,
        })
    }
}

/// What the verifier derived: the hits and the posting lists that scored them.
#[derive(Debug)]
pub struct HybridAnswer<'a> {
    /// (score as reported, graph node), best first.
    pub hits: Vec<(f32, &'a GraphNode)>,
    /// The scored query terms with their posting lists.
    pub lists: Vec<(&'a str, &'a [Posting])>,
}

/// How a wanted term resolved against the term tree.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Resolved<'a> {
    /// Its complete posting list.
    Full(&'a [Posting]),
    /// Present with more than [`MAX_DF`] postings (shown by hash only).
    OverCap,
    /// Proven absent by its neighbours.
    Absent,
}

/// Checks term leaves (order, df, postings, one multiproof against the root's term tree) and resolves each
/// wanted term: shown in full, over the cap, or proven absent. Anything else is an error.
pub(crate) fn resolve_terms<'a>(
    root: &SignedRoot,
    want: &[&str],
    leaves: &'a [TermLeaf],
    pages: Option<&ChunkedPages>,
    lemmas: &[Hash],
) -> Result<Vec<Resolved<'a>>, VerifyError> {
    let Some(lex) = root.record.lexicon else {
        return Err(VerifyError::Unsupported);
    };
    for w in leaves.windows(2) {
        if w[0].position >= w[1].position || w[0].term.as_bytes() >= w[1].term.as_bytes() {
            return Err(VerifyError::Malformed(
                "term leaves not in increasing order",
            ));
        }
    }
    let docs = root.record.time_leaves;
    let mut hashed = Vec::with_capacity(leaves.len());
    for l in leaves {
        if u64::from(l.df) > docs {
            return Err(VerifyError::Mismatch(format!(
                "term {:?} is in more memories than the namespace holds",
                l.term
            )));
        }
        let ph = match &l.postings {
            TermPostings::Full(ps) => {
                if ps.len() != l.df as usize {
                    return Err(VerifyError::Malformed(
                        "posting list length differs from df",
                    ));
                }
                for w in ps.windows(2) {
                    if w[0].node >= w[1].node {
                        return Err(VerifyError::Malformed("postings not in node order"));
                    }
                }
                if ps.iter().any(|x| x.tf == 0 || x.dl < x.tf) {
                    return Err(VerifyError::Malformed("posting with tf 0 or tf above dl"));
                }
                postings_hash(ps)
            }
            TermPostings::Hash(h) => *h,
        };
        hashed.push((l.position, term_leaf_hash(&l.term, l.df, &ph)));
    }
    if !hashed.is_empty() {
        match (root.record.paged(), pages) {
            (true, Some(p)) => {
                verify_chunked(&lex.root, lex.terms, p.pages, &p.refs, &hashed, lemmas)?
            }
            (false, _) => merkle::verify(&lex.root, lex.terms, &hashed, lemmas)?,
            (true, None) => return Err(VerifyError::Malformed("term tree pages missing")),
        }
    } else if lex.terms != 0 && !want.is_empty() {
        return Err(VerifyError::Mismatch(
            "no term leaves for a query with terms".into(),
        ));
    }
    let mut out = Vec::with_capacity(want.len());
    for t in want {
        let tb = t.as_bytes();
        if let Some(l) = leaves.iter().find(|l| l.term == *t) {
            match &l.postings {
                TermPostings::Full(ps) => out.push(Resolved::Full(ps.as_slice())),
                TermPostings::Hash(_) if l.df > MAX_DF => out.push(Resolved::OverCap),
                TermPostings::Hash(_) => {
                    return Err(VerifyError::Mismatch(format!(
                        "the postings of term {t:?} are missing"
                    )))
                }
            }
            continue;
        }
        // Absent: its neighbours in the sorted tree must both be shown (or the tree's edge).
        let below = leaves.iter().rev().find(|l| l.term.as_bytes() < tb);
        let above = leaves.iter().find(|l| l.term.as_bytes() > tb);
        let ok = match (below, above) {
            (Some(b), Some(a)) => a.position == b.position + 1,
            (Some(b), None) => b.position + 1 == lex.terms,
            (None, Some(a)) => a.position == 0,
            (None, None) => lex.terms == 0,
        };
        if !ok {
            return Err(VerifyError::Mismatch(format!(
                "term {t:?} is neither shown nor proven absent"
            )));
        }
        out.push(Resolved::Absent);
    }
    Ok(out)
}

/// True for the index versions whose text terms are tokenizer 1's.
pub(crate) fn text_tokenizer_known(t: u8) -> bool {
    t == TOKENIZER_V1 || t == TOKENIZER_V2
}

/// Resolves each query term to its posting list (None when absent or over [`MAX_DF`]) after checking the term
/// leaves against the root's term tree.
fn term_lists(p: &HybridProof) -> Result<Vec<(&str, &[Posting])>, VerifyError> {
    let Some(lex) = p.root.record.lexicon else {
        return Err(VerifyError::Unsupported);
    };
    if !text_tokenizer_known(lex.tokenizer) {
        return Err(VerifyError::Unsupported);
    }
    for (i, t) in p.terms.iter().enumerate() {
        if p.terms[..i].contains(t) {
            return Err(VerifyError::Malformed("a query term is repeated"));
        }
    }
    let want: Vec<&str> = p.terms.iter().map(String::as_str).collect();
    let resolved = resolve_terms(
        &p.root,
        &want,
        &p.leaves,
        p.lex_pages.as_ref(),
        &p.lex_lemmas,
    )?;
    Ok(want
        .into_iter()
        .zip(resolved)
        .filter_map(|(t, r)| match r {
            Resolved::Full(l) => Some((t, l)),
            _ => None,
        })
        .collect())
}

/// Checks the returned hits against the hits a proof implies: the same memories in the same order, scores equal
/// to the bit, each record matching its graph leaf (and `passes`, when the question had a filter), and each
/// record's text showing exactly the term frequencies the scored posting lists claim. One home for the hit rule
/// of lexical, hybrid and filtered answers.
pub(crate) fn check_hits(
    namespace: &str,
    implied: &[(f32, &GraphNode)],
    lists: &[(&str, &[Posting])],
    returned: &[Returned<'_>],
    scores: &[f32],
    passes: &dyn Fn(&crate::record::MemoryRecord) -> bool,
) -> Result<(), VerifyError> {
    if implied.len() != returned.len() || scores.len() != returned.len() {
        return Err(VerifyError::Mismatch(format!(
            "the proof implies {} hits, {} returned",
            implied.len(),
            returned.len()
        )));
    }
    for (i, ((score, n), r)) in implied.iter().zip(returned).enumerate() {
        if n.id != *r.id {
            return Err(VerifyError::Mismatch(format!(
                "hit {i} should be {}, got {}",
                n.id, r.id
            )));
        }
        if score.to_bits() != scores[i].to_bits() {
            return Err(VerifyError::Mismatch(format!("hit {i} has a wrong score")));
        }
        let rec = check_record_pub(r, namespace, n.created_at)?;
        if !passes(&rec) {
            return Err(VerifyError::Mismatch(format!(
                "hit {} does not pass the filter",
                r.id
            )));
        }
        check_hit_terms(&rec.text, n.node, &n.id, lists)?;
    }
    Ok(())
}

/// Checks that a hit's record text shows, for every scored term, exactly the tf its posting claims (0 when the
/// hit is not in that list) and, where it is in a list, that list's dl.
pub(crate) fn check_hit_terms(
    text: &str,
    node: u32,
    id: &crate::id::MemoryId,
    lists: &[(&str, &[Posting])],
) -> Result<(), VerifyError> {
    let doc = DocTerms::of(text);
    for (term, list) in lists {
        let claimed = list
            .binary_search_by_key(&node, |x| x.node)
            .ok()
            .map(|j| list[j]);
        let tf = doc.tf(term);
        let ok = match claimed {
            Some(c) => c.tf == tf && c.dl == doc.len,
            None => tf == 0,
        };
        if !ok {
            return Err(VerifyError::Mismatch(format!(
                "hit {id} contains {term:?} {tf} times in {} terms, its postings say otherwise",
                doc.len
            )));
        }
    }
    Ok(())
}

fn check_graph_nodes(
    p: &HybridProof,
    nodes: &[ProofNode],
    lemmas: &[Hash],
) -> Result<(), VerifyError> {
    let leaves = crate::proof::node_leaves(nodes)?;
    if !leaves.is_empty() {
        let rec = &p.root.record;
        crate::paged::verify_graph(rec, &leaves, lemmas)?;
    }
    Ok(())
}

/// Re-derives the answer a proof implies: the lexical top-k, or the fused top-k of both rankings.
pub fn hybrid_answer(p: &HybridProof) -> Result<HybridAnswer<'_>, VerifyError> {
    let lists = term_lists(p)?;
    let rec = &p.root.record;
    let corpus = Corpus {
        docs: rec.time_leaves,
        total_len: rec.lexicon.map_or(0, |l| l.total_len),
    };
    let raw: Vec<&[Posting]> = lists.iter().map(|(_, l)| *l).collect();
    let lexical = bm25_top(&raw, corpus, p.depth as usize);
    let (nodes, ranked): (Vec<&ProofNode>, Vec<(u64, u32)>) = match &p.graph {
        GraphPart::Nodes { nodes, lemmas } => {
            check_graph_nodes(p, nodes, lemmas)?;
            let mut top = lexical;
            top.truncate(p.k as usize);
            (nodes.iter().collect(), top)
        }
        GraphPart::Search(rp) => {
            if rp.k != p.depth {
                return Err(VerifyError::Mismatch(
                    "the semantic proof's k is not the fusion depth".into(),
                ));
            }
            let sem: Vec<u32> = recall_answer(rp)?.iter().map(|(_, n)| n.node).collect();
            let lex: Vec<u32> = lexical.iter().map(|x| x.1).collect();
            (rp.nodes.iter().collect(), fuse(&[&sem, &lex], p.k as usize))
        }
    };
    if rec.graph_leaves > 0 && rec.entry == NO_ENTRY && p.mode == MODE_HYBRID {
        return Err(VerifyError::Mismatch("graph without entry point".into()));
    }
    let by_node: HashMap<u32, &GraphNode> = nodes.iter().map(|n| (n.node.node, &n.node)).collect();
    let mut hits = Vec::with_capacity(ranked.len());
    for (s, node) in ranked {
        let n = by_node.get(&node).ok_or_else(|| {
            VerifyError::Mismatch(format!("the graph leaf of ranked node {node} is missing"))
        })?;
        if !n.alive {
            return Err(VerifyError::Mismatch(format!(
                "ranked node {node} is a forgotten memory"
            )));
        }
        hits.push((fixed_score(s), *n));
    }
    Ok(HybridAnswer { hits, lists })
}

/// What the client asked, to hold a lexical or hybrid proof to.
#[derive(Debug, Clone, Copy)]
pub struct HybridAsked<'a> {
    /// [`MODE_LEXICAL`] or [`MODE_HYBRID`].
    pub mode: u8,
    /// k asked.
    pub k: u32,
    /// Minimum ef of the semantic search (graph mode only).
    pub min_ef: u32,
    /// Minimum fusion depth.
    pub min_depth: u32,
    /// The query text: when given, the proof's terms must be exactly its [`query_terms`].
    pub query: Option<&'a str>,
}

/// Mode, k and fusion depth of a proof, or of a request (where `depth` is the least depth asked).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request {
    pub(crate) mode: u8,
    pub(crate) k: u32,
    pub(crate) depth: u32,
}

/// The request checks every lexical, hybrid and filtered proof shares: the mode and k asked, at least the
/// fusion depth asked when the proof fuses, and (when the query text is given with the proof's terms) the
/// proof's terms exactly those of the query.
pub(crate) fn check_request(
    proven: Request,
    asked: Request,
    fuses: bool,
    terms: Option<(&str, &[String])>,
) -> Result<(), VerifyError> {
    if proven.mode != asked.mode {
        return Err(VerifyError::Mismatch("proof is for another mode".into()));
    }
    if proven.k != asked.k {
        return Err(VerifyError::Mismatch(format!(
            "proof is for k={}, {} was asked",
            proven.k, asked.k
        )));
    }
    if fuses && proven.depth < asked.depth {
        return Err(VerifyError::Mismatch(format!(
            "proof fused {} candidates, at least {} were asked",
            proven.depth, asked.depth
        )));
    }
    if let Some((q, terms)) = terms {
        if query_terms(q) != terms {
            return Err(VerifyError::Mismatch(
                "the proof's query terms are not those of the question asked".into(),
            ));
        }
    }
    Ok(())
}

/// Verifies a lexical or hybrid Recall answer: each hit is committed and live, the ranking is exactly the
/// proof's (BM25 over complete, authenticated posting lists, fused with the replayed semantic search), each
/// score is exact, and each hit's record shows the term counts its postings claim.
pub fn verify_hybrid(
    proof: &[u8],
    namespace: &str,
    trusted: &[u8; 32],
    asked: &HybridAsked<'_>,
    returned: &[Returned<'_>],
    scores: &[f32],
    lim: &VerifyLimits,
) -> Result<Verified, VerifyError> {
    let p = HybridProof::decode(proof, lim)?;
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
        p.mode == MODE_HYBRID,
        asked.query.map(|q| (q, p.terms.as_slice())),
    )?;
    if let GraphPart::Search(rp) = &p.graph {
        if rp.mode == crate::proof::MODE_GRAPH && rp.ef < asked.min_ef {
            return Err(VerifyError::Mismatch(format!(
                "proof searched with ef={}, at least {} was asked",
                rp.ef, asked.min_ef
            )));
        }
    }
    let answer = hybrid_answer(&p)?;
    check_hits(
        namespace,
        &answer.hits,
        &answer.lists,
        returned,
        scores,
        &|_| true,
    )?;
    Ok(Verified { root: p.root })
}
