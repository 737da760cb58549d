#include "err.h"

#include <string.h>

const char *proto_strerror(int err)
{
    switch (err) {
#define XX(name, msg)                                                        \
    case PROTO_##name:                                                       \
        return msg;
        PROTO_ERRNO_MAP(XX)
#undef XX
    case 0:
        return "success";
    default:
        break;
    }
    /* libuv passes negative errno through; strerror() is not thread-safe, so keep to the
     * ones we actually see rather than call it. */
    if (err < 0 && err > -4096) {
        const char *s = strerrorname_np(-err);
        if (s != NULL)
            return s;
    }
    return "unknown error";
}

const char *proto_errname(int err)
{
    switch (err) {
#define XX(name, msg)                                                        \
    case PROTO_##name:                                                       \
        return #name;
        PROTO_ERRNO_MAP(XX)
#undef XX
    default:
        return "EUNKNOWN";
    }
}
