/* serve.h — `aflorad serve`, the daemon's entry point. */
#ifndef AFLO_SERVE_H
#define AFLO_SERVE_H

int serve_main(int argc, char **argv);

#endif
