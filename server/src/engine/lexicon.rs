//! A namespace's lexical index: posting lists of every term over the live memories (by graph node number),
//! document lengths, and the term tree a root commits (docs/PROOFS.md, "Lexical index"). Updated per write:
//! only the terms a write touched are re-hashed, a long posting list that only grew at its end is hashed
//! onward from where it stopped, and the term tree is paged ([`ChunkedTree`]), so a new term re-cuts one page.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use cairn_index::hybrid::{TermLeaf, TermPostings};
use cairn_index::lexical::{
    bm25_top, postings_hash, term_leaf_hash, Corpus, Posting, MAX_DF, TOKENIZER_V1, TOKENIZER_V2,
};
use cairn_index::merkle::Hash;
use cairn_index::paged::{ChunkedPages, ChunkedTree};
use cairn_index::root::LexCommit;

use crate::store::terms::{IntoTerms, PackedTerms};

/// Posting lists at least this long keep a running hash state ([`Term::hasher`]): new memories take the highest
/// node numbers, so a common term's list grows at its end and is hashed onward instead of whole.
const RUNNING_HASH_FROM: usize = 512;

#[derive(Debug, Clone, Default)]
struct Term {
    /// The postings, node ascending (a sorted vector: 12 bytes a posting, against a map's ~3×).
    postings: Vec<Posting>,
    /// Cached postings hash and leaf hash (stale while the term is in `dirty`).
    ph: Hash,
    leaf: Hash,
    /// For long lists: the postings hash state after the first `.1` postings (dropped by any change other
    /// than an append).
    hasher: Option<Box<(blake3::Hasher, usize)>>,
}

impl Term {
    /// Sets `node`'s posting (replacing the one it had).
    fn insert(&mut self, node: u32, (tf, dl): (u32, u32)) {
        let p = Posting { node, tf, dl };
        match self.postings.binary_search_by_key(&node, |p| p.node) {
            Ok(i) => {
                self.postings[i] = p;
                self.hasher = None;
            }
            Err(i) => {
                if i < self.postings.len() {
                    self.hasher = None;
                }
                self.postings.insert(i, p);
            }
        }
    }

    /// Drops `node`'s posting, if any.
    fn remove(&mut self, node: u32) {
        if let Ok(i) = self.postings.binary_search_by_key(&node, |p| p.node) {
            self.postings.remove(i);
            self.hasher = None;
        }
    }

    /// Recomputes the postings hash ([`postings_hash`], onward from the running state for long lists) and the
    /// leaf hash.
    fn rehash(&mut self, term: &str) {
        self.ph = if self.postings.len() >= RUNNING_HASH_FROM {
            let state = self.hasher.get_or_insert_with(|| {
                let mut h = blake3::Hasher::new();
                h.update(&[0x05]);
                Box::new((h, 0))
            });
            let (h, fed) = &mut **state;
            for p in self.postings.iter().skip(*fed) {
                h.update(&p.node.to_be_bytes());
                h.update(&p.tf.to_be_bytes());
                h.update(&p.dl.to_be_bytes());
            }
            *fed = self.postings.len();
            *h.finalize().as_bytes()
        } else {
            self.hasher = None;
            postings_hash(&self.postings)
        };
        self.leaf = term_leaf_hash(term, self.postings.len() as u32, &self.ph);
    }
}

/// A memory's indexed document: its text terms and its facet terms.
pub type Doc = (Arc<PackedTerms>, Vec<String>);

/// The lexical index of one namespace.
#[derive(Debug, Clone, Default)]
pub struct Lexicon {
    /// Each live memory's text terms and facet terms (metadata pairs, index version 2).
    docs: HashMap<u32, (Arc<PackedTerms>, Vec<String>)>,
    /// Index version 1 (no facet terms): only a replica of an owner that still signs version 1 sets it.
    v1: bool,
    terms: BTreeMap<String, Term>,
    total_len: u64,
    dirty: BTreeSet<String>,
    /// Terms in tree order (kept in step with the tree).
    order: Vec<String>,
    /// Terms created or emptied since the last rebuild: each moves the positions after it.
    reshaped: BTreeSet<String>,
    tree: ChunkedTree,
}

