"""Every test vector of docs/PROOFS.md, checked by the independent Python verifier."""

import struct

import blake3
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cairn.verifier import (
    Record,
    VerifyError,
    check_fresh,
    count_witnesses,
    decode_record,
    decode_signed_root,
    encode_record,
    record_id,
)
from cairn.verifier.commit import (
    graph_leaf_bytes,
    graph_leaf_hash,
    lists_hash,
    quantise,
    time_leaf_bytes,
    time_leaf_hash,
)
from cairn.verifier.grants import decode_grant_set, encode_grant_set
from cairn.verifier.merkle import (
    EMPTY_ROOT,
    leaf_hash,
    make_multiproof,
    node_hash,
    tree_root,
    verify_multiproof,
)
from cairn.verifier.model import model_hash, model_id
from cairn.verifier.rice import decode_vector, encode_vector
from cairn.verifier.root import encode_root_record, root_hash, sign_root
from cairn.verifier.snapshot import decode_record_page, encode_record_page, hashseq_hash

H = bytes.fromhex

RECORD_HEX = (
    "434149524e4d454d"
    "01"
    "000c" "6167656e74732f616c696365"
    "0000018bcfe56800"
    "11111111111111111111111111111111"
    "0000001c" "416c69636520707265666572732074656120746f20636f666665652e"
    "0002"
    "0007" "737065616b6572" "00000005" "616c696365"
    "0005" "746f706963" "00000006" "6472696e6b73"
)
RECORD_ID = "aad767565cc6ff98691328d80eccf51cb50864b98ec5b6d819e5aa0281e9e550"


def test_record_vector_encodes_and_decodes():
    rec = Record("agents/alice", 1700000000000, b"\x11" * 16, "Alice prefers tea to coffee.",
                 {"speaker": "alice", "topic": "drinks"})
    assert encode_record(rec).hex() == RECORD_HEX
    assert decode_record(H(RECORD_HEX)) == rec
    assert record_id(H(RECORD_HEX)).hex() == RECORD_ID


