#include "status.h"

#include <stddef.h>

#include "err.h"

gw_status_t gw_status_of(int err)
{
    switch (err) {
    case 0:
        return (gw_status_t){200, NULL, 0};
    /* the client's frame */
    case PROTO_EIMAGE:
        return (gw_status_t){400, "bad_image", 0};
    case PROTO_EEMPTY:
        return (gw_status_t){400, "empty_image", 0};
    case PROTO_EINVAL:
        return (gw_status_t){400, "bad_request", 0};
    case PROTO_ENOMODEL:
        return (gw_status_t){404, "unknown_model", 0};
    case PROTO_EIMGSIZE:
        return (gw_status_t){413, "image_too_large", 0};
    case PROTO_ETOOBIG:
        return (gw_status_t){413, "too_large", 0};
    case PROTO_EFORMAT:
        return (gw_status_t){415, "unsupported_media_type", 0};
    case PROTO_ENOTFOUND:
        return (gw_status_t){404, "not_found", 0};
    /* the front door (frontdoor.h): who asks, and how often */
    case PROTO_EUNAUTHORIZED:
        return (gw_status_t){401, "unauthorized", 0};
    case PROTO_EFORBIDDEN:
        return (gw_status_t){403, "forbidden", 0};
    case PROTO_ERATELIMIT:
        return (gw_status_t){429, "rate_limited", 1};
    /* a frame given by URL: which fetch rule refused it */
    case PROTO_EURLFORBIDDEN:
        return (gw_status_t){403, "url_forbidden", 0};
    case PROTO_EURLTOOBIG:
        return (gw_status_t){413, "url_too_large", 0};
    case PROTO_EURLTIMEOUT:
        return (gw_status_t){408, "url_timeout", 0};
    case PROTO_EURLSTATUS:
        return (gw_status_t){422, "url_status", 0};
    case PROTO_EURLFETCH:
        return (gw_status_t){422, "url_unreachable", 0};
    /* live cameras: the frame was answered without a backend, by design (camera.h) */
    case PROTO_ESUPERSEDED:
        return (gw_status_t){200, "superseded", 0};
    case PROTO_ESTALE:
        return (gw_status_t){200, "skipped", 0};
    /* the service: try again later */
    case PROTO_EQUEUEFULL:
        return (gw_status_t){503, "queue_full", 1};
    case PROTO_ENOBACKEND:
        return (gw_status_t){503, "no_backend", 1};
    case PROTO_ESHUTDOWN:
        return (gw_status_t){503, "shutting_down", 1};
    case PROTO_ENOMEM:
        return (gw_status_t){503, "overloaded", 1};
    case PROTO_EDEADLINE:
        return (gw_status_t){504, "deadline", 0};
    /* the backends */
    case PROTO_EBACKEND:
        return (gw_status_t){502, "backend_failed", 0};
    /* the object store (GET /v1/objects, /v1/results) */
    case PROTO_ESTORE:
        return (gw_status_t){502, "store_failed", 0};
    case PROTO_ETRUNC:
    case PROTO_EMAGIC:
    case PROTO_EVERSION:
    case PROTO_ETYPE:
    case PROTO_ECORRUPT:
    case PROTO_EMODEL:
    case PROTO_ENNG:
        return (gw_status_t){502, "backend_error", 0};
    default:
        return (gw_status_t){500, "internal", 0};
    }
}

const char *gw_status_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}
