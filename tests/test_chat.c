/* test_chat.c — chat templates (engine/tokenizer/chat_template.h) against
 * Jinja: tests/chat_fixtures/expected.json holds what python3-jinja2
 * renders with the published templates (make_chat_fixtures.py), and every
 * case must come out identical here, with the assistant turns (and only
 * they) marked trainable. Also: which family each template is, the errors
 * (unknown template, unsupported features, bad role, empty content, turn
 * order, missing BOS), and the template text a tokenizer folder supplies
 * (string, list of named templates, chat_template.jinja). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/folder.h"
#include "base/json.h"
#include "testutil.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

#define FIXTURES "tests/chat_fixtures"

static char err[1024];

static char *read_template(const char *name) {
    char path[256];
    snprintf(path, sizeof path, FIXTURES "/templates/%s.jinja", name);
    size_t len;
    char *s = read_text_file(path, 1 << 20, &len, err, sizeof err);
    if (!s) fail_msg("%s", err);
    return s;
}

static void parse_named(const char *name, chat_template *t) {
    char *src = read_template(name);
    if (chat_template_parse(src, t, err, sizeof err)) fail_msg("%s: %s", name, err);
    free(src);
}

static void test_families(void **state) {
    (void)state;
    static const struct {
        const char *file;
        chat_family family;
        const char *default_system;
    } want[] = {
        {"llama2", CHAT_LLAMA2, NULL},
        {"mistral", CHAT_MISTRAL, NULL},
        {"llama3", CHAT_LLAMA3, NULL},
        {"chatml", CHAT_CHATML, NULL},
        {"qwen2", CHAT_CHATML, "You are a helpful assistant."},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        chat_template t;
        parse_named(want[i].file, &t);
        assert_int_equal(t.family, want[i].family);
        if (want[i].default_system)
            assert_string_equal(t.default_system, want[i].default_system);
        else
            assert_null(t.default_system);
        chat_template_free(&t);
    }
}

/* Every fixture case: the same text as Jinja, spans that tile it, and the
 * trainable spans exactly the assistant turns Jinja's renderings give. */
static void test_matches_jinja(void **state) {
    (void)state;
    json_value *doc = read_json_file(FIXTURES "/expected.json", 1 << 24, err, sizeof err);
    if (!doc) fail_msg("%s", err);
    const json_value *cases = json_get(doc, "cases");
    assert_true(json_len(cases) >= 40);
    for (size_t c = 0; c < json_len(cases); c++) {
        const json_value *k = json_at(cases, c);
        const char *name = json_string(json_get(k, "template"), NULL);
        const json_value *msgs = json_get(k, "messages"), *train = json_get(k, "train");
        chat_template t;
        parse_named(name, &t);
        chat_message m[16];
        size_t n = json_len(msgs);
        assert_true(n > 0 && n <= 16);
        for (size_t i = 0; i < n; i++) {
            const json_value *mi = json_at(msgs, i);
            size_t rl;
            const char *role = json_string(json_get(mi, "role"), &rl);
            assert_int_equal(chat_role_parse(role, rl, &m[i].role), 0);
            m[i].content = json_string(json_get(mi, "content"), &m[i].len);
        }
        const char *bos = json_string(json_get(k, "bos"), NULL);
        const char *eos = json_string(json_get(k, "eos"), NULL);
        bool gen = json_bool(json_get(k, "add_generation_prompt"));
        chat_rendered r;
        if (chat_render(&t, m, n, gen, bos, eos, &r, err, sizeof err))
            fail_msg("case %zu (%s): %s", c, name, err);
        size_t wl;
        const char *want = json_string(json_get(k, "text"), &wl);
        if (r.len != wl || memcmp(r.text, want, wl) != 0)
            fail_msg("case %zu (%s, generation prompt %d):\n got  \"%s\"\n want \"%s\"", c, name,
                     gen, r.text, want);
        size_t at = 0, nt = 0;
        for (size_t s = 0; s < r.n; s++) {
            assert_int_equal(r.spans[s].off, at);
            assert_true(r.spans[s].len > 0);
            if (s > 0) assert_true(r.spans[s].train != r.spans[s - 1].train);
            at += r.spans[s].len;
            if (!r.spans[s].train) continue;
            assert_true(nt < json_len(train));
            size_t tl;
            const char *tw = json_string(json_at(train, nt++), &tl);
            if (r.spans[s].len != tl || memcmp(r.text + r.spans[s].off, tw, tl) != 0)
                fail_msg("case %zu (%s): trainable span %zu is \"%.*s\", want \"%s\"", c, name,
                         nt - 1, (int)r.spans[s].len, r.text + r.spans[s].off, tw);
        }
        assert_int_equal(at, r.len);
        assert_int_equal(nt, json_len(train));
        chat_rendered_free(&r);
        chat_template_free(&t);
    }
    json_free(doc);
}