impl Lexicon {
    /// Indexes a live memory at graph node `node` (replacing what that node held).
    /// `facets` are the memory's facet terms ([`cairn_index::lexical::facet_terms`]), indexed with postings
    /// `(node, 1, 1)` unless this is a version-1 index. The terms are shared with the memory's row, not copied
    /// (they are most of a long memory's footprint in RAM).
    pub fn add(&mut self, node: u32, doc: impl IntoTerms, facets: Vec<String>) {
        let doc = doc.into_terms();
        self.remove(node);
        for (t, tf) in doc.iter() {
            self.post(t, node, (tf, doc.len));
        }
        if !self.v1 {
            for f in &facets {
                self.post(f, node, (1, 1));
            }
        }
        self.total_len += u64::from(doc.len);
        self.docs.insert(node, (doc, facets));
    }

    /// Adds one posting to a term's list (creating the term).
    fn post(&mut self, term: &str, node: u32, tf_dl: (u32, u32)) {
        match self.terms.get_mut(term) {
            Some(t) => t.insert(node, tf_dl),
            None => {
                let mut t = Term::default();
                t.insert(node, tf_dl);
                self.terms.insert(term.to_owned(), t);
                self.reshaped.insert(term.to_owned());
            }
        }
        if !self.dirty.contains(term) {
            self.dirty.insert(term.to_owned());
        }
    }

    /// Switches between index versions 1 and 2 (a replica follows its owner's), re-indexing if it changes.
    pub fn set_version(&mut self, tokenizer: u8) {
        let v1 = tokenizer == TOKENIZER_V1;
        if v1 == self.v1 {
            return;
        }
        let docs = std::mem::take(&mut self.docs);
        *self = Lexicon {
            v1,
            ..Lexicon::default()
        };
        for (node, (doc, facets)) in docs {
            self.add(node, doc, facets);
        }
        self.rebuild();
    }

    /// The nodes of the memories carrying a facet term, node ascending; `Err(df)` when there are more than
    /// [`MAX_DF`] (a proof could not list them).
    pub fn facet_nodes(&self, facet: &str) -> Result<Vec<u32>, usize> {
        match self.terms.get(facet) {
            None => Ok(Vec::new()),
            Some(t) if t.postings.len() > MAX_DF as usize => Err(t.postings.len()),
            Some(t) => Ok(t.postings.iter().map(|p| p.node).collect()),
        }
    }

    /// Drops the memory at `node` (forgotten or replaced) from every posting list.
    pub fn remove(&mut self, node: u32) {
        let Some((doc, facets)) = self.docs.remove(&node) else {
            return;
        };
        self.total_len = self.total_len.saturating_sub(u64::from(doc.len));
        let words = doc.iter().map(|(t, _)| t);
        for t in words.chain(facets.iter().map(String::as_str)) {
            if let Some(term) = self.terms.get_mut(t) {
                term.remove(node);
                if term.postings.is_empty() {
                    self.terms.remove(t);
                    self.reshaped.insert(t.to_owned());
                }
            }
            self.dirty.insert(t.to_owned());
        }
    }

    /// Node `node`'s indexed document (terms and facet terms), if it has one (to restore it later).
    pub fn doc(&self, node: u32) -> Option<Doc> {
        self.docs.get(&node).cloned()
    }

    /// An empty index of the same version.
    pub fn clone_empty(&self) -> Self {
        Lexicon {
            v1: self.v1,
            ..Lexicon::default()
        }
    }

    /// Forgets everything (a replica starting over).
    pub fn clear(&mut self) {
        *self = self.clone_empty();
    }

    /// Re-hashes the touched terms' leaves and brings the term tree up to date: terms created or emptied are
    /// inserted into or removed from it where they sort, changed leaves are replaced, and the tree re-cuts the
    /// pages that changed. Many new or dropped terms at once (start-up, a large import) build it afresh.
    pub fn rebuild(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        let reshaped = std::mem::take(&mut self.reshaped);
        for t in &dirty {
            if let Some(term) = self.terms.get_mut(t) {
                term.rehash(t);
            }
        }
        if self.tree.is_empty() || reshaped.len() > 1024.max(self.order.len() / 16) {
            self.order = self.terms.keys().cloned().collect();
            let leaves: Vec<Hash> = self.terms.values().map(|t| t.leaf).collect();
            self.tree = ChunkedTree::build(&leaves);
            return;
        }
        let find =
            |order: &[String], t: &str| order.binary_search_by(|o| o.as_bytes().cmp(t.as_bytes()));
        for t in &reshaped {
            match (self.terms.get(t), find(&self.order, t)) {
                (None, Ok(at)) => {
                    self.order.remove(at);
                    self.tree.remove(at as u64);
                }
                (Some(term), Err(at)) => {
                    self.order.insert(at, t.clone());
                    self.tree.insert(at as u64, term.leaf);
                }
                _ => {}
            }
        }
        for t in &dirty {
            if let (Some(term), Ok(at)) = (self.terms.get(t), find(&self.order, t)) {
                self.tree.set(at as u64, term.leaf);
            }
        }
        self.tree.commit();
    }

