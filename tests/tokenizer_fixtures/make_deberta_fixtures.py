#!/usr/bin/python3
"""make_deberta_fixtures.py — a tiny DeBERTa-v3-style SentencePiece Unigram
model and the ids SentencePiece gives for tricky strings.

DeBERTa-v3 ships spm.model: a Unigram model with the nmt_nfkc normalization
rules (a precompiled charsmap), remove_extra_whitespaces and the dummy
prefix, no byte fallback, pieces [PAD]=0 [CLS]=1 [SEP]=2 [UNK]=3, and [MASK]
added by transformers after the last piece. This script trains a model with
the same settings on deberta_corpus.txt (committed beside it) and writes,
next to itself (CI never runs it; the C tests read the committed files):
  deberta_spm/spm.model              the model (its charsmap is most of it)
  deberta_spm/tokenizer_config.json  as the hub's: do_lower_case false
  deberta_json/tokenizer.json        the same model as transformers'
                                     DebertaV2Converter writes it: normalizer
                                     [Strip, Precompiled, Replace " {2,}"],
                                     pre-tokenizer [Metaspace always], Unigram
                                     vocab [piece, score] with unk_id, the
                                     [CLS] $A [SEP] $B [SEP] template
  deberta_expected.tsv               kind  a(hex)  b(hex or -)  ids  decoded(hex or -)
    sp     SentencePieceProcessor.encode(a) for the strings below and 40
           random ones, and decode(ids) when the ids
           hold no [UNK] (decode writes " \u2047 " for it, transformers "[UNK]")
    lower  encode(a.lower()): do_lower_case true (transformers lower-cases
           with str.lower() before SentencePiece)
    single [CLS] encode(a) [SEP]            (DebertaV2Tokenizer's input)
    pair   [CLS] encode(a) [SEP] encode(b) [SEP]
    added  a holds [MASK] / [SEP]: split out, each plain part encoded alone

Needs Debian's python3-sentencepiece (0.1.97 here):
    /usr/bin/python3 tests/tokenizer_fixtures/make_deberta_fixtures.py
"""
import base64
import io
import json
import os
import random

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB = 320
SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[UNK]"]

# Whitespace (leading, trailing, runs, tabs, newlines, no-break and
# ideographic spaces), nmt_nfkc's rewrites (full-width, ligatures,
# compatibility characters, combining accents, zero-width and control
# characters), characters no piece covers (emoji, CJK outside the corpus:
# runs of them are one [UNK]), a literal U+2581, long words, empty text.
SP_CASES = [
    "hello world",
    "Hello World!",
    "",
    " ",
    "   \t\n ",
    " hello",
    "hello ",
    "  hello   world  ",
    "hello\tworld\nnext\r\nline",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9",
    "cafe\u0301 and cafe\u0301",
    "stra\u00dfe \u00fcber Z\u00fcrich",
    "\uff46\uff55\uff4c\uff4c \uff37\uff49\uff44\uff54\uff48 \uff21\uff22\uff23 \uff11\uff12\uff13",
    "\ufb01ne \ufb02ow",
    "\u2460 \u2461 \u2462",
    "\u00bd \u00b2 \u2122 \u338f",
    "\u2126hm \u212b \u212a",
    "\u3000ideographic\u3000\u3000space\u3000",
    "\u00a0no-break\u00a0space",
    "zero\u200bwidth and soft\u00adhyphen",
    "bell\u0007char",
    "\U0001F600 emoji",
    "\U0001F600\U0001F600\U0001F600 run of unknowns",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "\u6771\u4eac and \u5317\u4eac",
    "zzzz qqqq xyzzy",
    "\u2581already\u2581escaped",
    "DeBERTa-v3: 1,234.5% (dev)",
    "supercalifragilisticexpialidocious" * 4,
    "a" * 300,
    "The Model TEXT \u00c9T\u00c9",
]
# Random strings from pieces the normalizer treats each its own way.
RANDOM_POOL = ["a", "e", "h", "l", "o", "t", "the", " ", " ", "\t", "\n", "\u00a0", "\u3000",
               "\uff46", "\u00e9", "e\u0301", "\ufb01", "\U0001F600", "\u5317", "\u2581",
               "H", "E", "1", "\u2460", ".", "\u0007", "model", "\u00c9"]


def random_cases(count=40):
    rng = random.Random(13)
    return ["".join(rng.choice(RANDOM_POOL) for _ in range(rng.randint(1, 16)))
            for _ in range(count)]


LOWER_CASES = ["Hello World!", "The Model TEXT \u00c9T\u00c9", "\u0130stanbul \u03a3\u039f\u03a3",
               "\uff21\uff22\uff23 DEF"]
PAIRS = [("hello world", "the second sentence"), ("", "only b"), ("only a", ""),
         ("  spaced  out ", "\uff46\uff55\uff4c\uff4c"), ("\U0001F600", "\u5317")]
ADDED = [["hello ", "[MASK]", " world"], ["[MASK]", "model"], ["a", "[SEP]", "b"],
         ["the", "[MASK]", "[MASK]", "end"]]


