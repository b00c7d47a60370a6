#!/usr/bin/python3
"""make_chat_fixtures.py — what the published chat templates render, for test_chat.c.

Reads templates/*.jinja (the chat_template strings of the model families
aflorad renders, as json.loads gives them from each model's
tokenizer_config.json; see README.md for where each comes from) and writes
expected.json next to this script: for every template and conversation
below, with add_generation_prompt false and true,
  "text"   what Jinja renders, with the environment transformers'
           apply_chat_template uses (trim_blocks, lstrip_blocks, a
           raise_exception() global, bos_token / eos_token variables);
  "train"  the text of each assistant turn, derived from Jinja alone: the
           rendering of the conversation up to and including that assistant
           message, less the rendering of the messages before it with the
           generation prompt, cut after the turn's end token (eos_token,
           <|eot_id|> or <|im_end|>) — what aflorad must put loss on.
Run from anywhere (CI never runs it; the C test reads the committed file).
Needs Debian's python3-jinja2: /usr/bin/python3 make_chat_fixtures.py
"""
import json
import os

import jinja2
import jinja2.sandbox

HERE = os.path.dirname(os.path.abspath(__file__))

# Special token strings each family's tokenizer has (bos None: the template
# never writes one).
TOKENS = {
    "llama2": ("<s>", "</s>", "</s>"),
    "mistral": ("<s>", "</s>", "</s>"),
    "llama3": ("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"),
    "chatml": (None, "<|endoftext|>", "<|im_end|>"),
    "qwen2": (None, "<|endoftext|>", "<|im_end|>"),
}


def sys_(c):
    return {"role": "system", "content": c}


def user(c):
    return {"role": "user", "content": c}


def asst(c):
    return {"role": "assistant", "content": c}


CONVERSATIONS = [
    # system + two exchanges
    [sys_("You are terse."), user("What is 2+2?"), asst("4."), user("And 3+3?"), asst("6.")],
    # no system, one exchange
    [user("Hello there"), asst("Hi! How can I help?")],
    # a question waiting for its answer (with and without system)
    [sys_("Answer in French."), user("Good morning")],
    [user("Name a colour"), asst("Red."), user("Another one")],
    # whitespace around contents (Llama-2 strips, Llama-3 trims, the others
    # keep it), newlines inside, and Unicode spaces Python's strip removes
    [user("  spaced out \n"), asst("\n two lines\nof answer  ")],
    [sys_("\u00a0be kind\u3000"), user("caf\u00e9 \u2003"), asst("\u2009voil\u00e0\u00a0")],
]


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def environment():
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env


def render(tmpl, family, messages, gen):
    bos, eos, _ = TOKENS[family]
    return tmpl.render(messages=messages, add_generation_prompt=gen, bos_token=bos or "",
                       eos_token=eos)


def train_spans(tmpl, family, messages):
    end = TOKENS[family][2]
    spans = []
    for k, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render(tmpl, family, messages[:k], True) if k else ""
        upto = render(tmpl, family, messages[:k + 1], False)
        assert upto.startswith(before), (family, k)
        turn = upto[len(before):]
        cut = turn.rfind(end)
        assert cut >= 0, (family, k, turn)
        spans.append(turn[:cut + len(end)])
    return spans


def main():
    env = environment()
    cases = []
    for family in sorted(TOKENS):
        with open(os.path.join(HERE, "templates", family + ".jinja")) as f:
            tmpl = env.from_string(f.read())
        for messages in CONVERSATIONS:
            for gen in (False, True):
                bos, eos, _ = TOKENS[family]
                cases.append({"template": family, "bos": bos, "eos": eos,
                              "add_generation_prompt": gen, "messages": messages,
                              "text": render(tmpl, family, messages, gen),
                              "train": train_spans(tmpl, family, messages)})
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump({"generator": "make_chat_fixtures.py, jinja2 " + jinja2.__version__,
                   "cases": cases}, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
