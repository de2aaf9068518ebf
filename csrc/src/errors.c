/* SPDX-License-Identifier: MIT */
/* Status texts and the per-thread failure detail. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

static _Thread_local char detail[512];

int tiga_fail(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return status;
}

void tiga_clear_error(void) { detail[0] = '\0'; }

const char *tiga_last_error(void) { return detail; }

const char *tiga_strerror(int status)
{
    switch (status) {
    case TIGA_OK: return "success";
    case TIGA_ETIMEDOUT: return "timed out";
    case TIGA_EINTR: return "interrupted by a signal";
    case TIGA_EBADNAME: return "invalid channel name";
    case TIGA_ECORRUPT: return "channel is corrupt";
    case TIGA_EFULL: return "channel full";
    case TIGA_ETOOBIG: return "message too large";
    case TIGA_ETRUNCATED: return "channel file truncated";
    case TIGA_EINVAL: return "invalid argument";
    case TIGA_ENOMEM: return "out of memory";
    case TIGA_ENOSLOT: return "no free listener slot";
    case TIGA_ENOTREADY: return "server not ready";
    default: break;
    }
    if (status < 0 && status > -4000) {
        /* strerror is not thread-safe everywhere; give the common ones static texts */
        static _Thread_local char buf[128];
        snprintf(buf, sizeof buf, "%s", strerror(-status));
        return buf;
    }
    return "unknown error";
}

const char *tiga_version(void) { return TIGA_VERSION_STRING; }
