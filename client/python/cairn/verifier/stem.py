"""The Snowball English (Porter2) stemmer exactly as the `rust-stemmers` crate 1.2.0 computes it
(`Algorithm::English`), which Cairn's tokenizer 1 uses (docs/PROOFS.md, "Tokenizer 1").

A line-by-line port of that crate's generated `english.rs` and of its `SnowballEnv`, so that this pure-Python
verifier stems every word as the Rust node does. (Newer Snowball releases, such as Python's `snowballstemmer`
3.x, changed the English algorithm in places; they are not used here.) The Rust environment works on UTF-8
byte offsets; this one works on code points. The two agree because every literal the algorithm compares is
ASCII and every move is by whole characters.
"""

from __future__ import annotations

# Among tables: (string, substring_i, result). Indices and results as in the generated Rust.
_A_0 = (("arsen", -1, -1), ("commun", -1, -1), ("gener", -1, -1))
_A_1 = (("'", -1, 1), ("'s'", 0, 1), ("'s", -1, 1))
_A_2 = (("ied", -1, 2), ("s", -1, 3), ("ies", 1, 2), ("sses", 1, 1), ("ss", 1, -1), ("us", 1, -1))
_A_3 = (("", -1, 3), ("bb", 0, 2), ("dd", 0, 2), ("ff", 0, 2), ("gg", 0, 2), ("bl", 0, 1), ("mm", 0, 2),
        ("nn", 0, 2), ("pp", 0, 2), ("rr", 0, 2), ("at", 0, 1), ("tt", 0, 2), ("iz", 0, 1))
_A_4 = (("ed", -1, 2), ("eed", 0, 1), ("ing", -1, 2), ("edly", -1, 2), ("eedly", 3, 1), ("ingly", -1, 2))
_A_5 = (("anci", -1, 3), ("enci", -1, 2), ("ogi", -1, 13), ("li", -1, 16), ("bli", 3, 12), ("abli", 4, 4),
        ("alli", 3, 8), ("fulli", 3, 14), ("lessli", 3, 15), ("ousli", 3, 10), ("entli", 3, 5),
        ("aliti", -1, 8), ("biliti", -1, 12), ("iviti", -1, 11), ("tional", -1, 1), ("ational", 14, 7),
        ("alism", -1, 8), ("ation", -1, 7), ("ization", 17, 6), ("izer", -1, 6), ("ator", -1, 7),
        ("iveness", -1, 11), ("fulness", -1, 9), ("ousness", -1, 10))
_A_6 = (("icate", -1, 4), ("ative", -1, 6), ("alize", -1, 3), ("iciti", -1, 4), ("ical", -1, 4),
        ("tional", -1, 1), ("ational", 5, 2), ("ful", -1, 5), ("ness", -1, 5))
_A_7 = (("ic", -1, 1), ("ance", -1, 1), ("ence", -1, 1), ("able", -1, 1), ("ible", -1, 1), ("ate", -1, 1),
        ("ive", -1, 1), ("ize", -1, 1), ("iti", -1, 1), ("al", -1, 1), ("ism", -1, 1), ("ion", -1, 2),
        ("er", -1, 1), ("ous", -1, 1), ("ant", -1, 1), ("ent", -1, 1), ("ment", 15, 1), ("ement", 16, 1))
_A_8 = (("e", -1, 1), ("l", -1, 2))
_A_9 = (("succeed", -1, -1), ("proceed", -1, -1), ("exceed", -1, -1), ("canning", -1, -1),
        ("inning", -1, -1), ("earring", -1, -1), ("herring", -1, -1), ("outing", -1, -1))
_A_10 = (("andes", -1, -1), ("atlas", -1, -1), ("bias", -1, -1), ("cosmos", -1, -1), ("dying", -1, 3),
         ("early", -1, 9), ("gently", -1, 7), ("howe", -1, -1), ("idly", -1, 6), ("lying", -1, 4),
         ("news", -1, -1), ("only", -1, 10), ("singly", -1, 11), ("skies", -1, 2), ("skis", -1, 1),
         ("sky", -1, -1), ("tying", -1, 5), ("ugly", -1, 8))

# Groupings as bit sets over code points from `min`.
_G_V = (bytes([17, 65, 16, 1]), 97, 121)
_G_V_WXY = (bytes([1, 17, 65, 208, 1]), 89, 121)
_G_VALID_LI = (bytes([55, 141, 2]), 99, 116)


def _in_set(ch: str, g) -> bool:
    bits, lo, hi = g
    c = ord(ch)
    if c > hi or c < lo:
        return False
    c -= lo
    return bool(bits[c >> 3] & (1 << (c & 7)))


