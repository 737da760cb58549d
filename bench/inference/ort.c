/* The ONNX Runtime peer: a node worker over two pipes (ort.h). */
#include "ort.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct ort_peer {
    pid_t pid;
    FILE *to, *from;
    int frames;
};

static int run_wait(char *const argv[], char *err, size_t errcap)
{
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errcap, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    snprintf(err, errcap, "%s %s: exit %d", argv[0], argv[1],
             WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    return -1;
}

int ort_convert(const char *dir, const char *cfg, const char *weights, const char *onnx, char *err,
                size_t errcap)
{
    char script[1024];
    snprintf(script, sizeof script, "%s/darknet2onnx.py", dir);
    char *argv[] = {"/usr/bin/python3", script, (char *)cfg, (char *)weights, (char *)onnx, NULL};
    return run_wait(argv, err, errcap);
}

/* One reply line; "error ..." and EOF (the worker died) are failures. */
static int reply(ort_peer_t *p, char *line, size_t cap, char *err, size_t errcap)
{
    fflush(p->to);
    if (fgets(line, (int)cap, p->from) == NULL) {
        snprintf(err, errcap, "ONNX Runtime worker exited");
        return -1;
    }
    line[strcspn(line, "\n")] = '\0';
    if (strncmp(line, "error", 5) == 0) {
        snprintf(err, errcap, "ONNX Runtime worker: %s", line);
        return -1;
    }
    return 0;
}

ort_peer_t *ort_peer_start(const char *dir, const char *onnx, int threads, char *version,
                           size_t vcap, char *err, size_t errcap)
{
    char script[1024], th[16], line[512];
    snprintf(script, sizeof script, "%s/ort/ort_worker.mjs", dir);
    snprintf(th, sizeof th, "%d", threads);
    if (access(script, R_OK) != 0) {
        snprintf(err, errcap, "%s: %s", script, strerror(errno));
        return NULL;
    }
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0) {
        snprintf(err, errcap, "pipe: %s", strerror(errno));
        return NULL;
    }
    if (pipe2(out, O_CLOEXEC) != 0) {
        snprintf(err, errcap, "pipe: %s", strerror(errno));
        close(in[0]), close(in[1]);
        return NULL;
    }
    ort_peer_t *p = calloc(1, sizeof *p);
    pid_t pid = p != NULL ? fork() : -1;
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        /* node resolves onnxruntime-node from the script's own directory */
        execlp("node", "node", script, onnx, th, (char *)NULL);
        _exit(127);
    }
    close(in[0]), close(out[1]);
    if (pid < 0) {
        snprintf(err, errcap, "fork: %s", strerror(errno));
        close(in[1]), close(out[0]);
        free(p);
        return NULL;
    }
    p->pid = pid;
    p->to = fdopen(in[1], "w");
    p->from = fdopen(out[0], "r");
    if (p->to == NULL || p->from == NULL) {
        snprintf(err, errcap, "fdopen: %s", strerror(errno));
        if (p->to == NULL)
            close(in[1]);
        if (p->from == NULL)
            close(out[0]);
        ort_peer_stop(p);
        return NULL;
    }
    if (reply(p, line, sizeof line, err, errcap) != 0 || strncmp(line, "ready ", 6) != 0) {
        if (strncmp(line, "ready ", 6) != 0 && err[0] == '\0')
            snprintf(err, errcap, "ONNX Runtime worker: %s", line);
        ort_peer_stop(p);
        return NULL;
    }
    if (version != NULL)
        snprintf(version, vcap, "%.*s", (int)strcspn(line + 6, " "), line + 6);
    return p;
}

int ort_peer_load(ort_peer_t *p, const float *input, size_t n, const char *tmpdir, char *err,
                  size_t errcap)
{
    char path[1024], line[256];
    snprintf(path, sizeof path, "%s/ort-frame-%d.f32", tmpdir, p->frames);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(input, sizeof(float), n, f) != n) {
        snprintf(err, errcap, "%s: %s", path, strerror(errno));
        if (f != NULL)
            fclose(f);
        return -1;
    }
    fclose(f);
    fprintf(p->to, "load %s\n", path);
    int rv = reply(p, line, sizeof line, err, errcap);
    unlink(path); /* the worker keeps its own copy */
    if (rv != 0)
        return -1;
    return p->frames++;
}

int ort_peer_run(ort_peer_t *p, int k, double *ms, char *err, size_t errcap)
{
    char line[128];
    fprintf(p->to, "run %d\n", k);
    if (reply(p, line, sizeof line, err, errcap) != 0)
        return -1;
    *ms = strtod(line, NULL);
    return 0;
}

long ort_peer_outputs(ort_peer_t *p, int k, float *out, size_t cap, const char *tmpdir, char *err,
                      size_t errcap)
{
    char path[1024], line[128];
    snprintf(path, sizeof path, "%s/ort-out.f32", tmpdir);
    fprintf(p->to, "dump %d %s\n", k, path);
    if (reply(p, line, sizeof line, err, errcap) != 0)
        return -1;
    long n = strtol(line + 3, NULL, 10);
    FILE *f = fopen(path, "rb");
    size_t want = (size_t)n < cap ? (size_t)n : cap;
    if (f == NULL || fread(out, sizeof(float), want, f) != want) {
        snprintf(err, errcap, "%s: short read", path);
        n = -1;
    }
    if (f != NULL)
        fclose(f);
    unlink(path);
    return n;
}

/* ns on CPU of every thread of pid so far; -1 when /proc cannot tell. */
static long long cpu_ns(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    long long sum = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char f[300];
        snprintf(f, sizeof f, "/proc/%d/task/%.200s/schedstat", (int)pid, e->d_name);
        FILE *fp = fopen(f, "r");
        long long ns = 0;
        if (fp != NULL) {
            if (fscanf(fp, "%lld", &ns) == 1)
                sum += ns;
            fclose(fp);
        }
    }
    closedir(d);
    return sum;
}

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

double ort_peer_settle(ort_peer_t *p, int max_ms)
{
    if (p == NULL || p->pid <= 0)
        return 0;
    double t0 = mono_ms();
    long long prev = cpu_ns(p->pid);
    while (prev >= 0 && mono_ms() - t0 < max_ms) {
        nanosleep(&(struct timespec){.tv_nsec = 2000000L}, NULL);
        long long now = cpu_ns(p->pid);
        if (now < 0 || now - prev < 200000)
            break;
        prev = now;
    }
    return mono_ms() - t0;
}

long long ort_peer_cpu_ns(ort_peer_t *p)
{
    return p != NULL && p->pid > 0 ? cpu_ns(p->pid) : -1;
}

void ort_peer_stop(ort_peer_t *p)
{
    if (p == NULL)
        return;
    if (p->to != NULL)
        fclose(p->to); /* EOF on the worker's stdin ends it */
    if (p->from != NULL)
        fclose(p->from);
    if (p->pid > 0) {
        int st;
        while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR)
            ;
    }
    free(p);
}