    /// What the root commits.
    pub fn commit(&self) -> LexCommit {
        LexCommit {
            tokenizer: if self.v1 { TOKENIZER_V1 } else { TOKENIZER_V2 },
            terms: self.tree.len(),
            root: self.tree.root(),
            total_len: self.total_len,
        }
    }

    /// Sum of the live memories' lengths.
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// The scored posting lists of `terms` (absent terms and terms over [`MAX_DF`] skipped).
    fn lists(&self, terms: &[String]) -> Vec<&[Posting]> {
        terms
            .iter()
            .filter_map(|t| self.terms.get(t))
            .filter(|t| t.postings.len() <= MAX_DF as usize)
            .map(|t| t.postings.as_slice())
            .collect()
    }

    /// The BM25 top-`depth` (score, node) for `terms` over `docs` live memories.
    pub fn rank(&self, terms: &[String], docs: u64, depth: usize) -> Vec<(u64, u32)> {
        bm25_top(
            &self.lists(terms),
            Corpus {
                docs,
                total_len: self.total_len,
            },
            depth,
        )
    }

    /// The term leaves a proof needs for `terms` (each present term with its postings, each absent term's
    /// neighbours), the term tree's pages they touch and their multiproof. None if the tree is stale.
    pub fn prove(&self, terms: &[String]) -> Option<(Vec<TermLeaf>, ChunkedPages, Vec<Hash>)> {
        let mut want: BTreeMap<usize, bool> = BTreeMap::new();
        let n = self.order.len();
        for t in terms {
            match self
                .order
                .binary_search_by(|o| o.as_bytes().cmp(t.as_bytes()))
            {
                Ok(i) => {
                    want.insert(i, true);
                }
                Err(i) => {
                    if i > 0 {
                        want.entry(i - 1).or_insert(false);
                    }
                    if i < n {
                        want.entry(i).or_insert(false);
                    }
                }
            }
        }
        let mut leaves = Vec::with_capacity(want.len());
        for (&i, &full) in &want {
            let term = self.order.get(i)?;
            let t = self.terms.get(term)?;
            let list = &t.postings;
            let df = list.len() as u32;
            let postings = if full && df <= MAX_DF {
                TermPostings::Full(list.clone())
            } else {
                TermPostings::Hash(t.ph)
            };
            leaves.push(TermLeaf {
                position: i as u64,
                term: term.clone(),
                df,
                postings,
            });
        }
        let idx: Vec<u64> = leaves.iter().map(|l| l.position).collect();
        let (refs, lemmas) = if idx.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            self.tree.prove(&idx).ok()?
        };
        let pages = ChunkedPages {
            pages: self.tree.pages(),
            refs,
        };
        Some((leaves, pages, lemmas))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_index::lexical::DocTerms;

    #[test]
    fn incremental_updates_equal_a_fresh_build() {
        let texts = [
            "Caroline went to Paris in May",
            "Melanie paints sunsets by the lake",
            "Caroline adopted a dog named Paris",
            "the lake froze in January",
        ];
        let mut a = Lexicon::default();
        for (i, t) in texts.iter().enumerate() {
            a.add(i as u32, DocTerms::of(t), Vec::new());
            a.rebuild();
        }
        a.remove(1);
        a.rebuild();
        let mut b = Lexicon::default();
        for i in [0usize, 2, 3] {
            b.add(i as u32, DocTerms::of(texts[i]), Vec::new());
        }
        b.rebuild();
        assert_eq!(a.commit(), b.commit());
        assert!(!a.terms.contains_key("melanie"));
        // Same terms, other counts: only the touched leaves are re-hashed in place, to the same tree.
        a.add(
            0,
            DocTerms::of("Caroline Caroline went to Paris in May"),
            Vec::new(),
        );
        a.rebuild();
        assert!(a.reshaped.is_empty());
        b.add(
            0,
            DocTerms::of("Caroline Caroline went to Paris in May"),
            Vec::new(),
        );
        let mut fresh = Lexicon::default();
        for (i, t) in [
            (0usize, "Caroline Caroline went to Paris in May"),
            (2, texts[2]),
            (3, texts[3]),
        ] {
            fresh.add(i as u32, DocTerms::of(t), Vec::new());
        }
        fresh.rebuild();
        assert_eq!(a.commit(), fresh.commit());
        assert_eq!(a.tree.root(), fresh.tree.root());
        let top = a.rank(&cairn_index::lexical::query_terms("Paris Caroline"), 3, 10);
        assert_eq!(top.len(), 2);
    }

