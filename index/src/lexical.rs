//! The committed lexical index (docs/PROOFS.md, "Lexical index"): the deterministic tokenizer, term leaves
//! over posting lists, the fixed-point BM25 scorer and reciprocal-rank fusion. Node and verifier share this one
//! implementation, so their rankings agree to the bit.

use crate::merkle::{leaf_hash, Hash};

/// Tokenizer code committed in version-2 roots: lowercase, split on non-alphanumerics, drop one-letter tokens
/// and the fixed English stopword list, Snowball English stems (see [`tokenize`]).
pub const TOKENIZER_V1: u8 = 1;
/// Index version 2: tokenizer 1's text terms plus one facet term per metadata pair ([`facet_term`]).
pub const TOKENIZER_V2: u8 = 2;
/// Longest indexed term, in bytes; longer tokens are dropped.
pub const MAX_TERM_BYTES: usize = 64;
/// Most distinct terms a query uses (the first ones, in order of appearance).
pub const MAX_QUERY_TERMS: usize = 32;
/// A term whose posting list is longer than this is skipped by every lexical query (its idf is low and its
/// list would make proofs large). The proof still shows its document frequency.
pub const MAX_DF: u32 = 10_000;
/// Fractional bits of the fixed-point BM25 arithmetic.
pub const FRAC_BITS: u32 = 16;
/// The reciprocal-rank fusion constant (score = Σ 2^32 / (RRF_K + rank)). 10 rather than the customary 60: with
/// 60, memories ranked deep in both lists outrank the top of either (LoCoMo evidence recall@10 0.580 against 0.668
/// with 10, SciFact nDCG@10 0.715 against 0.722; docs/BENCHMARKS.md).
pub const RRF_K: u64 = 10;

/// The fixed English stopword list (NLTK's English list), dropped from documents and queries.
pub const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "ain",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "aren",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "couldn",
    "d",
    "did",
    "didn",
    "do",
    "does",
    "doesn",
    "doing",
    "don",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "hadn",
    "has",
    "hasn",
    "have",
    "haven",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "isn",
    "it",
    "its",
    "itself",
    "just",
    "ll",
    "m",
    "ma",
    "me",
    "mightn",
    "more",
    "most",
    "mustn",
    "my",
    "myself",
    "needn",
    "no",
    "nor",
    "not",
    "now",
    "o",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "re",
    "s",
    "same",
    "shan",
    "she",
    "should",
    "shouldn",
    "so",
    "some",
    "such",
    "t",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "ve",
    "very",
    "was",
    "wasn",
    "we",
    "were",
    "weren",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "won",
    "wouldn",
    "y",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
];

fn is_stopword(t: &str) -> bool {
    STOPWORDS.binary_search(&t).is_ok()
}

/// The index terms of a text, in order, repeats kept: the text is lowercased (Unicode full lowercase
/// mapping), split into maximal runs of alphanumeric characters (Unicode Alphabetic or Numeric), a run is
/// kept unless it is one non-digit character, longer than [`MAX_TERM_BYTES`], or a stopword, and each kept run
/// becomes its Snowball English (Porter2) stem.
pub fn tokenize(text: &str) -> Vec<String> {
    let stemmer = rust_stemmers::Stemmer::create(rust_stemmers::Algorithm::English);
    let lower = text.to_lowercase();
    lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| {
            let mut cs = t.chars();
            match (cs.next(), cs.next()) {
                (None, _) => false,
                (Some(c), None) => c.is_numeric(),
                _ => t.len() <= MAX_TERM_BYTES && !is_stopword(t),
            }
        })
        .map(|t| stemmer.stem(t).into_owned())
        .collect()
}

/// A document's contribution to the index: each distinct term with its frequency (sorted by term bytes) and
/// the document length (number of terms, repeats counted).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DocTerms {
    /// (term, tf), strictly increasing by term bytes.
    pub terms: Vec<(String, u32)>,
    /// Number of index terms in the document.
    pub len: u32,
}

impl DocTerms {
    /// Tokenizes a memory's text.
    pub fn of(text: &str) -> Self {
        let mut toks = tokenize(text);
        let len = u32::try_from(toks.len()).unwrap_or(u32::MAX);
        toks.sort_unstable();
        let mut terms: Vec<(String, u32)> = Vec::new();
        for t in toks {
            match terms.last_mut() {
                Some((last, n)) if *last == t => *n = n.saturating_add(1),
                _ => terms.push((t, 1)),
            }
        }
        DocTerms { terms, len }
    }

    /// The frequency of `term` in the document (0 if absent).
    pub fn tf(&self, term: &str) -> u32 {
        self.terms
            .binary_search_by(|(t, _)| t.as_str().cmp(term))
            .map_or(0, |i| self.terms[i].1)
    }
}

