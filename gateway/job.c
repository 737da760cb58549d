#include "job.h"

#include <stdlib.h>
#include <string.h>

void gw_job_init(gw_job_t *job) { memset(job, 0, sizeof *job); }

void gw_job_fini(gw_job_t *job)
{
    free(job->rep_buf);
    job->rep_buf = NULL;
    job->rep_len = 0;
    memset(&job->rep, 0, sizeof job->rep);
}