def test_model_identity_vector():
    # The document's name derivation, over the pinned file hashes of the default model.
    files = {
        "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        "model.onnx": "a2031b59348530c0d236d39248fc68d35da6e9f18b9b66cc297819ac807570e3",
        "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
        "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    }
    assert model_id("all-MiniLM-L6-v2", files) == "all-MiniLM-L6-v2@69e6cc71e6e77d60"
    assert model_hash(files).hex().startswith("69e6cc71e6e77d60")


def test_merkle_vectors():
    l0, l1, l2 = leaf_hash(b"\x00"), leaf_hash(b"\x01"), leaf_hash(b"\x02")
    assert l0.hex() == "1ad48f49627079d806b802c74f40c39d55fe1d78b3faf0f8017aec62cec42122"
    assert node_hash(l0, l1).hex() == "5dd74fd6599404075507e25430c736438b5ca129df0b0d66ad327ace8567db27"
    root = tree_root([l0, l1, l2])
    assert root.hex() == "e5c3efc99fafeaad62bc1e882657673cdfbe3c5a41110924160abebfe0035291"
    lemmas = make_multiproof([l0, l1, l2], [1])
    assert [x.hex() for x in lemmas] == [
        "0013f4c84c09ed4f906f561e31fb6cb5336107f6813206a1f8860ab1ad35f2b8", l0.hex()]
    verify_multiproof(3, root, [(1, l1)], lemmas)
    assert tree_root([]) == EMPTY_ROOT
    assert tree_root([l0]) == l0


def test_graph_leaf_vector():
    lists = [[1, 2, 3], [4]]
    lh = lists_hash(lists)
    assert lh.hex() == "f92fbf1df2d0b7a700f2f3e50b2f9d1b8f033efb0ca19f34fbda55475d258628"
    vec = quantise([0.5, -0.5, 0.5, -0.5])
    assert list(struct.unpack("4b", vec)) == [64, -64, 64, -64]
    leaf = graph_leaf_bytes(7, b"\xaa" * 32, 1700000000000, 1, 1, vec, lh)
    assert leaf.hex() == ("43474c31" "00000007" + "aa" * 32 + "0000018bcfe56800" "01" "01" "0004" "40c040c0" + lh.hex())
    assert graph_leaf_hash(7, b"\xaa" * 32, 1700000000000, 1, 1, vec, lh).hex() == \
        "3f51482439fc721cd89953967c5fd22bbd42e7f8b6cdc43bf445ae56f72ad81c"


def test_time_leaf_vector():
    b = time_leaf_bytes(1700000000000, b"\xbb" * 32, 7)
    assert b.hex() == "43544c31" "0000018bcfe56800" + "bb" * 32 + "00000007"
    assert len(b) == 48
    assert time_leaf_hash(1700000000000, b"\xbb" * 32, 7).hex() == \
        "09157531c83778ffa8d10ed03afbd9f66da4cdc60e0340f17296a57bc57479fd"


ROOT_NODE_ID = "2152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db12"
ROOT_HASH = "7f3e71c7b026953f742145016ac420e92dc8e1ba8dbb61489226d84c9554cb7f"
ROOT_SIG = ("472d1b720a705dd0c530bf2c5d62d5d60005ba69d474ac34fc464265cdec2d66"
            "dd1b24f1d2b375a16b979cc9399f57f93d5f392f62241a095579538147dd7302")


def _vector_root():
    key = Ed25519PrivateKey.from_private_bytes(b"\x42" * 32)
    node_id = key.public_key().public_bytes_raw()
    raw = encode_root_record("agents/alice", 2, b"\x11" * 32, 3, b"\x22" * 32, 2, b"\x33" * 32, 1, 1, 16, 32,
                             1, 1, 4, b"\x44" * 32, 1700000000000, node_id)
    return key, node_id, raw


def test_root_vector():
    key, node_id, raw = _vector_root()
    assert node_id.hex() == ROOT_NODE_ID
    assert root_hash(raw).hex() == ROOT_HASH
    signed = sign_root(raw, key)
    assert signed[-64:].hex() == ROOT_SIG
    root = decode_signed_root(signed, node_id)
    assert (root.namespace, root.seq, root.prev, root.graph_leaves, root.graph_root, root.time_leaves,
            root.time_root, root.entry, root.max_level, root.M, root.M0, root.quantiser, root.distance,
            root.dim, root.model, root.created_at, root.node_id) == (
        "agents/alice", 2, b"\x11" * 32, 3, b"\x22" * 32, 2, b"\x33" * 32, 1, 1, 16, 32, 1, 1, 4, b"\x44" * 32,
        1700000000000, node_id)
    assert root.hash.hex() == ROOT_HASH
    assert root.raw == raw
    # The document's signature, byte for byte, verifies too (Ed25519 is deterministic).
    decode_signed_root(struct.pack(">I", len(raw)) + raw + H(ROOT_SIG), node_id)
    with pytest.raises(VerifyError):
        decode_signed_root(signed, b"\x01" * 32)
    bad = bytearray(signed)
    bad[-1] ^= 1
    with pytest.raises(VerifyError):
        decode_signed_root(bytes(bad), node_id)


def test_freshness_rule():
    key, node_id, raw = _vector_root()
    root = decode_signed_root(sign_root(raw, key), node_id)
    check_fresh(root, None)
    check_fresh(root, (2, root.hash))
    check_fresh(root, (1, b"\x00" * 32))
    with pytest.raises(VerifyError, match="rollback"):
        check_fresh(root, (3, root.hash))
    with pytest.raises(VerifyError, match="equivocation"):
        check_fresh(root, (2, b"\x00" * 32))


def test_rice_vector():
    assert encode_vector(bytes([0, 0xFF, 1, 4])).hex() == "89a400"
    vec, end = decode_vector(H("89a400"), 0, 3, 4)
    assert list(struct.unpack("4b", vec)) == [0, -1, 1, 4]
    assert end == 3
    for bad in ["89a401", "89a4", "89a440"]:  # nonzero padding, truncation, nonzero padding
        with pytest.raises(VerifyError):
            decode_vector(H(bad), 0, len(H(bad)), 4)
    # A run of 32 zero bits is rejected; 31 is the longest allowed (z = 248..255).
    with pytest.raises(VerifyError):
        decode_vector(bytes(4) + b"\xff", 0, 5, 1)
    v, _ = decode_vector(H("00000001") + b"\xe0", 0, 5, 1)  # 31 zeros, 1, 111, padding
    assert v == bytes([((255 >> 1) ^ -(255 & 1)) & 0xFF])


WITNESS_PUB = "22fc297792f0b6ffc0bfcfdb7edb0c0aa14e025a365ec0e342e86e3829cb74b6"
WITNESS_SIG = ("fe9d80a79b927c84946bbc65b817bb7ec2e7671e98998c29c584c56f54fdae98"
               "32c553fd0abb96ebc405f879d0bea4eee11520ca2741aa62c64f842576b28a0f")


def test_cosignature_vector_and_counting():
    key, node_id, raw = _vector_root()
    root = decode_signed_root(sign_root(raw, key), node_id)
    wkey = Ed25519PrivateKey.from_private_bytes(b"\x43" * 32)
    wpub = wkey.public_key().public_bytes_raw()
    assert wpub.hex() == WITNESS_PUB
    sig = wkey.sign(b"CAIRN-COSIG-V1" + root.hash)
    assert sig.hex() == WITNESS_SIG
    cos = [(wpub, sig)]
    assert count_witnesses(root, cos, [wpub]) == 1
    assert count_witnesses(root, cos, []) == 0
    assert count_witnesses(root, cos, None) == 0
    assert count_witnesses(root, cos + cos, [wpub]) == 1  # repeats count once
    assert count_witnesses(root, [(wpub, sig[:-1] + bytes([sig[-1] ^ 1]))], [wpub]) == 0
    assert count_witnesses(root, [(wpub[:31], sig), (wpub, sig[:63])], [wpub]) == 0  # malformed
    own = key.sign(b"CAIRN-COSIG-V1" + root.hash)
    assert count_witnesses(root, [(node_id, own)], [node_id]) == 0  # the owner does not count
    other = Ed25519PrivateKey.from_private_bytes(b"\x44" * 32)
    opub = other.public_key().public_bytes_raw()
    osig = other.sign(b"CAIRN-COSIG-V1" + root.hash)
    assert count_witnesses(root, cos + [(opub, osig)], [wpub]) == 1  # outside the set
    assert count_witnesses(root, cos + [(opub, osig)], [wpub, opub]) == 2


GRANT_HEX = (
    "434149524e2d4752414e54532d56312152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db12000c6167656e74732f616c6963"
    "6500000000000000030000000111111111111111111111111111111111111111111111111111111111111111113efaa2de31ddb9ec0cf884dfac27e1"
    "81b6dc2ff49c5e566fa767a8e22b9edf7c39e1322d06541bfba9da8d583f8f48262afe2c0fc899767a8120f80ee8ba4704"
)


def test_grant_set_vector():
    key = Ed25519PrivateKey.from_private_bytes(b"\x42" * 32)
    owner = key.public_key().public_bytes_raw()
    wire = encode_grant_set(owner, "agents/alice", 3, [b"\x11" * 32], key)
    assert wire.hex() == GRANT_HEX
    g = decode_grant_set(H(GRANT_HEX), owner, "agents/alice")
    assert (g.owner, g.namespace, g.version, g.peers) == (owner, "agents/alice", 3, [b"\x11" * 32])
    with pytest.raises(VerifyError):
        decode_grant_set(H(GRANT_HEX), owner, "agents/bob")
    bad = bytearray(H(GRANT_HEX))
    bad[-1] ^= 1
    with pytest.raises(VerifyError):
        decode_grant_set(bytes(bad), owner, "agents/alice")


def test_snapshot_vectors():
    page = encode_record_page([b"ab", b""])
    assert page.hex() == "00000002616200000000"
    assert decode_record_page(page) == [b"ab", b""]
    assert hashseq_hash([b"x", b"yz"]).hex() == "a5f554c6ce82a2f4dbb09165ac2880272073f427c67e00925b79996450425041"
    assert hashseq_hash([b"x", b"yz"]) == blake3.blake3(
        blake3.blake3(b"x").digest() + blake3.blake3(b"yz").digest()).digest()