/// The distinct terms of a query, in order of first appearance, at most [`MAX_QUERY_TERMS`].
pub fn query_terms(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in tokenize(text) {
        if out.len() == MAX_QUERY_TERMS {
            break;
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// The term a metadata pair is indexed under (index version 2): `U+0000` followed by the lowercase hex of the
/// first 16 bytes of `BLAKE3("CMF1" ‖ u32be(len key) ‖ key ‖ value)`. Text terms are alphanumeric, so a facet
/// term never equals one; facet terms sort before every text term. Its postings are `(node, 1, 1)`.
pub fn facet_term(key: &str, value: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"CMF1");
    h.update(&(key.len() as u32).to_be_bytes());
    h.update(key.as_bytes());
    h.update(value.as_bytes());
    let d = h.finalize();
    let mut t = String::with_capacity(33);
    t.push('\u{0}');
    for b in &d.as_bytes()[..16] {
        t.push_str(&format!("{b:02x}"));
    }
    t
}

/// The facet terms of a memory's metadata, sorted and distinct.
pub fn facet_terms<'a>(pairs: impl IntoIterator<Item = (&'a String, &'a String)>) -> Vec<String> {
    let mut v: Vec<String> = pairs.into_iter().map(|(k, v)| facet_term(k, v)).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// One entry of a term's posting list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Posting {
    /// The memory's graph node number.
    pub node: u32,
    /// Occurrences of the term in the memory.
    pub tf: u32,
    /// The memory's length in terms.
    pub dl: u32,
}

/// `BLAKE3(0x05 ‖ (u32be(node) u32be(tf) u32be(dl))×df)`.
pub fn postings_hash(postings: &[Posting]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[0x05]);
    for p in postings {
        h.update(&p.node.to_be_bytes());
        h.update(&p.tf.to_be_bytes());
        h.update(&p.dl.to_be_bytes());
    }
    *h.finalize().as_bytes()
}

/// Term leaf bytes: `"CLT1" ‖ u16be(len) term ‖ u32be(df) ‖ postings_hash[32]`.
pub fn term_leaf_bytes(term: &str, df: u32, postings: &Hash) -> Vec<u8> {
    let mut o = Vec::with_capacity(4 + 2 + term.len() + 4 + 32);
    o.extend_from_slice(b"CLT1");
    o.extend_from_slice(&(term.len() as u16).to_be_bytes());
    o.extend_from_slice(term.as_bytes());
    o.extend_from_slice(&df.to_be_bytes());
    o.extend_from_slice(postings);
    o
}

/// The Merkle leaf hash of a term.
pub fn term_leaf_hash(term: &str, df: u32, postings: &Hash) -> Hash {
    leaf_hash(&term_leaf_bytes(term, df, postings))
}

/// `log2(x)` in fixed point with [`FRAC_BITS`] fractional bits, truncated (x ≥ 1; 0 gives 0). Integer only:
/// the integer part is the bit length − 1, and each fractional bit comes from squaring the mantissa.
pub fn log2_fixed(x: u64) -> u64 {
    if x == 0 {
        return 0;
    }
    let n = 63 - u64::from(x.leading_zeros());
    // Mantissa in [2^32, 2^33): x / 2^n with 32 fractional bits.
    let mut m: u128 = (u128::from(x) << 32) >> n;
    let mut out = n << FRAC_BITS;
    for bit in (0..FRAC_BITS).rev() {
        m = (m * m) >> 32;
        if m >= 1u128 << 33 {
            m >>= 1;
            out |= 1 << bit;
        }
    }
    out
}

/// BM25 idf in fixed point: `log2((2N + 2) / (2·df + 1))`, which is `log2(1 + (N − df + 0.5)/(df + 0.5))`.
pub fn idf_fixed(n_docs: u64, df: u64) -> u64 {
    log2_fixed(n_docs.saturating_mul(2).saturating_add(2))
        .saturating_sub(log2_fixed(df.saturating_mul(2).saturating_add(1)))
}

/// BM25 term-frequency part with k1 = 1.2, b = 0.75 in fixed point:
/// `floor(22·tf·T·2^16 / (10·tf·T + 3·T + 9·dl·N))` where T is the total length and N the document count
/// (that is `tf·(k1+1) / (tf + k1·(1 − b + b·dl/avgdl))`). 0 when the denominator is 0.
pub fn tf_fixed(tf: u32, dl: u32, n_docs: u64, total_len: u64) -> u64 {
    let (tf, dl, n, t) = (
        u128::from(tf),
        u128::from(dl),
        u128::from(n_docs),
        u128::from(total_len),
    );
    let den = 10 * tf * t + 3 * t + 9 * dl * n;
    if den == 0 {
        return 0;
    }
    u64::try_from(((22 * tf * t) << FRAC_BITS) / den).unwrap_or(u64::MAX)
}

/// Corpus statistics BM25 needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corpus {
    /// Number of live memories (the root's `time_leaves`).
    pub docs: u64,
    /// Sum of their lengths (the root's `lex_total`).
    pub total_len: u64,
}

/// The BM25 top-`depth` over the given posting lists (one per scored query term): (score, node) by score
/// descending, then node ascending; memories scoring 0 are not ranked. Scores are sums of
/// `idf_fixed(df) · tf_fixed(...)` over the terms, in u64 (saturating).
pub fn bm25_top(lists: &[&[Posting]], corpus: Corpus, depth: usize) -> Vec<(u64, u32)> {
    bm25_top_among(lists, corpus, depth, &|_| true)
}

