/*
 * waiting.c - the calling thread's patience with the network (see
 * waiting.h and api.h): nowait, and a cancel check.
 */
#include "api/waiting.h"

#include <stddef.h>

#include "api/api.h"

static __thread int nowait;
static __thread int (*cancel_fn)(void *ctx);
static __thread void *cancel_ctx;

void api_set_nowait(int on)
{
    nowait = on;
}

int api_nowait(void)
{
    return nowait;
}

void api_set_cancel(int (*cancelled)(void *ctx), void *ctx)
{
    cancel_fn = cancelled;
    cancel_ctx = ctx;
}

int waiting_cancelled(void)
{
    return cancel_fn && cancel_fn(cancel_ctx);
}