    /// Many small writes (new terms landing anywhere in term order, lists long enough for the running hash,
    /// forgets in the middle of long lists) keep the paged term tree and every leaf equal to a fresh build.
    #[test]
    fn many_small_writes_equal_a_fresh_build() {
        let text = |i: usize| {
            format!(
                "common words here term{} w{} x{}",
                i % 97,
                i * 7919 % 1009,
                i
            )
        };
        let mut a = Lexicon::default();
        for i in 0..1500usize {
            a.add(i as u32, DocTerms::of(&text(i)), Vec::new());
            a.rebuild();
            if i % 211 == 100 {
                a.remove((i / 2) as u32);
                a.rebuild();
            }
        }
        let mut b = Lexicon::default();
        for i in 0..1500usize {
            if !(0..1500usize).any(|j| j % 211 == 100 && j / 2 == i) {
                b.add(i as u32, DocTerms::of(&text(i)), Vec::new());
            }
        }
        b.rebuild();
        assert!(a.terms["common"].postings.len() >= RUNNING_HASH_FROM);
        assert_eq!(a.commit(), b.commit());
        assert_eq!(a.order, b.order);
        for (t, term) in &a.terms {
            assert_eq!(term.ph, postings_hash(&term.postings), "{t}");
        }
    }

    /// A replica follows the index version its owner signs: switching to version 1 drops the facet terms (the
    /// commit equals a version-1 index of the same texts), and switching back restores them exactly.
    #[test]
    fn switching_index_versions_drops_and_restores_facet_terms() {
        let (k, v) = ("speaker".to_owned(), "alice".to_owned());
        let docs = [
            ("Caroline went to Paris in May", vec![(&k, &v)]),
            ("Melanie paints sunsets by the lake", vec![]),
        ];
        let build = |v1: bool| {
            let mut l = Lexicon {
                v1,
                ..Lexicon::default()
            };
            for (i, (t, pairs)) in docs.iter().enumerate() {
                l.add(
                    i as u32,
                    DocTerms::of(t),
                    cairn_index::lexical::facet_terms(pairs.iter().copied()),
                );
            }
            l.rebuild();
            l
        };
        let mut two = build(false);
        let v2 = two.commit();
        let v1 = build(true).commit();
        assert_eq!(v2.tokenizer, TOKENIZER_V2);
        assert_eq!(v1.tokenizer, TOKENIZER_V1);
        assert_eq!(v2.terms, v1.terms + 1, "one facet term in version 2");
        let facet = cairn_index::lexical::facet_terms([(&k, &v)]);
        assert_eq!(two.facet_nodes(&facet[0]), Ok(vec![0]));
        two.set_version(TOKENIZER_V1);
        assert_eq!(two.commit(), v1);
        assert_eq!(two.facet_nodes(&facet[0]), Ok(vec![]));
        two.set_version(TOKENIZER_V2);
        assert_eq!(two.commit(), v2);
        assert_eq!(two.facet_nodes(&facet[0]), Ok(vec![0]));
    }

    #[test]
    fn a_term_over_the_df_cap_is_not_ranked_and_its_list_not_shipped() {
        let mut l = Lexicon::default();
        for n in 0..=MAX_DF {
            l.add(n, DocTerms::of("weather report"), Vec::new());
        }
        l.add(
            MAX_DF + 1,
            DocTerms::of("weather report about volcanoes"),
            Vec::new(),
        );
        l.rebuild();
        let terms = cairn_index::lexical::query_terms("weather volcanoes");
        let docs = u64::from(MAX_DF) + 2;
        // "weather" is in every memory, over the cap: only "volcano" ranks.
        assert_eq!(
            l.rank(&terms, docs, 10)
                .iter()
                .map(|x| x.1)
                .collect::<Vec<_>>(),
            vec![MAX_DF + 1]
        );
        let (leaves, _, _) = l.prove(&terms).expect("prove");
        let weather = leaves.iter().find(|x| x.term == "weather").expect("leaf");
        assert_eq!(weather.df, MAX_DF + 2);
        assert!(matches!(weather.postings, TermPostings::Hash(_)));
    }
}