class _Env:
    """Rust-stemmers' SnowballEnv over a list of characters."""

    __slots__ = ("s", "cursor", "limit", "limit_backward", "bra", "ket")

    def __init__(self, word: str):
        self.s = word
        self.cursor = 0
        self.limit = len(word)
        self.limit_backward = 0
        self.bra = 0
        self.ket = len(word)

    def replace_s(self, bra: int, ket: int, t: str) -> int:
        adj = len(t) - (ket - bra)
        self.s = self.s[:bra] + t + self.s[ket:]
        self.limit += adj
        if self.cursor >= ket:
            self.cursor += adj
        elif self.cursor > bra:
            self.cursor = bra
        return adj

    def eq_s(self, t: str) -> bool:
        if self.cursor >= self.limit:
            return False
        if self.s.startswith(t, self.cursor):
            self.cursor += len(t)
            return True
        return False

    def eq_s_b(self, t: str) -> bool:
        if self.cursor - self.limit_backward < len(t):
            return False
        if not self.s.startswith(t, self.cursor - len(t)):
            return False
        self.cursor -= len(t)
        return True

    def slice_from(self, t: str) -> None:
        self.replace_s(self.bra, self.ket, t)

    def slice_del(self) -> None:
        self.slice_from("")

    def insert(self, bra: int, ket: int, t: str) -> None:
        adj = self.replace_s(bra, ket, t)
        if bra <= self.bra:
            self.bra += adj
        if bra <= self.ket:
            self.ket += adj

    def in_grouping(self, g) -> bool:
        if self.cursor >= self.limit:
            return False
        if not _in_set(self.s[self.cursor], g):
            return False
        self.cursor += 1
        return True

    def in_grouping_b(self, g) -> bool:
        if self.cursor <= self.limit_backward:
            return False
        if not _in_set(self.s[self.cursor - 1], g):
            return False
        self.cursor -= 1
        return True

    def out_grouping(self, g) -> bool:
        if self.cursor >= self.limit:
            return False
        if _in_set(self.s[self.cursor], g):
            return False
        self.cursor += 1
        return True

    def out_grouping_b(self, g) -> bool:
        if self.cursor <= self.limit_backward:
            return False
        if _in_set(self.s[self.cursor - 1], g):
            return False
        self.cursor -= 1
        return True

    def find_among(self, amongs) -> int:
        i, j = 0, len(amongs)
        c, l = self.cursor, self.limit
        common_i = common_j = 0
        first_key_inspected = False
        while True:
            k = i + ((j - i) >> 1)
            diff = 0
            common = min(common_i, common_j)
            w = amongs[k][0]
            for lvar in range(common, len(w)):
                if c + common == l:
                    diff = -1
                    break
                diff = ord(self.s[c + common]) - ord(w[lvar])
                if diff != 0:
                    break
                common += 1
            if diff < 0:
                j, common_j = k, common
            else:
                i, common_i = k, common
            if j - i <= 1:
                if i > 0 or j == i or first_key_inspected:
                    break
                first_key_inspected = True
        while True:
            w, sub, res = amongs[i]
            if common_i >= len(w):
                self.cursor = c + len(w)
                return res
            i = sub
            if i < 0:
                return 0

    def find_among_b(self, amongs) -> int:
        i, j = 0, len(amongs)
        c, lb = self.cursor, self.limit_backward
        common_i = common_j = 0
        first_key_inspected = False
        while True:
            k = i + ((j - i) >> 1)
            diff = 0
            common = min(common_i, common_j)
            w = amongs[k][0]
            for lvar in range(len(w) - common - 1, -1, -1):
                if c - common == lb:
                    diff = -1
                    break
                diff = ord(self.s[c - common - 1]) - ord(w[lvar])
                if diff != 0:
                    break
                common += 1
            if diff < 0:
                j, common_j = k, common
            else:
                i, common_i = k, common
            if j - i <= 1:
                if i > 0 or j == i or first_key_inspected:
                    break
                first_key_inspected = True
        while True:
            w, sub, res = amongs[i]
            if common_i >= len(w):
                self.cursor = c - len(w)
                return res
            i = sub
            if i < 0:
                return 0


class _Ctx:
    __slots__ = ("y_found", "p1", "p2")

    def __init__(self):
        self.y_found = False
        self.p1 = 0
        self.p2 = 0


def _prelude(e: _Env, x: _Ctx) -> None:
    x.y_found = False
    v = e.cursor
    e.bra = e.cursor
    if e.eq_s("'"):
        e.ket = e.cursor
        e.slice_del()
    e.cursor = v
    e.bra = e.cursor
    if e.eq_s("y"):
        e.ket = e.cursor
        e.slice_from("Y")
        x.y_found = True
    e.cursor = v
    # repeat (goto (v [ 'y' ]) <- 'Y')
    while True:
        v4 = e.cursor
        found = False
        while True:
            v5 = e.cursor
            if e.in_grouping(_G_V):
                e.bra = e.cursor
                if e.eq_s("y"):
                    e.ket = e.cursor
                    e.cursor = v5
                    found = True
                    break
            e.cursor = v5
            if e.cursor >= e.limit:
                break
            e.cursor += 1
        if not found:
            e.cursor = v4
            break
        e.slice_from("Y")
        x.y_found = True
    e.cursor = v


