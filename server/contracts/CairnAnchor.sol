// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// @title Cairn root anchors (docs/PROOFS.md, "Anchoring", contract version 1)
/// @notice Records, per (submitter, node id, namespace), the newest anchored (seq, root hash) of a Cairn
/// namespace, and logs every anchor with the signed root record it claims. Anyone may anchor; a submitter's seq
/// for one (node id, namespace) must strictly increase. The contract does not check the ed25519 signature (too
/// costly on chain): verifiers check it off-chain and ignore anchors whose record does not verify.
contract CairnAnchor {
    /// Version of this contract's interface and rules.
    uint8 public constant VERSION = 1;

    struct Last {
        uint64 seq;
        uint64 time;
        bytes32 root;
    }

    mapping(bytes32 => Last) private last;

    /// One anchor. `nsHash` is keccak256 of the namespace's UTF-8 bytes; `time` is the block's timestamp (s);
    /// `signedRoot` is the signed root record as Cairn encodes it (u32be(len) record signature).
    event Anchored(
        bytes32 indexed nodeId,
        bytes32 indexed nsHash,
        address indexed submitter,
        uint64 seq,
        bytes32 root,
        uint64 time,
        bytes signedRoot
    );

    /// The seq is not higher than this submitter's last anchor for the same (node id, namespace).
    error SeqNotHigher(uint64 seq, uint64 last);

    function key(address submitter, bytes32 nodeId, bytes32 nsHash) internal pure returns (bytes32) {
        return keccak256(abi.encode(submitter, nodeId, nsHash));
    }

    /// Anchors `root` (a root record hash) at `seq` for (`nodeId`, `ns`), as the caller's claim.
    function anchor(bytes32 nodeId, string calldata ns, uint64 seq, bytes32 root, bytes calldata signedRoot)
        external
    {
        bytes32 nsHash = keccak256(bytes(ns));
        Last storage l = last[key(msg.sender, nodeId, nsHash)];
        if (seq <= l.seq) revert SeqNotHigher(seq, l.seq);
        uint64 time = uint64(block.timestamp);
        l.seq = seq;
        l.time = time;
        l.root = root;
        emit Anchored(nodeId, nsHash, msg.sender, seq, root, time, signedRoot);
    }

    /// The newest anchor by `submitter` for (`nodeId`, `ns`); seq 0 when there is none.
    function latest(address submitter, bytes32 nodeId, string calldata ns)
        external
        view
        returns (uint64 seq, bytes32 root, uint64 time)
    {
        Last storage l = last[key(submitter, nodeId, keccak256(bytes(ns)))];
        return (l.seq, l.root, l.time);
    }
}