/// [`bm25_top`] over the memories `keep` accepts only (a filtered recall); each term's idf stays that of its
/// whole list.
pub fn bm25_top_among(
    lists: &[&[Posting]],
    corpus: Corpus,
    depth: usize,
    keep: &dyn Fn(u32) -> bool,
) -> Vec<(u64, u32)> {
    let mut acc: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
    for list in lists {
        let idf = idf_fixed(corpus.docs, list.len() as u64);
        for p in list.iter().filter(|p| keep(p.node)) {
            let s = idf.saturating_mul(tf_fixed(p.tf, p.dl, corpus.docs, corpus.total_len));
            let e = acc.entry(p.node).or_insert(0);
            *e = e.saturating_add(s);
        }
    }
    let mut scored: Vec<(u64, u32)> = acc
        .into_iter()
        .filter(|&(_, s)| s > 0)
        .map(|(n, s)| (s, n))
        .collect();
    scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.truncate(depth);
    scored
}

/// Reciprocal-rank fusion of ranked node lists: each node scores `Σ floor(2^32 / (RRF_K + rank))` over the
/// lists it is in (rank from 1); the top `k` by score descending, then node ascending.
pub fn fuse(lists: &[&[u32]], k: usize) -> Vec<(u64, u32)> {
    let mut acc: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
    for list in lists {
        for (i, &n) in list.iter().enumerate() {
            let s = (1u64 << 32) / (RRF_K + i as u64 + 1);
            let e = acc.entry(n).or_insert(0);
            *e = e.saturating_add(s);
        }
    }
    let mut scored: Vec<(u64, u32)> = acc.into_iter().map(|(n, s)| (s, n)).collect();
    scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.truncate(k);
    scored
}

/// A fixed-point score as the f32 a hit reports: `(s as f32) / 2^32`.
pub fn fixed_score(s: u64) -> f32 {
    (s as f32) / 4_294_967_296.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopwords_are_sorted_for_binary_search() {
        assert!(STOPWORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn tokenizer_vectors() {
        assert_eq!(
            tokenize("Caroline's trip to Paris, on 7 May 2023 — ÉTÉ naïve x3!"),
            vec!["carolin", "trip", "pari", "7", "may", "2023", "été", "naïv", "x3"]
        );
        assert_eq!(
            tokenize("researching adoption agencies; she researched"),
            vec!["research", "adopt", "agenc", "research"]
        );
        assert_eq!(tokenize("I am what I am."), Vec::<String>::new());
        // Porter2 stems (the same as Python's snowballstemmer 3.1.1 gives for these words).
        assert_eq!(
            tokenize("fruitlessly generously dying skies news ugly"),
            vec!["fruitless", "generous", "die", "sky", "news", "ugli"]
        );
        assert_eq!(
            query_terms("paris Paris PARIS london"),
            vec!["pari", "london"]
        );
        let d = DocTerms::of("the cats saw the other cat");
        assert_eq!(d.terms, vec![("cat".into(), 2), ("saw".into(), 1)]);
        assert_eq!(d.len, 3);
        assert_eq!(d.tf("cat"), 2);
        assert_eq!(d.tf("dog"), 0);
    }

    #[test]
    fn fixed_point_vectors() {
        assert_eq!(log2_fixed(1), 0);
        assert_eq!(log2_fixed(2), 1 << 16);
        assert_eq!(log2_fixed(1024), 10 << 16);
        assert_eq!(log2_fixed(3), 103_872); // log2(3) = 1.58496… → 1.58496 · 65536 = 103872.3
        for x in [3u64, 5, 7, 1000, 123_456_789, u64::MAX] {
            let exact = (x as f64).log2() * 65536.0;
            let got = log2_fixed(x) as f64;
            assert!(
                exact - got >= -1e-6 && exact - got < 2.0,
                "{x}: {got} vs {exact}"
            );
        }
        assert_eq!(idf_fixed(100, 1), log2_fixed(202) - log2_fixed(3));
        assert_eq!(
            tf_fixed(1, 10, 100, 1000),
            ((22u64 * 1000) << 16) / (10 * 1000 + 3 * 1000 + 9 * 10 * 100)
        );
        assert_eq!(tf_fixed(1, 1, 0, 0), 0);
    }

    #[test]
    fn fusion_ranks_and_breaks_ties_by_node() {
        let a = [5u32, 1, 2];
        let b = [1u32, 5, 9];
        let f = fuse(&[&a, &b], 4);
        assert_eq!(f.iter().map(|x| x.1).collect::<Vec<_>>(), vec![1, 5, 2, 9]);
        let p = |node, tf, dl| Posting { node, tf, dl };
        let top = bm25_top(
            &[&[p(3, 1, 5), p(4, 2, 5)], &[p(3, 1, 5)]],
            Corpus {
                docs: 10,
                total_len: 50,
            },
            10,
        );
        assert_eq!(top[0].1, 3);
        assert_eq!(top.len(), 2);
    }
}
