/* The page (GET /) and its static files, served from the web/ directory installed with the
 * gateway: <the binary's directory>/../share/framegate/web (the build tree mirrors the
 * installed layout). Nothing is fetched at run time. Loop thread. */
#ifndef GW_WEB_H
#define GW_WEB_H

#include "http.h"

/* GET / and GET /static/NAME (NAME: letters, digits, '.', '-', '_'; no directories). */
void gw_web_on_file(void *unused, gw_req_t *req);

#endif
