/* cli_lm.h — the one-shot commands for causal language models:
 * `aflorad generate` (text from a model, optionally with an adapter) and
 * `aflorad convert llama2c` (a llama2.c checkpoint as a Hugging Face folder).
 * cli.c lists them in its command table. */
#ifndef AFLO_CLI_LM_H
#define AFLO_CLI_LM_H

extern const char generate_usage[];
extern const char convert_usage[];

int cmd_generate(int argc, char **argv);
int cmd_convert(int argc, char **argv);

#endif