def train():
    with open(HERE + "/deberta_corpus.txt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type="unigram",
        vocab_size=VOCAB, normalization_rule_name="nmt_nfkc", remove_extra_whitespaces=True,
        add_dummy_prefix=True, byte_fallback=False, character_coverage=1.0,
        pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]",
        eos_piece="[SEP]", unk_piece="[UNK]")
    return model.getvalue()


def write_json(obj, path):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def proto_fields(buf):
    """(field, wire type, value) of one protobuf message (no python3-protobuf
    needed: only varints and length-delimited fields are looked at)."""
    i = 0

    def varint():
        nonlocal i
        v = shift = 0
        while True:
            b = buf[i]
            i += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v
    while i < len(buf):
        tag = varint()
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            yield field, wire, varint()
        elif wire == 2:
            n = varint()
            yield field, wire, buf[i:i + n]
            i += n
        elif wire in (1, 5):
            k = 8 if wire == 1 else 4
            yield field, wire, buf[i:i + k]
            i += k
        else:
            raise ValueError("wire type %d" % wire)


def precompiled_charsmap(proto):
    """ModelProto.normalizer_spec (3).precompiled_charsmap (2)."""
    for f, w, v in proto_fields(proto):
        if f == 3 and w == 2:
            for g, x, cm in proto_fields(v):
                if g == 2 and x == 2:
                    return cm
    return b""


def tokenizer_json(proto, sp):
    n = sp.get_piece_size()
    vocab = [[sp.id_to_piece(i), sp.get_score(i)] for i in range(n)]
    mask_id = n
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True}
             for i, s in enumerate(SPECIALS + ["[MASK]"]) if s != "[MASK]"]
    added.append({"id": mask_id, "content": "[MASK]", "single_word": False, "lstrip": False,
                  "rstrip": False, "normalized": False, "special": True})
    charsmap = base64.b64encode(precompiled_charsmap(proto)).decode()
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Strip", "strip_left": True, "strip_right": True},
            {"type": "Precompiled", "precompiled_charsmap": charsmap},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
             "split": True}]},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                                    {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                                    {"Sequence": {"id": "B", "type_id": 1}},
                                    {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
                           "special_tokens": {
                               "[CLS]": {"id": "[CLS]", "ids": [1], "tokens": ["[CLS]"]},
                               "[SEP]": {"id": "[SEP]", "ids": [2], "tokens": ["[SEP]"]}}},
        "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                    "split": True},
        "model": {"type": "Unigram", "unk_id": sp.unk_id(), "vocab": vocab,
                  "byte_fallback": False},
    }


def main():
    proto = train()
    sp = spm.SentencePieceProcessor(model_proto=proto)
    assert [sp.id_to_piece(i) for i in range(4)] == SPECIALS and sp.unk_id() == 3
    assert sp.get_piece_size() == VOCAB
    os.makedirs(HERE + "/deberta_spm", exist_ok=True)
    os.makedirs(HERE + "/deberta_json", exist_ok=True)
    with open(HERE + "/deberta_spm/spm.model", "wb") as f:
        f.write(proto)
    write_json({"do_lower_case": False, "vocab_type": "spm"},
               HERE + "/deberta_spm/tokenizer_config.json")
    with open(HERE + "/deberta_json/tokenizer.json", "w", encoding="utf-8") as f:
        json.dump(tokenizer_json(proto, sp), f, ensure_ascii=False)  # one line: the charsmap is long
        f.write("\n")

    cls, sep, unk, mask = 1, 2, sp.unk_id(), VOCAB
    rows = []
    for s in SP_CASES + random_cases():
        ids = sp.encode(s)
        rows.append(("sp", s, None, ids, sp.decode(ids) if unk not in ids else None))
    for s in LOWER_CASES:
        rows.append(("lower", s, None, sp.encode(s.lower()), None))
    for s in SP_CASES[:8]:
        rows.append(("single", s, None, [cls] + sp.encode(s) + [sep], None))
    for a, b in PAIRS:
        rows.append(("pair", a, b, [cls] + sp.encode(a) + [sep] + sp.encode(b) + [sep], None))
    for parts in ADDED:
        ids = []
        for p in parts:
            ids += {"[MASK]": [mask], "[SEP]": [sep]}.get(p) or sp.encode(p)
        rows.append(("added", "".join(parts), None, ids, None))
    with open(HERE + "/deberta_expected.tsv", "w") as f:
        f.write("# kind\ta as UTF-8 hex\tb (- for none)\tids\tdecoded (- unchecked); "
                "written by make_deberta_fixtures.py\n")
        for kind, a, b, ids, dec in rows:
            f.write("%s\t%s\t%s\t%s\t%s\n" % (
                kind, a.encode().hex(), "-" if b is None else b.encode().hex(),
                ",".join(map(str, ids)), "-" if dec is None else dec.encode().hex()))
    print("wrote %d expectations" % len(rows))


if __name__ == "__main__":
    main()
