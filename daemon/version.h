/* version.h — aflorad's version, defined once: `aflorad --version`, GET
 * /healthz and the served OpenAPI document report it. Bump by hand on a
 * release. */
#ifndef AFLO_VERSION_H
#define AFLO_VERSION_H

#define AFLORAD_VERSION "0.1.0"

#endif
