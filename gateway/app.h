/* The gateway process: one libuv loop holding the HTTP server, the backend pool with its
 * provider and autoscaler, the metrics registry and the signal handlers. */
#ifndef GW_APP_H
#define GW_APP_H

#include "config.h"

/* Runs the gateway until SIGTERM/SIGINT has been handled (graceful drain). `cfg` must stay
 * valid and unchanged for the whole run; argv0 helps find framegate-backend. Returns the
 * process exit code: 0 after a clean shutdown, 1 if start-up failed (already logged). */
int gw_app_run(const gw_config_t *cfg, const char *argv0);

#endif