def _gopast_v(e: _Env) -> bool:
    while True:
        if e.in_grouping(_G_V):
            return True
        if e.cursor >= e.limit:
            return False
        e.cursor += 1


def _gopast_non_v(e: _Env) -> bool:
    while True:
        if e.out_grouping(_G_V):
            return True
        if e.cursor >= e.limit:
            return False
        e.cursor += 1


def _mark_regions(e: _Env, x: _Ctx) -> None:
    x.p1 = e.limit
    x.p2 = e.limit
    v1 = e.cursor
    while True:  # do ( ... ), a block to break out of
        v2 = e.cursor
        if e.find_among(_A_0) == 0:
            e.cursor = v2
            if not _gopast_v(e) or not _gopast_non_v(e):
                break
        x.p1 = e.cursor
        if not _gopast_v(e) or not _gopast_non_v(e):
            break
        x.p2 = e.cursor
        break
    e.cursor = v1


def _shortv(e: _Env) -> bool:
    v1 = e.limit - e.cursor
    if e.out_grouping_b(_G_V_WXY) and e.in_grouping_b(_G_V) and e.out_grouping_b(_G_V):
        return True
    e.cursor = e.limit - v1
    if not e.out_grouping_b(_G_V):
        return False
    if not e.in_grouping_b(_G_V):
        return False
    return e.cursor <= e.limit_backward


def _step_1a(e: _Env) -> bool:
    v1 = e.limit - e.cursor
    e.ket = e.cursor
    a = e.find_among_b(_A_1)
    if a == 0:
        e.cursor = e.limit - v1
    else:
        e.bra = e.cursor
        if a == 1:
            e.slice_del()
    e.ket = e.cursor
    a = e.find_among_b(_A_2)
    if a == 0:
        return False
    e.bra = e.cursor
    if a == 1:
        e.slice_from("ss")
    elif a == 2:
        v2 = e.limit - e.cursor
        c = e.cursor - 2  # hop -2 (code points)
        if not (e.limit_backward > c or c > e.limit):
            e.cursor = c
            e.slice_from("i")
        else:
            e.cursor = e.limit - v2
            e.slice_from("ie")
    elif a == 3:
        if e.cursor <= e.limit_backward:
            return False
        e.cursor -= 1
        while True:  # gopast v (backwards)
            if e.in_grouping_b(_G_V):
                break
            if e.cursor <= e.limit_backward:
                return False
            e.cursor -= 1
        e.slice_del()
    return True


def _step_1b(e: _Env, x: _Ctx) -> bool:
    e.ket = e.cursor
    a = e.find_among_b(_A_4)
    if a == 0:
        return False
    e.bra = e.cursor
    if a == 1:
        if not x.p1 <= e.cursor:
            return False
        e.slice_from("ee")
    elif a == 2:
        v1 = e.limit - e.cursor
        while True:
            if e.in_grouping_b(_G_V):
                break
            if e.cursor <= e.limit_backward:
                return False
            e.cursor -= 1
        e.cursor = e.limit - v1
        e.slice_del()
        v3 = e.limit - e.cursor
        a = e.find_among_b(_A_3)
        if a == 0:
            return False
        e.cursor = e.limit - v3
        if a == 1:
            c = e.cursor
            e.insert(e.cursor, e.cursor, "e")
            e.cursor = c
        elif a == 2:
            e.ket = e.cursor
            if e.cursor <= e.limit_backward:
                return False
            e.cursor -= 1
            e.bra = e.cursor
            e.slice_del()
        elif a == 3:
            if e.cursor != x.p1:
                return False
            v4 = e.limit - e.cursor
            if not _shortv(e):
                return False
            e.cursor = e.limit - v4
            c = e.cursor
            e.insert(e.cursor, e.cursor, "e")
            e.cursor = c
    return True


def _step_1c(e: _Env) -> bool:
    e.ket = e.cursor
    v1 = e.limit - e.cursor
    if not e.eq_s_b("y"):
        e.cursor = e.limit - v1
        if not e.eq_s_b("Y"):
            return False
    e.bra = e.cursor
    if not e.out_grouping_b(_G_V):
        return False
    if e.cursor <= e.limit_backward:
        return False
    e.slice_from("i")
    return True


_STEP2 = {1: "tion", 2: "ence", 3: "ance", 4: "able", 5: "ent", 6: "ize", 7: "ate", 8: "al", 9: "ful",
          10: "ous", 11: "ive", 12: "ble", 14: "ful", 15: "less"}


