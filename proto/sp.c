#include "sp.h"

#include "err.h"

void proto_sp_hello(uint8_t out[PROTO_SP_HELLO_LEN], unsigned proto)
{
    out[0] = 0;
    out[1] = 'S';
    out[2] = 'P';
    out[3] = 0;
    out[4] = (uint8_t)(proto >> 8);
    out[5] = (uint8_t)proto;
    out[6] = 0;
    out[7] = 0;
}

int proto_sp_hello_check(const uint8_t in[PROTO_SP_HELLO_LEN], unsigned peer)
{
    if (in[0] != 0 || in[1] != 'S' || in[2] != 'P' || in[3] != 0 || in[6] != 0 || in[7] != 0)
        return PROTO_EMAGIC;
    if (((unsigned)in[4] << 8 | in[5]) != peer)
        return PROTO_ETYPE;
    return 0;
}

void proto_sp_ipc_frame(uint8_t out[PROTO_SP_IPC_HDR], uint64_t len)
{
    out[0] = 1;
    for (int i = 0; i < 8; i++)
        out[1 + i] = (uint8_t)(len >> (56 - 8 * i));
}

int proto_sp_ipc_unframe(const uint8_t in[PROTO_SP_IPC_HDR], uint64_t max, uint64_t *len)
{
    uint64_t v = 0;
    if (in[0] != 1)
        return PROTO_ETYPE;
    for (int i = 0; i < 8; i++)
        v = v << 8 | in[1 + i];
    if (v > max)
        return PROTO_ETOOBIG;
    *len = v;
    return 0;
}

int64_t proto_sp_backtrace_len(const uint8_t *msg, size_t len)
{
    for (size_t off = 0; off + 4 <= len && off < 4 * PROTO_SP_HOPS_MAX; off += 4)
        if (msg[off] & 0x80)
            return (int64_t)(off + 4);
    return PROTO_ECORRUPT;
}
