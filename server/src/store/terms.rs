//! A memory's index terms as the node keeps them in RAM: every term in one string with (end, tf) pairs beside it,
//! so a long memory's ~100 terms cost about 15 bytes each instead of a `String` apiece (~64 bytes with the pair).
//! Shared (`Arc`) by the memory's row and the namespace's lexical index.

use std::sync::Arc;

use cairn_index::lexical::DocTerms;

/// A memory's index terms (term ascending, each with its count) and its length in terms; the packed form of
/// [`DocTerms`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackedTerms {
    text: Box<str>,
    /// Per term: its end offset in `text` and its count in the memory.
    ends: Box<[(u32, u32)]>,
    /// Number of index terms in the memory, repeats counted ([`DocTerms::len`]).
    pub len: u32,
}

impl PackedTerms {
    /// Packs `terms` (in their order) with the memory's length.
    pub fn new<'a>(terms: impl IntoIterator<Item = (&'a str, u32)>, len: u32) -> Self {
        let mut text = String::new();
        let mut ends = Vec::new();
        for (t, tf) in terms {
            text.push_str(t);
            ends.push((u32::try_from(text.len()).unwrap_or(u32::MAX), tf));
        }
        PackedTerms {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
            len,
        }
    }

    /// The terms with their counts, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u32)> + '_ {
        let mut start = 0usize;
        self.ends.iter().map(move |&(end, tf)| {
            let end = end as usize;
            let t = self.text.get(start..end).unwrap_or("");
            start = end;
            (t, tf)
        })
    }

    /// How many distinct terms.
    pub fn count(&self) -> usize {
        self.ends.len()
    }
}

impl From<&DocTerms> for PackedTerms {
    fn from(d: &DocTerms) -> Self {
        PackedTerms::new(d.terms.iter().map(|(t, tf)| (t.as_str(), *tf)), d.len)
    }
}

/// Anything a memory's shared terms can be made from (a tokenized text, or terms already packed).
pub trait IntoTerms {
    /// The shared packed terms.
    fn into_terms(self) -> Arc<PackedTerms>;
}

impl IntoTerms for DocTerms {
    fn into_terms(self) -> Arc<PackedTerms> {
        Arc::new(PackedTerms::from(&self))
    }
}

impl IntoTerms for PackedTerms {
    fn into_terms(self) -> Arc<PackedTerms> {
        Arc::new(self)
    }
}

impl IntoTerms for Arc<PackedTerms> {
    fn into_terms(self) -> Arc<PackedTerms> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_keeps_every_term_and_count_in_order() {
        let d = DocTerms::of("Caroline went to Lisbon, then Lisbon again; café au lait in Zürich");
        let p = PackedTerms::from(&d);
        let back: Vec<(String, u32)> = p.iter().map(|(t, tf)| (t.to_owned(), tf)).collect();
        assert_eq!(back, d.terms);
        assert_eq!(p.len, d.len);
        assert_eq!(p.count(), d.terms.len());
        assert_eq!(PackedTerms::default().iter().count(), 0);
    }
}
