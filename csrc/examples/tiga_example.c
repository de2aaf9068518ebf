/* SPDX-License-Identifier: MIT */
/* Write to a channel or read it, using only tiga.h and libtiga.
 *
 *   tiga-example DIR NAME write MESSAGE [MEDIA_TYPE]
 *   tiga-example DIR NAME read [AFTER_ID]
 *
 * read prints "last_id N missed M" then one line per entry:
 * "<id>\t<media type or ->\t<message bytes>". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiga.h"

static int fail(const char *what, int rc)
{
    fprintf(stderr, "tiga-example: %s: %s (%s)\n", what, tiga_strerror(rc), tiga_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 4 || (strcmp(argv[3], "write") != 0 && strcmp(argv[3], "read") != 0) ||
        (strcmp(argv[3], "write") == 0 && argc < 5)) {
        fprintf(stderr, "usage: %s DIR NAME write MESSAGE [MEDIA_TYPE]\n"
                        "       %s DIR NAME read [AFTER_ID]\n", argv[0], argv[0]);
        return 2;
    }
    int status = 1, rc;
    tiga_channel *ch = NULL;
    tiga_read_result *r = NULL;
    if ((rc = tiga_channel_open(argv[1], argv[2], NULL, &ch))) {
        fail("open", rc);
        goto cleanup;
    }
    if (strcmp(argv[3], "write") == 0) {
        tiga_message m = {(const uint8_t *)argv[4], strlen(argv[4]), argc > 5 ? argv[5] : NULL};
        int64_t id = 0;
        if ((rc = tiga_channel_append(ch, &m, 1, &id))) {
            fail("write", rc);
            goto cleanup;
        }
        printf("%lld\n", (long long)id);
    } else {
        long long after = argc > 4 ? atoll(argv[4]) : 0;
        if ((rc = tiga_channel_read(ch, after, &r))) {
            fail("read", rc);
            goto cleanup;
        }
        printf("last_id %lld missed %lld\n", (long long)r->last_id, (long long)r->missed);
        for (size_t i = 0; i < r->count; i++) {
            const tiga_entry *e = &r->entries[i];
            printf("%lld\t", (long long)e->id);
            if (e->media_type)
                fwrite(e->media_type, 1, e->media_type_len, stdout);
            else
                fputs("-", stdout);
            putchar('\t');
            fwrite(e->message, 1, e->message_len, stdout);
            putchar('\n');
        }
    }
    status = 0;
cleanup:
    tiga_read_result_free(r);
    tiga_channel_close(ch);
    return status;
}
