#!/usr/bin/python3
"""make_sp_fixtures.py — tiny SentencePiece models and the ids SentencePiece gives.

Writes, next to this script (run from anywhere; CI never runs it, the C tests
only read the committed files):
  sp_bpe/tokenizer.model        BPE, byte_fallback, identity normalizer, no
                                extra-whitespace removal (LLaMA-2's settings),
                                one user-defined symbol "<sep>"
  sp_bpe/tokenizer.json         the same model written as a Hugging Face
                                tokenizer.json the way transformers' LlamaConverter
                                does (legacy form: Prepend + Replace normalizer,
                                merges ordered by the merged piece's id, byte
                                fallback, TemplateProcessing "<s> $A")
  sp_bpe/tokenizer_config.json  add_bos_token true, add_eos_token false
  sp_uni/tokenizer.model        Unigram, no byte fallback (unknown characters
                                become <unk>), remove_extra_whitespaces true
  sp_unibf/tokenizer.model      Unigram with byte_fallback, identity normalizer
  sp_rules/tokenizer.model      Unigram with a normalization rule table of its
                                own (RULES below), so its precompiled_charsmap
                                is a few hundred bytes where nmt_nfkc's is
                                ~240 KB; the same trie format either way
  expected.tsv                  model  kind  text(hex)  ids(comma-separated)
                                kind "sp": SentencePieceProcessor.encode(text)
                                exactly (no BOS/EOS); kind "hf": the ids a
                                Hugging Face tokenizer gives with special tokens
                                in the text, composed from SentencePiece's ids of
                                the plain parts (see HF_CASES).
The training text is generated here (deterministic), not committed.

Needs Debian's python3-sentencepiece (0.1.97 here): /usr/bin/python3 make_sp_fixtures.py
"""
import io
import json
import os
import random
import tempfile

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))

WORDS = ("the quick brown fox jumps over lazy dog hello world tokenizer model "
         "piece merge byte fallback unknown café naïve résumé über straße "
         "encoder decoder llama mistral fine tuning adapter frozen rank "
         "training evaluation loss perplexity 2024 42 3.14").split()


def training_text():
    rng = random.Random(11)
    lines = []
    for _ in range(600):
        n = rng.randint(3, 12)
        words = [rng.choice(WORDS) for _ in range(n)]
        if rng.random() < 0.3:
            words[0] = words[0].capitalize()
        lines.append(" ".join(words) + rng.choice([".", "!", "?", ",", ""]))
    return "\n".join(lines) + "\n"


# Strings whose ids SentencePiece itself gives: spaces (leading, multiple,
# trailing), emoji and CJK (byte fallback / unknown), accents, empty.
SP_CASES = [
    "hello world",
    "Hello World!",
    "",
    " ",
    " hello",
    "  hello   world  ",
    "hello\tworld\nnext",
    "café naïve résumé",
    "straße über",
    "\U0001F600 emoji",
    "日本語のテキスト",
    "a\u0301 combining",
    "fine-tuning 2024: 3.14!",
    "zzzz qqqq xyzzy",
]

# Normalization rules for sp_rules (source code points -> target, hex):
# fullwidth letters, a ligature, a circled digit, tab and ideographic space
# to space, a two-character source (e + combining acute), and "12" beside
# "1" (the longest match wins; a replacement is not normalized again).
RULES = [("FF48", "68"), ("FF45", "65"), ("FF4C", "6C"), ("FF4F", "6F"), ("FB01", "66 69"),
         ("2460", "31"), ("9", "20"), ("65 301", "E9"), ("31 32", "78"), ("31", "79"),
         ("3000", "20")]
RULE_CASES = [
    "\uff48\uff45\uff4c\uff4c\uff4f world",
    "\ufb01ne",
    "\u2460 and 1 and 12 and 123",
    "a\tb\u3000\u3000c",
    "cafe\u0301 caf\u00e9",
    "\u3000 lead and trail \t",
]

# Added tokens in the text, as Hugging Face splits them: the added token
# gets its id, each plain part around it is encoded on its own (the legacy
# Prepend normalizer runs on every part, so each gets the dummy prefix ▁;
# transformers' slow LlamaTokenizer with legacy=True does the same).
HF_CASES = [
    ["hello", "<s>", "world"],
    ["<s>", "hello"],
    ["hello", "</s>"],
    ["a", "</s>", "", "<s>", "b"],
    # The user-defined symbol too (SentencePiece itself would not prefix
    # "model": [▁tokenizer, <sep>, m o d e l]; transformers does).
    ["tokenizer", "<sep>", "model"],
]


