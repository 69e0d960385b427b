//! The Recall builder: query, k, filters and search breadth, then `send`.

use cairn_proto::v1 as pb;

use crate::Error;

/// A Recall being put together; created by [`crate::CairnClient::recall`].
#[derive(Debug)]
#[must_use = "a RecallBuilder does nothing until .send() is awaited"]
pub struct RecallBuilder {
    client: crate::connect::Raw,
    req: pb::RecallRequest,
}

impl RecallBuilder {
    pub(crate) fn new(
        client: crate::connect::Raw,
        namespace: &str,
        query: Option<pb::recall_request::Query>,
    ) -> Self {
        RecallBuilder {
            client,
            req: pb::RecallRequest {
                namespace: namespace.to_owned(),
                query,
                k: 0,
                filter: None,
                ef: 0,
                exact: false,
                proof: false,
                prefix: false,
                mode: pb::RecallMode::Default as i32,
                depth: 0,
                text_vector: None,
            },
        }
    }

    /// Treats the namespace as a prefix: searches every namespace under it (`""`: all), hits merged by score.
    pub fn prefix(mut self, prefix: bool) -> Self {
        self.req.prefix = prefix;
        self
    }

    /// How to rank: semantic, lexical (BM25) or hybrid (their reciprocal-rank fusion). Default: the node's
    /// (`--recall-mode`) for a text query without filters.
    pub fn mode(mut self, mode: pb::RecallMode) -> Self {
        self.req.mode = mode as i32;
        self
    }

    /// The query text's vector, made with the namespace's model (a Recall by text only): the node ranks
    /// semantically with it and embeds nothing. For a namespace of an external model this is how a text query
    /// ranks semantically or in hybrid mode.
    pub fn text_vector(mut self, vector: Vec<f32>) -> Self {
        self.req.text_vector = Some(pb::Vector { values: vector });
        self
    }

    /// Lexical and hybrid: candidates each ranking contributes (default: the node's, 50).
    pub fn depth(mut self, depth: u32) -> Self {
        self.req.depth = depth;
        self
    }

    /// How many hits (1..=1000; default 10).
    pub fn k(mut self, k: u32) -> Self {
        self.req.k = k;
        self
    }

    /// HNSW search breadth for this call (default: the node's).
    pub fn ef(mut self, ef: u32) -> Self {
        self.req.ef = ef;
        self
    }

    /// Exact search: score every memory that passes the filter (slower on big namespaces; for audits).
    pub fn exact(mut self, exact: bool) -> Self {
        self.req.exact = exact;
        self
    }

    fn filter(&mut self) -> &mut pb::Filter {
        self.req.filter.get_or_insert_with(Default::default)
    }

    /// Only memories whose metadata has `key` = `value`. Several calls AND together.
    pub fn where_eq(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.filter().metadata.insert(key.into(), value.into());
        self
    }

    /// Only memories created at or after `ms`.
    pub fn since(mut self, ms: u64) -> Self {
        self.filter().since = Some(ms);
        self
    }

    /// Only memories created before `ms`.
    pub fn until(mut self, ms: u64) -> Self {
        self.filter().until = Some(ms);
        self
    }

    /// Asks for a proof (see [`crate::verify::recall`]; with a filter, [`crate::verify::recall_filtered`]).
    pub fn proof(mut self, proof: bool) -> Self {
        self.req.proof = proof;
        self
    }

    /// The filter as the verifier holds it ([`crate::verify::filter_of`]).
    pub fn filter_asked(&self) -> crate::verify::RecallFilter {
        crate::verify::filter_of(self.req.filter.as_ref())
    }

    /// Runs the Recall and returns the whole response (hits, and the proof if asked for).
    pub async fn send_full(mut self) -> Result<pb::RecallResponse, Error> {
        Ok(self.client.recall(self.req).await?.into_inner())
    }

    /// Runs the Recall; hits come best first.
    pub async fn send(mut self) -> Result<Vec<pb::Hit>, Error> {
        Ok(self.client.recall(self.req).await?.into_inner().hits)
    }
}
