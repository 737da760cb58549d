/* The local provider: each backend is a child process (uv_spawn) listening on an ipc://
 * socket in the runtime directory. Children run in their own session so a terminal's Ctrl-C
 * reaches only the gateway, which then drains them in order; they die with the gateway
 * anyway (framegate-backend --parent-pid sets PR_SET_PDEATHSIG).
 *
 * A backend's stdout and stderr come back through pipes and leave as the gateway's own
 * structured lines (event=backend_output backend=NAME stream=... line="..."): darknet's
 * parser chatter (layer tables, "mask_scale: Using default ...") at debug, everything else at
 * info. Bounded: a line is cut at LINE_CAP bytes, and at most WINDOW_LINES lines per backend
 * per WINDOW_MS are logged (the rest are counted and reported), so a chatty backend costs a
 * fixed buffer and cannot flood the log. */
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
#define LINE_CAP 1024     /* bytes of one backend output line kept; the rest is cut */
#define WINDOW_MS 10000   /* the output rate limit's window */
#define WINDOW_LINES 200  /* lines logged per backend per window; more are dropped, counted */

typedef struct {
    uv_pipe_t pipe;
    struct gw_instance *inst;
    const char *name; /* "stdout", "stderr" */
    size_t len;       /* bytes in line */
    int cut;          /* the current line was too long: skip to its end */
    char line[LINE_CAP];
} out_stream_t;

struct gw_instance {
    uv_process_t proc;
    out_stream_t out[2]; /* the child's stdout, stderr */
    int handles;         /* handles not yet closed; the instance is freed at 0 */
    int spawned;         /* uv_spawn succeeded: report the exit through on_exit */
    uint64_t window_start;
    int window_lines;
    uint64_t dropped;    /* lines not logged over the rate limit, since the last report */
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
    char rbuf[4096]; /* read scratch for every pipe: loop thread, consumed before the next */
} local_t;

/* ---- backend output -> structured log lines ---- */

/* darknet prints its parser's progress on stderr: the layer table, "Loading weights from
 * ...Done!", "<key>: Using default '<v>'" for each option a cfg leaves out. Nothing in it is
 * news to an operator, so it goes to debug. */
static int is_darknet_chatter(const char *l, size_t n)
{
    size_t i = 0;
    if (n == 0)
        return 1;
    if (strncmp(l, "layer ", 6) == 0 && strstr(l, "filters") != NULL)
        return 1;
    if (strncmp(l, "Loading weights from ", 21) == 0 || strncmp(l, "Total BFLOPS", 12) == 0 ||
        strncmp(l, "Learning Rate:", 14) == 0 || strncmp(l, "seen ", 5) == 0)
        return 1;
    if (strstr(l, ": Using default '") != NULL)
        return 1;
    /* A layer table row: spaces, the layer index, then the layer type. */
    while (i < n && l[i] == ' ')
        i++;
    if (i == 0 || i >= n || l[i] < '0' || l[i] > '9')
        return 0;
    while (i < n && l[i] >= '0' && l[i] <= '9')
        i++;
    return i < n && l[i] == ' ';
}

/* Quotes a line for a key="value" pair: backslash, quote, control and non-ASCII bytes are
 * escaped, so one backend line is one log line whatever it holds. */
static void escape_line(const char *l, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)l[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

static void report_dropped(gw_instance_t *inst)
{
    if (inst->dropped > 0)
        GW_LOG_W("backend_output_dropped", "backend=%s lines=%llu window_ms=%d", inst->name,
                 (unsigned long long)inst->dropped, WINDOW_MS);
    inst->dropped = 0;
}

static void emit_line(out_stream_t *s, int cut)
{
    gw_instance_t *inst = s->inst;
    local_t *lp = (local_t *)inst->provider;
    int level = is_darknet_chatter(s->line, s->len) ? GW_LOG_DEBUG : GW_LOG_INFO;
    uint64_t now = uv_now(lp->loop);
    char esc[LINE_CAP * 4 / 3];

    if (!gw_log_enabled(level))
        return;
    if (now - inst->window_start >= WINDOW_MS) {
        report_dropped(inst);
        inst->window_start = now;
        inst->window_lines = 0;
    }
    if (inst->window_lines >= WINDOW_LINES) {
        inst->dropped++;
        return;
    }
    inst->window_lines++;
    escape_line(s->line, s->len, esc, sizeof esc);
    gw_log(level, "backend_output", "backend=%s stream=%s%s line=\"%s\"", inst->name, s->name,
           cut ? " cut=1" : "", esc);
}

/* Splits bytes into lines; a line longer than LINE_CAP is logged cut, its rest skipped. */
static void take_bytes(out_stream_t *s, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (b[i] == '\n') {
            if (!s->cut) {
                if (s->len > 0 && s->line[s->len - 1] == '\r')
                    s->len--;
                s->line[s->len] = '\0';
                emit_line(s, 0);
            }
            s->len = 0;
            s->cut = 0;
        } else if (!s->cut) {
            if (s->len == LINE_CAP - 1) {
                s->line[s->len] = '\0';
                emit_line(s, 1);
                s->len = 0;
                s->cut = 1;
            } else {
                s->line[s->len++] = b[i];
            }
        }
    }
}

static void on_out_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    out_stream_t *s = h->data;
    local_t *lp = (local_t *)s->inst->provider;
    (void)suggested;
    *buf = uv_buf_init(lp->rbuf, sizeof lp->rbuf);
}

static void on_out_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    out_stream_t *s = st->data;
    if (n > 0)
        take_bytes(s, buf->base, (size_t)n);
    else if (n < 0) /* EOF or error: the child closed its end; the exit closes ours */
        uv_read_stop(st);
}

static void finish_instance(gw_instance_t *inst);

