/* The local provider: each backend is a child process (uv_spawn) listening on an ipc://
 * socket in the runtime directory. Children run in their own session so a terminal's Ctrl-C
 * reaches only the gateway, which then drains them in order; they die with the gateway
 * anyway (framegate-backend --parent-pid sets PR_SET_PDEATHSIG). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "provider.h"

#define MAX_ARGS 64

struct gw_instance {
    uv_process_t proc;
    gw_provider_t *provider;
    void *owner;
    char name[64];
    char path[256]; /* socket file, removed after exit */
    int pid;
    int64_t status;
    int signal;
    gw_instance_t *next, *prev;
};

typedef struct {
    gw_provider_t super;
    uv_loop_t *loop;
    const gw_config_t *cfg;
    const gw_model_t *model;
    char command[GW_CONFIG_STR_MAX];
    char dir[GW_CONFIG_STR_MAX];
    int made_dir;
    uint64_t seq;
    int live;
    gw_instance_t *instances;
} local_t;

static void on_closed(uv_handle_t *h)
{
    gw_instance_t *inst = (gw_instance_t *)h;
    local_t *lp = (local_t *)inst->provider;
    char why[128];

    if (inst->signal != 0)
        snprintf(why, sizeof why, "killed by signal %d (%s)", inst->signal,
                 strsignal(inst->signal));
    else
        snprintf(why, sizeof why, "exited with status %lld", (long long)inst->status);
    unlink(inst->path);
    if (inst->prev)
        inst->prev->next = inst->next;
    else
        lp->instances = inst->next;
    if (inst->next)
        inst->next->prev = inst->prev;
    lp->live--;
    lp->super.on_exit(inst->owner, inst, inst->status, inst->signal, why);
    free(inst);
}

static void on_exit_proc(uv_process_t *proc, int64_t status, int term_signal)
{
    gw_instance_t *inst = (gw_instance_t *)proc;
    inst->status = status;
    inst->signal = term_signal;
    uv_close((uv_handle_t *)proc, on_closed);
}

static void on_spawn_failed_closed(uv_handle_t *h) { free(h); }

/* Splits backend_args on spaces into argv (no quoting: paths with spaces go in their own
 * keys). `store` holds the copied words. */
static int split_args(const char *args, char *store, size_t cap, char **argv, int max)
{
    int n = 0;
    if (strlen(args) >= cap)
        return PROTO_ETOOBIG;
    strcpy(store, args);
    for (char *save = NULL, *w = strtok_r(store, " \t", &save); w != NULL;
         w = strtok_r(NULL, " \t", &save)) {
        if (n >= max)
            return PROTO_ETOOBIG;
        argv[n++] = w;
    }
    return n;
}

static int local_start(gw_provider_t *p, const char *name, void *owner, gw_instance_t **out,
                       char *addr, size_t addr_cap)
{
    local_t *lp = (local_t *)p;
    const gw_model_t *m = lp->model;
    gw_instance_t *inst = calloc(1, sizeof *inst);
    char *argv[MAX_ARGS + 32], extra[GW_CONFIG_STR_MAX], ppid[32], thr[32], nms[32], size[16],
        topk[16], side[16], pixels[24];
    int argc = 0, rv, n;

    if (inst == NULL)
        return PROTO_ENOMEM;
    snprintf(inst->name, sizeof inst->name, "%s", name);
    n = snprintf(inst->path, sizeof inst->path, "%s/%s-%llu.sock", lp->dir, name,
                 (unsigned long long)++lp->seq);
    /* sun_path holds 108 bytes: a longer ipc path would fail later, obscurely. */
    if (n < 0 || n >= 100 || (size_t)n + 7 >= addr_cap) {
        free(inst);
        return PROTO_ETOOBIG;
    }
    snprintf(addr, addr_cap, "ipc://%s", inst->path);
    snprintf(ppid, sizeof ppid, "%d", (int)getpid());
    snprintf(thr, sizeof thr, "%g", m->threshold);
    snprintf(nms, sizeof nms, "%g", m->nms);
    snprintf(size, sizeof size, "%d", m->input_size);
    snprintf(topk, sizeof topk, "%d", m->top_k);
    snprintf(side, sizeof side, "%d", lp->cfg->max_image_side);
    snprintf(pixels, sizeof pixels, "%d", lp->cfg->max_image_pixels);

    argv[argc++] = lp->command;
    argv[argc++] = "--listen";
    argv[argc++] = addr;
    argv[argc++] = "--parent-pid";
    argv[argc++] = ppid;
    argv[argc++] = "--instance";
    argv[argc++] = inst->name;
    argv[argc++] = "--model-name";
    argv[argc++] = (char *)m->name;
    argv[argc++] = "--cfg";
    argv[argc++] = (char *)m->cfg;
    argv[argc++] = "--weights";
    argv[argc++] = (char *)m->weights;
    argv[argc++] = "--names";
    argv[argc++] = (char *)m->names;
    argv[argc++] = "--threshold";
    argv[argc++] = thr;
    argv[argc++] = "--nms";
    argv[argc++] = nms;
    argv[argc++] = "--max-side";
    argv[argc++] = side;
    argv[argc++] = "--max-pixels";
    argv[argc++] = pixels;
    /* Only what differs from the backend's defaults, so a backend that predates these flags
     * still runs the models that do not need them. */
    if (m->preprocess != GW_PRE_DARKNET) {
        argv[argc++] = "--preprocess";
        argv[argc++] = m->preprocess == GW_PRE_FACEAPI ? "faceapi" : "darknet";
    }
    if (m->decode == GW_DECODE_FAST) {
        argv[argc++] = "--decode";
        argv[argc++] = "fast";
    }
    if (m->input_size != 0) {
        argv[argc++] = "--input-size";
        argv[argc++] = size;
    }
    if (m->top_k != 0) {
        argv[argc++] = "--top-k";
        argv[argc++] = topk;
    }
    if ((n = split_args(m->backend_args, extra, sizeof extra, argv + argc, MAX_ARGS)) < 0) {
        free(inst);
        return n;
    }
    argc += n;
    argv[argc] = NULL;

    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = 1},
        {.flags = UV_INHERIT_FD, .data.fd = 2},
    };
    uv_process_options_t opts = {
        .exit_cb = on_exit_proc,
        .file = lp->command,
        .args = argv,
        .flags = UV_PROCESS_DETACHED,
        .stdio_count = 3,
        .stdio = stdio,
    };
    unlink(inst->path);
    if ((rv = uv_spawn(lp->loop, &inst->proc, &opts)) != 0) {
        /* uv_spawn failures still need the handle closed before it can be freed. */
        uv_close((uv_handle_t *)&inst->proc, on_spawn_failed_closed);
        return rv;
    }
    inst->provider = p;
    inst->owner = owner;
    inst->pid = inst->proc.pid;
    inst->next = lp->instances;
    if (lp->instances)
        lp->instances->prev = inst;
    lp->instances = inst;
    lp->live++;
    *out = inst;
    GW_LOG_D("backend_spawned", "backend=%s pid=%d addr=%s", name, inst->pid, addr);
    return 0;
}

