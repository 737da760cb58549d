/* framegate-bench: a load harness for framegate (and any HTTP endpoint taking frames). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "load.h"
#include "report.h"

#define MAX_FILES 64

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: framegate-bench [options]\n"
        "  --url URL            target, http[s]://HOST:PORT/PATH (default\n"
        "                       http://127.0.0.1:8080/v1/detect); HOST is an IP address,\n"
        "                       [IPv6] or a name; it must be loopback unless --allow-remote\n"
        "  --users N            closed loop: simulated cameras, one request in flight each\n"
        "                       (default 10)\n"
        "  --spawn-rate R       users started per second (default: all at once)\n"
        "  --rate RPS           open loop instead: a fixed arrival schedule of RPS requests/s,\n"
        "                       latency from the intended send time; --connections N of them\n"
        "  --connections N      open loop connections (default 64)\n"
        "  --duration S         seconds of sending (default 10); then in-flight requests get\n"
        "                       up to --timeout-ms to finish\n"
        "  --wait-ms N          closed loop pause between a user's requests (default 0)\n"
        "  --timeout-ms N       per request (default 60000); counted as a timeout failure\n"
        "  --body-file F        JPEG to send; repeat for several (round-robin; default\n"
        "                       /usr/share/darknet/data/dog.jpg)\n"
        "  --body-mode M        raw (image/jpeg), base64 (JSON) or multipart (default raw)\n"
        "  --csv FILE           per-second time series\n"
        "  --json FILE          final summary as JSON; \"-\" prints it on stdout instead of\n"
        "                       the text summary\n"
        "  --no-backends        do not poll GET /v1/backends each second\n"
        "  --allow-remote       allow a target outside 127.0.0.0/8 and ::1\n"
        "  --quiet              no per-second progress on stderr\n"
        "  --version, --help\n"
        "Failures are counted as Locust counts them: non-2xx answers (by status), connection\n"
        "errors and timeouts, each reported separately. Ctrl-C ends the run early and still\n"
        "prints the summary. Exit status: 0 after a run (failures included), 1 if it could\n"
        "not run, 2 for bad arguments.\n");
}

static int parse_url(const char *url, bench_opts_t *o)
{
    const char *p = url;
    o->https = strncmp(p, "https://", 8) == 0;
    if (!o->https && strncmp(p, "http://", 7) != 0)
        return -1;
    p += o->https ? 8 : 7;
    const char *slash = strchr(p, '/');
    size_t hostport = slash ? (size_t)(slash - p) : strlen(p);
    char hp[256];
    if (hostport >= sizeof hp)
        return -1;
    memcpy(hp, p, hostport);
    hp[hostport] = '\0';
    snprintf(o->path, sizeof o->path, "%s", slash ? slash : "/");
    char *colon = hp[0] == '[' ? strstr(hp, "]:") : strrchr(hp, ':');
    o->port = o->https ? 443 : 80;
    if (colon != NULL) {
        o->port = atoi(colon + (hp[0] == '[' ? 2 : 1));
        *colon = '\0';
    }
    const char *host = hp[0] == '[' ? hp + 1 : hp;
    if (hp[0] == '[' && colon == NULL)
        hp[strlen(hp) - 1] = '\0';
    if (host[0] == '\0')
        return -1;
    snprintf(o->host, sizeof o->host, "%.255s", host);
    return o->port > 0 && o->port < 65536 ? 0 : -1;
}

int main(int argc, char **argv)
{
    bench_opts_t o;
    const char *files[MAX_FILES];
    const char *url = "http://127.0.0.1:8080/v1/detect", *json_path = NULL, *csv_path = NULL;
    int allow_remote = 0, connections = 64;
    memset(&o, 0, sizeof o);
    o.users = 10;
    o.duration_s = 10;
    o.timeout_ms = 60000;
    o.poll_backends = 1;
    o.files = files;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            printf("framegate-bench %s\n", FG_VERSION);
            return 0;
        } else if (strcmp(a, "--allow-remote") == 0) {
            allow_remote = 1;
            continue;
        } else if (strcmp(a, "--quiet") == 0) {
            o.quiet = 1;
            continue;
        } else if (strcmp(a, "--no-backends") == 0) {
            o.poll_backends = 0;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "framegate-bench: %s needs a value (or is unknown)\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--url") == 0)
            url = v;
        else if (strcmp(a, "--users") == 0)
            o.users = atoi(v);
        else if (strcmp(a, "--spawn-rate") == 0)
            o.spawn_rate = atof(v);
        else if (strcmp(a, "--rate") == 0)
            o.rate = atof(v);
        else if (strcmp(a, "--connections") == 0)
            connections = atoi(v);
        else if (strcmp(a, "--duration") == 0)
            o.duration_s = atof(v);
        else if (strcmp(a, "--wait-ms") == 0)
            o.wait_ms = atoi(v);
        else if (strcmp(a, "--timeout-ms") == 0)
            o.timeout_ms = (uint64_t)atoll(v);
        else if (strcmp(a, "--body-file") == 0 && o.nfiles < MAX_FILES)
            files[o.nfiles++] = v;
        else if (strcmp(a, "--body-mode") == 0) {
            if (strcmp(v, "raw") == 0)
                o.body_mode = BODY_RAW;
            else if (strcmp(v, "base64") == 0)
                o.body_mode = BODY_BASE64;
            else if (strcmp(v, "multipart") == 0)
                o.body_mode = BODY_MULTIPART;
            else {
                fprintf(stderr, "framegate-bench: --body-mode raw|base64|multipart\n");
                return 2;
            }
        } else if (strcmp(a, "--csv") == 0)
            csv_path = v;
        else if (strcmp(a, "--json") == 0)
            json_path = v;
        else {
            fprintf(stderr, "framegate-bench: unknown argument %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (o.nfiles == 0)
        files[o.nfiles++] = "/usr/share/darknet/data/dog.jpg";
    if (parse_url(url, &o) != 0) {
        fprintf(stderr, "framegate-bench: bad --url %s\n", url);
        return 2;
    }
    if (o.https)
        o.poll_backends = 0; /* the /v1/backends poller speaks plain HTTP */
    /* The loopback check is on the resolved address, so a name cannot smuggle in a remote
     * target; --allow-remote is the one way to load another machine. */
    struct sockaddr_storage addr;
    if (bench_resolve(o.host, o.port, &addr) != 0) {
        fprintf(stderr, "framegate-bench: cannot resolve %s\n", o.host);
        return 2;
    }
    if (!bench_addr_is_loopback(&addr) && !allow_remote) {
        fprintf(stderr,
                "framegate-bench: %s is not a loopback address (127.0.0.0/8, ::1, "
                "localhost); pass --allow-remote to load a remote target\n",
                o.host);
        return 2;
    }
    if (o.rate > 0)
        o.users = connections;
    if (o.users < 1 || o.users > 100000 || o.duration_s <= 0 || o.duration_s > 86400 ||
        o.timeout_ms < 1 || o.timeout_ms > 86400000u || o.wait_ms < 0 || o.rate < 0) {
        fprintf(stderr, "framegate-bench: bad --users/--connections, --duration, --timeout-ms, "
                        "--wait-ms or --rate\n");
        return 2;
    }
    if (o.spawn_rate <= 0)
        o.spawn_rate = 1e9;
    if (csv_path && (o.csv = fopen(csv_path, "w")) == NULL) {
        fprintf(stderr, "framegate-bench: cannot write %s\n", csv_path);
        return 2;
    }
    o.handle_sigint = 1;
    bench_result_t res;
    int rv = bench_run(&o, &res);
    if (rv != 0) {
        fprintf(stderr, "framegate-bench: %s\n", proto_strerror(rv));
        if (o.csv)
            fclose(o.csv);
        return 1;
    }
    static const char *const modes[] = {"raw", "base64", "multipart"};
    bench_summary_t s = {
        .mode = o.rate > 0 ? "open" : "closed",
        .body_mode = modes[o.body_mode],
        .url = url,
        .users = o.users,
        .spawn_rate = o.spawn_rate >= 1e9 ? 0 : o.spawn_rate,
        .rate = o.rate,
        .duration_s = res.elapsed_s,
        .total = res.total,
        .hist = res.hist,
    };
    int to_stdout = json_path && strcmp(json_path, "-") == 0, status = 0;
    if (!to_stdout)
        bench_report_text(stdout, &s);
    if (res.interrupted)
        fprintf(stderr, "framegate-bench: interrupted after %.1f s\n", res.elapsed_s);
    if (json_path) {
        FILE *f = to_stdout ? stdout : fopen(json_path, "w");
        char *j = bench_report_json(&s);
        if (f == NULL || j == NULL || fprintf(f, "%s\n", j) < 0) {
            fprintf(stderr, "framegate-bench: cannot write %s\n", json_path);
            status = 1;
        }
        if (f && !to_stdout)
            fclose(f);
        free(j);
    }
    if (o.csv)
        fclose(o.csv);
    bench_result_fini(&res);
    return status;
}