static void on_proc_closed(uv_handle_t *h)
{
    gw_instance_t *inst = (gw_instance_t *)h;
    if (--inst->handles == 0)
        finish_instance(inst);
}

static void on_pipe_closed(uv_handle_t *h)
{
    gw_instance_t *inst = ((out_stream_t *)h->data)->inst;
    if (--inst->handles == 0)
        finish_instance(inst);
}

/* Reads what the child left in a pipe (non-blocking: libuv's pipes are), logs a last partial
 * line, and closes it. Called once the child has exited, so nothing more can come but from
 * its own children, which are not waited for. */
static void drain_and_close(out_stream_t *s)
{
    local_t *lp = (local_t *)s->inst->provider;
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&s->pipe, &fd) == 0) {
        /* Bounded: at most 64 reads of the scratch buffer (256 KiB) after the exit. */
        for (int i = 0; i < 64; i++) {
            ssize_t n = read(fd, lp->rbuf, sizeof lp->rbuf);
            if (n <= 0)
                break;
            take_bytes(s, lp->rbuf, (size_t)n);
        }
    }
    if (s->len > 0 && !s->cut) {
        s->line[s->len] = '\0';
        emit_line(s, 0);
    }
    s->len = 0;
    uv_close((uv_handle_t *)&s->pipe, on_pipe_closed);
}

/* ---- instances ---- */

static void finish_instance(gw_instance_t *inst)
{
    local_t *lp = (local_t *)inst->provider;
    char why[128];

    if (!inst->spawned) {
        free(inst);
        return;
    }
    report_dropped(inst);

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

/* The exit is reported once the process and both pipes are closed, so that no callback
 * can reach the instance (or, after destroy, the provider) later. */
static void on_exit_proc(uv_process_t *proc, int64_t status, int term_signal)
{
    gw_instance_t *inst = (gw_instance_t *)proc;
    inst->status = status;
    inst->signal = term_signal;
    uv_close((uv_handle_t *)proc, on_proc_closed);
    for (int i = 0; i < 2; i++)
        drain_and_close(&inst->out[i]);
}

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
    /* 33 fixed slots at most (every optional flag set), MAX_ARGS of backend_args, the NULL */
    char *argv[MAX_ARGS + 40], extra[GW_CONFIG_STR_MAX], ppid[32], thr[32], nms[32], size[16],
        topk[16], side[16], pixels[24];
    int argc = 0, rv, n;

    if (inst == NULL)
        return PROTO_ENOMEM;
    inst->provider = p;
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
    if (m->precision == GW_PRECISION_BF16) {
        argv[argc++] = "--precision";
        argv[argc++] = "bf16";
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

    for (int i = 0; i < 2; i++) {
        out_stream_t *s = &inst->out[i];
        s->inst = inst;
        s->name = i == 0 ? "stdout" : "stderr";
        /* uv_pipe_init cannot fail for a valid loop; the handle is closed in every path. */
        uv_pipe_init(lp->loop, &s->pipe, 0);
        s->pipe.data = s;
    }
    inst->handles = 3;
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE,
         .data.stream = (uv_stream_t *)&inst->out[0].pipe},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE,
         .data.stream = (uv_stream_t *)&inst->out[1].pipe},
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
        /* uv_spawn failures still need the handles closed before they can be freed. */
        uv_close((uv_handle_t *)&inst->proc, on_proc_closed);
        for (int i = 0; i < 2; i++)
            uv_close((uv_handle_t *)&inst->out[i].pipe, on_pipe_closed);
        return rv;
    }
    inst->spawned = 1;
    inst->window_start = uv_now(lp->loop);
    for (int i = 0; i < 2; i++)
        uv_read_start((uv_stream_t *)&inst->out[i].pipe, on_out_alloc, on_out_read);
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
        /* Configured: created private if missing, then checked whether or not we made it
         * (gw_config_validate checked it too, but it could have been planted since). */
        char err[GW_CONFIG_STR_MAX + 160];
        int rv;
        snprintf(lp->dir, sizeof lp->dir, "%s", cfg->runtime_dir);
        if (mkdir(lp->dir, 0700) == 0) {
            lp->made_dir = 1;
        } else if (errno != EEXIST) {
            rv = -errno;
            GW_LOG_E("runtime_dir", "key=runtime_dir path=%s error=\"%s\"", lp->dir,
                     strerror(errno));
            free(lp);
            return rv;
        }
        if ((rv = gw_config_check_runtime_dir(lp->dir, err, sizeof err)) != 0) {
            GW_LOG_E("runtime_dir", "error=\"%s\"", err);
            if (lp->made_dir)
                rmdir(lp->dir);
            free(lp);
            return rv;
        }
    } else {
        /* Default: a new private directory (mkdtemp: 0700, a name no one can predict), one
         * per model, removed by destroy. A fixed name such as framegate-<pid> could be
         * created first by another user. */
        const char *tmp = getenv("TMPDIR");
        int n = snprintf(lp->dir, sizeof lp->dir, "%s/framegate-XXXXXX",
                         tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
        if (n < 0 || (size_t)n >= sizeof lp->dir || mkdtemp(lp->dir) == NULL) {
            int rv = n < 0 || (size_t)n >= sizeof lp->dir ? PROTO_ETOOBIG : -errno;
            GW_LOG_E("runtime_dir", "path=%s error=\"%s\"", lp->dir, proto_strerror(rv));
            free(lp);
            return rv;
        }
        lp->made_dir = 1;
    }
    GW_LOG_I("runtime_dir", "model=%s path=%s created=%d", model->name, lp->dir, lp->made_dir);
    if (access(lp->command, X_OK) != 0)
        GW_LOG_W("backend_command", "path=%s error=\"%s\"", lp->command, strerror(errno));
    *out = &lp->super;
    return 0;
}
