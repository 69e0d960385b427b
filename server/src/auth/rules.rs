//! The one table that says what each RPC of `cairn.v1.Cairn` needs. The service looks every call up here
//! (a method missing from the table is refused), docs/SECURITY.md prints the same table, and a test compares
//! it with the service's methods as gRPC reflection publishes them.

use super::Right;

/// What a call needs from its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: open to anyone who reaches the port.
    Open,
    /// A valid token; the answer holds only what the token covers (any right on a namespace).
    Filtered,
    /// `right` on the namespace the request names.
    Namespace(Right),
    /// `right` node-wide: on every namespace (a token whose prefixes include the empty one).
    Node(Right),
}

/// Every RPC and what it needs, in the order of the proto file.
pub const RULES: &[(&str, Need)] = &[
    ("Remember", Need::Namespace(Right::Write)),
    ("Recall", Need::Namespace(Right::Read)),
    ("Get", Need::Namespace(Right::Read)),
    ("List", Need::Namespace(Right::Read)),
    ("Forget", Need::Namespace(Right::Forget)),
    // Computes with the node's model but touches no namespace: any valid token.
    ("Embed", Need::Filtered),
    // With a namespace: read on it; without: only namespaces the token can read.
    ("Stats", Need::Filtered),
    ("ListNamespaces", Need::Filtered),
    // A root names a namespace and its size and activity: read on it.
    ("GetRoot", Need::Namespace(Right::Read)),
    ("WatchRoots", Need::Namespace(Right::Read)),
    // The node id, model, version and p2p ticket: what a client needs to pin the node before it has a token.
    ("NodeInfo", Need::Open),
    ("AddPeer", Need::Node(Right::Admin)),
    ("ListPeers", Need::Node(Right::Admin)),
    ("Follow", Need::Namespace(Right::Admin)),
    // Evidence against owners, kept by the node: node-wide admin.
    ("Alerts", Need::Node(Right::Admin)),
    ("Snapshot", Need::Namespace(Right::Admin)),
    ("RemovePeer", Need::Node(Right::Admin)),
    ("Unfollow", Need::Namespace(Right::Admin)),
    // Admin on every prefix the new token would cover (checked per prefix).
    ("MintToken", Need::Filtered),
    ("RevokeToken", Need::Node(Right::Admin)),
    // Admin on the prefix shared (node-wide for the empty prefix).
    ("Share", Need::Namespace(Right::Admin)),
    ("Unshare", Need::Namespace(Right::Admin)),
    // Only grants under prefixes the token administers.
    ("ListShares", Need::Filtered),
    // Creating is writing: the namespace's first root is signed.
    ("CreateNamespace", Need::Namespace(Right::Write)),
    // Re-embeds and re-signs the whole namespace under another model: the operator's decision.
    ("Migrate", Need::Namespace(Right::Admin)),
];

/// What `method` needs, or `None` if the table does not know it (the caller refuses it).
pub fn need(method: &str) -> Option<Need> {
    RULES.iter().find(|(m, _)| *m == method).map(|(_, n)| *n)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    /// The table names exactly the methods the node publishes through gRPC reflection (the same descriptor set
    /// the reflection service serves), so a new RPC cannot ship without a rule.
    #[test]
    fn table_covers_every_published_method() {
        let set = prost_types::FileDescriptorSet::decode(cairn_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set decodes");
        let mut published: Vec<String> = set
            .file
            .iter()
            .flat_map(|f| f.service.iter())
            .filter(|s| s.name() == "Cairn")
            .flat_map(|s| s.method.iter().map(|m| m.name().to_owned()))
            .collect();
        published.sort();
        let mut table: Vec<String> = super::RULES.iter().map(|(m, _)| m.to_string()).collect();
        table.sort();
        assert!(!published.is_empty());
        assert_eq!(published, table, "every RPC needs exactly one rule");
    }
}
