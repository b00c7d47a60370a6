/* demo.h — `aflorad demo`: foreground training of the built-in demo. */
#ifndef AFLO_DEMO_H
#define AFLO_DEMO_H

int demo_main(int argc, char **argv);

#endif