static void test_unknown_templates(void **state) {
    (void)state;
    chat_template t;
    const char *zephyr = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ "
                         "'<|user|>\\n' + message['content'] + eos_token }}{% endif %}{% endfor %}";
    assert_int_equal(chat_template_parse(zephyr, &t, err, sizeof err), -1);
    /* its first 60 characters, the newline shown as a space */
    assert_non_null(strstr(err, "unknown chat template \"{% for message in messages %} {% if "
                                "message['role'] == 'user...\""));
    assert_non_null(strstr(err, "llama2, mistral, llama3 and chatml"));
    /* Llama-3.1's dated system block and tool templates are not rendered */
    const char *l31 = "{{- bos_token }}{%- set date_string = \"26 Jul 2024\" %}{{- "
                      "\"Cutting Knowledge Date: December 2023\\n\" }}<|start_header_id|>"
                      "<|end_header_id|><|eot_id|> trim";
    assert_int_equal(chat_template_parse(l31, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "Cutting Knowledge"));
    const char *tools = "{% if tools %}{% endif %}<|im_start|><|im_end|>";
    assert_int_equal(chat_template_parse(tools, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "\"tools\", which aflorad does not render"));
    /* a ChatML template writing its own system turn under another condition */
    const char *odd = "{% if add_generation_prompt %}{{ '<|im_start|>system\\nHi<|im_end|>' }}"
                      "{% endif %}";
    assert_int_equal(chat_template_parse(odd, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "condition"));
}

static void test_render_errors(void **state) {
    (void)state;
    chat_role role;
    assert_int_equal(chat_role_parse("tool", 4, &role), -1);
    assert_int_equal(chat_role_parse("users", 5, &role), -1);
    assert_int_equal(chat_role_parse("assistant", 9, &role), 0);
    assert_int_equal(role, CHAT_ASSISTANT);

    chat_template l2, l3;
    parse_named("llama2", &l2);
    parse_named("llama3", &l3);
    chat_rendered r;
#define MSG(role_, text_) \
    { role_, text_, sizeof text_ - 1 }
    const chat_message empty[] = {MSG(CHAT_USER, "hi"), MSG(CHAT_ASSISTANT, " \n\t")};
    assert_int_equal(chat_render(&l3, empty, 2, false, "<s>", "</s>", &r, err, sizeof err), -1);
    assert_string_equal(err, "messages[1] (assistant) is empty");
    assert_null(r.text);
    const chat_message late_sys[] = {MSG(CHAT_USER, "hi"), MSG(CHAT_SYSTEM, "be brief")};
    assert_int_equal(chat_render(&l3, late_sys, 2, false, "<s>", "</s>", &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "messages[1] is a system message"));
    const chat_message only_sys[] = {MSG(CHAT_SYSTEM, "be brief")};
    assert_int_equal(chat_render(&l3, only_sys, 1, false, "<s>", "</s>", &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "no user or assistant message"));
    const chat_message twice[] = {MSG(CHAT_SYSTEM, "s"), MSG(CHAT_USER, "a"), MSG(CHAT_USER, "b")};
    assert_int_equal(chat_render(&l2, twice, 3, false, "<s>", "</s>", &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "messages[2] is user where the template wants assistant"));
    /* ...which Llama-3 renders: its template has no such rule */
    assert_int_equal(chat_render(&l3, twice, 3, false, "<s>", "</s>", &r, err, sizeof err), 0);
    chat_rendered_free(&r);
    assert_int_equal(chat_render(&l3, twice, 3, false, NULL, "</s>", &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "writes a BOS token, the tokenizer has none"));
#undef MSG
    assert_string_equal(chat_end_of_turn(&l3, "</s>"), "<|eot_id|>");
    assert_string_equal(chat_end_of_turn(&l2, "</s>"), "</s>");
    chat_template_free(&l2);
    chat_template_free(&l3);
}

/* A tokenizer folder: sp_bpe's tokenizer.json and the given config (and
 * chat_template.jinja when jinja is not NULL). */
static tokenizer *folder_with(const char *dir, const char *config, const char *jinja) {
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (copy_file_atomic("tests/tokenizer_fixtures/sp_bpe/tokenizer.json", path, err, sizeof err))
        fail_msg("%s", err);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(config, f);
    assert_int_equal(fclose(f), 0);
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    unlink(path);
    if (jinja) {
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(jinja, f);
        assert_int_equal(fclose(f), 0);
    }
    tokenizer *t = tokenizer_load_dir(dir, err, sizeof err);
    if (!t) fail_msg("%s", err);
    return t;
}

static void test_tokenizer_template(void **state) {
    const char *dir = *state;
    tokenizer *t = tokenizer_load_dir("tests/tokenizer_fixtures/sp_bpe", err, sizeof err);
    assert_non_null(t);
    assert_null(tokenizer_chat_template(t));
    tokenizer_free(t);
    t = folder_with(dir, "{\"chat_template\": \"{{ bos_token }}\\n[INST]\"}", NULL);
    assert_string_equal(tokenizer_chat_template(t), "{{ bos_token }}\n[INST]");
    tokenizer_free(t);
    t = folder_with(dir,
                    "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}, "
                    "{\"name\": \"default\", \"template\": \"D\"}]}",
                    NULL);
    assert_string_equal(tokenizer_chat_template(t), "D");
    tokenizer_free(t);
    t = folder_with(dir, "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}]}",
                    NULL);
    assert_null(tokenizer_chat_template(t));
    tokenizer_free(t);
    t = folder_with(dir, "{}", "J{{ x }}");
    assert_string_equal(tokenizer_chat_template(t), "J{{ x }}");
    tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_families),
        cmocka_unit_test(test_matches_jinja),
        cmocka_unit_test(test_unknown_templates),
        cmocka_unit_test(test_render_errors),
        cmocka_unit_test_setup_teardown(test_tokenizer_template, tmpdir_setup, tmpdir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
