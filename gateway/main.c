/* framegate: the gateway executable. Parses the command line into a configuration and runs
 * the gateway (app.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "config.h"
#include "log.h"

extern char **environ;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: framegate [--config PATH] [--listen HOST:PORT] [--set KEY=VALUE]...\n"
            "                 [--print-config] [--help] [--version]\n"
            "\n"
            "HTTP gateway that load-balances camera frames over autoscaled darknet backends.\n"
            "\n"
            "  --config PATH       read KEY = VALUE lines (default: built-in defaults, or\n"
            "                      $FRAMEGATE_CONFIG); see config/framegate.conf for every key\n"
            "  --listen HOST:PORT  where to accept HTTP (default 0.0.0.0:8080)\n"
            "  --set KEY=VALUE     override one key; repeatable; applied after the file and\n"
            "                      the FRAMEGATE_<KEY> environment variables; a model's keys\n"
            "                      are model.NAME.KEY (e.g. model.face.max_backends=4)\n"
            "  --print-config      print the effective configuration and exit\n"
            "  --help, --version\n");
}

int main(int argc, char **argv)
{
    static gw_config_t cfg; /* the only global: read-only once the loop runs */
    char err[1024];
    const char *config_path = getenv("FRAMEGATE_CONFIG");
    int print_config = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("framegate %s\n", FG_VERSION);
            return 0;
        }
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            config_path = argv[++i];
    }

    gw_config_defaults(&cfg);
    if (config_path != NULL && config_path[0] != '\0' &&
        gw_config_load_file(&cfg, config_path, err, sizeof err) != 0) {
        fprintf(stderr, "framegate: %s\n", err);
        return 2;
    }
    if (gw_config_load_env(&cfg, environ, err, sizeof err) != 0) {
        fprintf(stderr, "framegate: %s\n", err);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rv = 0;
        if (strcmp(a, "--config") == 0) {
            i++;
        } else if (strcmp(a, "--print-config") == 0) {
            print_config = 1;
        } else if (strcmp(a, "--listen") == 0 && i + 1 < argc) {
            rv = gw_config_set(&cfg, "listen", argv[++i], "--listen", err, sizeof err);
        } else if (strcmp(a, "--set") == 0 && i + 1 < argc) {
            char kv[2048];
            snprintf(kv, sizeof kv, "%s", argv[++i]);
            char *eq = strchr(kv, '=');
            if (eq == NULL) {
                fprintf(stderr, "framegate: --set %s: expected KEY=VALUE\n", kv);
                return 2;
            }
            *eq = '\0';
            rv = gw_config_set(&cfg, kv, eq + 1, "--set", err, sizeof err);
        } else {
            fprintf(stderr, "framegate: unknown or incomplete argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (rv != 0) {
            fprintf(stderr, "framegate: %s\n", err);
            return 2;
        }
    }
    if (gw_config_validate(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "framegate: %s\n", err);
        return 2;
    }
    if (print_config) {
        gw_config_print(&cfg, stdout);
        return 0;
    }
    gw_log_set_level(cfg.log_level);
    return gw_app_run(&cfg, argv[0]);
}