def _step_2(e: _Env, x: _Ctx) -> bool:
    e.ket = e.cursor
    a = e.find_among_b(_A_5)
    if a == 0:
        return False
    e.bra = e.cursor
    if not x.p1 <= e.cursor:
        return False
    if a in _STEP2:
        e.slice_from(_STEP2[a])
    elif a == 13:
        if not e.eq_s_b("l"):
            return False
        e.slice_from("og")
    elif a == 16:
        if not e.in_grouping_b(_G_VALID_LI):
            return False
        e.slice_del()
    return True


def _step_3(e: _Env, x: _Ctx) -> bool:
    e.ket = e.cursor
    a = e.find_among_b(_A_6)
    if a == 0:
        return False
    e.bra = e.cursor
    if not x.p1 <= e.cursor:
        return False
    if a == 1:
        e.slice_from("tion")
    elif a == 2:
        e.slice_from("ate")
    elif a == 3:
        e.slice_from("al")
    elif a == 4:
        e.slice_from("ic")
    elif a == 5:
        e.slice_del()
    elif a == 6:
        if not x.p2 <= e.cursor:
            return False
        e.slice_del()
    return True


def _step_4(e: _Env, x: _Ctx) -> bool:
    e.ket = e.cursor
    a = e.find_among_b(_A_7)
    if a == 0:
        return False
    e.bra = e.cursor
    if not x.p2 <= e.cursor:
        return False
    if a == 1:
        e.slice_del()
    elif a == 2:
        v1 = e.limit - e.cursor
        if not e.eq_s_b("s"):
            e.cursor = e.limit - v1
            if not e.eq_s_b("t"):
                return False
        e.slice_del()
    return True


def _step_5(e: _Env, x: _Ctx) -> bool:
    e.ket = e.cursor
    a = e.find_among_b(_A_8)
    if a == 0:
        return False
    e.bra = e.cursor
    if a == 1:
        v1 = e.limit - e.cursor
        if not x.p2 <= e.cursor:
            e.cursor = e.limit - v1
            if not x.p1 <= e.cursor:
                return False
            v2 = e.limit - e.cursor
            if _shortv(e):
                return False
            e.cursor = e.limit - v2
        e.slice_del()
    elif a == 2:
        if not x.p2 <= e.cursor:
            return False
        if not e.eq_s_b("l"):
            return False
        e.slice_del()
    return True


def _exception2(e: _Env) -> bool:
    e.ket = e.cursor
    if e.find_among_b(_A_9) == 0:
        return False
    e.bra = e.cursor
    return e.cursor <= e.limit_backward


_EXC1 = {1: "ski", 2: "sky", 3: "die", 4: "lie", 5: "tie", 6: "idl", 7: "gentl", 8: "ugli", 9: "earli",
         10: "onli", 11: "singl"}


def _exception1(e: _Env) -> bool:
    e.bra = e.cursor
    a = e.find_among(_A_10)
    if a == 0:
        return False
    e.ket = e.cursor
    if e.cursor < e.limit:
        return False
    if a in _EXC1:
        e.slice_from(_EXC1[a])
    return True


def _postlude(e: _Env, x: _Ctx) -> None:
    if not x.y_found:
        return
    while True:
        v1 = e.cursor
        found = False
        while True:
            v2 = e.cursor
            e.bra = e.cursor
            if e.eq_s("Y"):
                e.ket = e.cursor
                e.cursor = v2
                found = True
                break
            e.cursor = v2
            if e.cursor >= e.limit:
                break
            e.cursor += 1
        if not found:
            e.cursor = v1
            return
        e.slice_from("y")


def stem(word: str) -> str:
    """The Porter2 stem of a lowercase word, as rust-stemmers 1.2.0 gives it."""
    e = _Env(word)
    x = _Ctx()
    v1 = e.cursor
    if _exception1(e):
        return e.s
    e.cursor = v1
    if e.cursor + 3 > e.limit:  # not hop 3: words under three characters are left alone
        return e.s
    _prelude(e, x)
    e.cursor = v1
    _mark_regions(e, x)
    e.cursor = v1
    e.limit_backward = e.cursor
    e.cursor = e.limit
    v5 = e.limit - e.cursor
    _step_1a(e)
    e.cursor = e.limit - v5
    v6 = e.limit - e.cursor
    if not _exception2(e):
        e.cursor = e.limit - v6
        for step in (lambda: _step_1b(e, x), lambda: _step_1c(e), lambda: _step_2(e, x),
                     lambda: _step_3(e, x), lambda: _step_4(e, x), lambda: _step_5(e, x)):
            v = e.limit - e.cursor
            step()
            e.cursor = e.limit - v
    e.cursor = e.limit_backward
    v13 = e.cursor
    _postlude(e, x)
    e.cursor = v13
    return e.s