static void local_stop(gw_provider_t *p, gw_instance_t *inst, int force)
{
    (void)p;
    if (!uv_is_closing((uv_handle_t *)&inst->proc))
        uv_process_kill(&inst->proc, force ? SIGKILL : SIGTERM);
}

static void local_instance_id(gw_provider_t *p, gw_instance_t *inst, char *buf, size_t cap)
{
    (void)p;
    snprintf(buf, cap, "%d", inst->pid);
}

static int local_live(gw_provider_t *p) { return ((local_t *)p)->live; }

static void local_destroy(gw_provider_t *p)
{
    local_t *lp = (local_t *)p;
    if (lp->made_dir)
        rmdir(lp->dir);
    free(lp);
}

static const gw_provider_ops_t local_ops = {
    .kind = "local",
    .start = local_start,
    .stop = local_stop,
    .instance_id = local_instance_id,
    .live = local_live,
    .destroy = local_destroy,
};

int gw_provider_local_create(gw_provider_t **out, uv_loop_t *loop, const gw_config_t *cfg,
                             const gw_model_t *model, const char *argv0,
                             gw_provider_exit_cb on_exit)
{
    local_t *lp = calloc(1, sizeof *lp);
    if (lp == NULL)
        return PROTO_ENOMEM;
    lp->super.ops = &local_ops;
    lp->super.on_exit = on_exit;
    lp->loop = loop;
    lp->cfg = cfg;
    lp->model = model;

    if (cfg->backend_command[0] != '\0') {
        snprintf(lp->command, sizeof lp->command, "%s", cfg->backend_command);
    } else {
        /* Default: the framegate-backend installed next to this framegate executable. */
        char exe[GW_CONFIG_STR_MAX];
        size_t len = sizeof exe;
        if (uv_exepath(exe, &len) != 0)
            snprintf(exe, sizeof exe, "%s", argv0);
        char *slash = strrchr(exe, '/');
        if (slash != NULL)
            *slash = '\0';
        else
            strcpy(exe, ".");
        snprintf(lp->command, sizeof lp->command, "%.*s/framegate-backend",
                 (int)(sizeof lp->command - 20), exe);
    }
    if (cfg->runtime_dir[0] != '\0') {
        snprintf(lp->dir, sizeof lp->dir, "%s", cfg->runtime_dir);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(lp->dir, sizeof lp->dir, "%s/framegate-%d",
                 tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp", (int)getpid());
    }
    if (mkdir(lp->dir, 0700) == 0)
        lp->made_dir = 1;
    else if (errno != EEXIST) {
        int rv = -errno;
        GW_LOG_E("runtime_dir", "path=%s error=\"%s\"", lp->dir, strerror(errno));
        free(lp);
        return rv;
    }
    if (access(lp->command, X_OK) != 0)
        GW_LOG_W("backend_command", "path=%s error=\"%s\"", lp->command, strerror(errno));
    *out = &lp->super;
    return 0;
}