def train(prefix, **kw):
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(training_text().splitlines()),
                                   model_writer=model, **kw)
    os.makedirs(prefix, exist_ok=True)
    with open(prefix + "/tokenizer.model", "wb") as f:
        f.write(model.getvalue())
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


def write_tokenizer_json(sp, path):
    n = sp.get_piece_size()
    pieces = [sp.id_to_piece(i) for i in range(n)]
    vocab = {p: i for i, p in enumerate(pieces)}
    # Merges as transformers' SentencePieceExtractor builds them: every split
    # of a vocabulary piece into two vocabulary pieces, ordered by the merged
    # piece's id (for BPE models the score order), then by the parts' ids.
    merges = []
    for i, p in enumerate(pieces):
        if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i)):
            for k in range(1, len(p)):
                a, b = p[:k], p[k:]
                if a in vocab and b in vocab:
                    merges.append((i, vocab[a], vocab[b], a, b))
    merges.sort()
    added = []
    for i in range(n):
        if sp.is_control(i) or sp.is_unknown(i):
            added.append({"id": i, "content": pieces[i], "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True})
        elif sp.id_to_piece(i) == "<sep>":  # the user-defined symbol
            added.append({"id": i, "content": pieces[i], "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": False})
    tj = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                    {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "<s>", "type_id": 1}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": [m[3] + " " + m[4] for m in merges]},
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def main():
    bpe = train(HERE + "/sp_bpe", model_type="bpe", vocab_size=420, byte_fallback=True,
                normalization_rule_name="identity", remove_extra_whitespaces=False,
                add_dummy_prefix=True, user_defined_symbols=["<sep>"],
                character_coverage=1.0, split_digits=True)
    write_tokenizer_json(bpe, HERE + "/sp_bpe/tokenizer.json")
    with open(HERE + "/sp_bpe/tokenizer_config.json", "w") as f:
        json.dump({"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
                   "eos_token": "</s>", "unk_token": "<unk>", "legacy": True}, f, indent=1)
        f.write("\n")
    uni = train(HERE + "/sp_uni", model_type="unigram", vocab_size=120,
                normalization_rule_name="identity", remove_extra_whitespaces=True,
                add_dummy_prefix=True, character_coverage=1.0)
    unibf = train(HERE + "/sp_unibf", model_type="unigram", vocab_size=420, byte_fallback=True,
                  normalization_rule_name="identity", remove_extra_whitespaces=False,
                  add_dummy_prefix=True, character_coverage=1.0, hard_vocab_limit=False)
    # The trainer records the rule file's path in the model: a fixed
    # relative name (in a scratch directory) keeps the model reproducible.
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        try:
            with open("rules.tsv", "w") as rules:
                rules.write("".join("%s\t%s\n" % r for r in RULES))
            ruled = train(HERE + "/sp_rules", model_type="unigram", vocab_size=100,
                          normalization_rule_tsv="rules.tsv", remove_extra_whitespaces=True,
                          add_dummy_prefix=True, character_coverage=1.0)
        finally:
            os.chdir(cwd)

    rows = []
    for name, sp in (("sp_bpe", bpe), ("sp_uni", uni), ("sp_unibf", unibf),
                     ("sp_rules", ruled)):
        for s in SP_CASES + (RULE_CASES if name == "sp_rules" else []):
            ids = sp.encode(s)
            # The decoder must give the text back (identity normalizer and
            # byte fallback; the other Unigram models collapse whitespace or
            # have unknowns, so only their ids are checked).
            if name in ("sp_bpe", "sp_unibf"):
                assert sp.decode(ids) == s, (s, sp.decode(ids))
            rows.append((name, "sp", s, ids))
    for parts in HF_CASES:
        ids = []
        for p in parts:
            ids += [bpe.piece_to_id(p)] if p in ("<s>", "</s>", "<sep>") else bpe.encode(p)
        rows.append(("sp_bpe", "hf", "".join(parts), ids))
    with open(HERE + "/expected.tsv", "w") as f:
        f.write("# model\tkind\ttext as UTF-8 hex\tids; written by make_sp_fixtures.py\n")
        for name, kind, s, ids in rows:
            f.write("%s\t%s\t%s\t%s\n" % (name, kind, s.encode().hex(),
                                          ",".join(map(str, ids))))
    print("wrote %d expectations" % len(rows))


if __name__ == "__main__":
    main()
