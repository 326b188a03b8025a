/* Entry points of the test-only codec library (`make -C native codec-test`): the agent protocol codec
 * (src/frame.c) plus these array and whole-buffer wrappers, all exported for the ctypes tests
 * (tests/native/asan_driver.py). Not part of the shipped provider, which exports OSSL_provider_init only. */
#include <stdlib.h>
#include <string.h>

#include "../src/hsmcert.h"

long hsmcert_frame_encode_arrays(int code, const unsigned char *tags, const unsigned char *const *values,
                                 const size_t *lens, size_t nfields, unsigned char *out, size_t cap);
int hsmcert_frame_validate(const unsigned char *buf, size_t len, int direction, int op);
long hsmcert_frame_get_field(const unsigned char *buf, size_t len, int tag, unsigned char *out, size_t cap);
int hsmcert_frame_code(const unsigned char *buf, size_t len);

long hsmcert_frame_encode_arrays(int code, const unsigned char *tags, const unsigned char *const *values,
                                 const size_t *lens, size_t nfields, unsigned char *out, size_t cap)
{
    HSMCERT_FIELD fields[HSMCERT_TAG_MAX * 2];

    if (nfields > sizeof(fields) / sizeof(fields[0]) || (nfields && (!tags || !values || !lens)))
        return -HSMCERT_FR_ARGUMENT;
    for (size_t i = 0; i < nfields; i++) {
        fields[i].tag = tags[i];
        fields[i].value = values[i];
        fields[i].len = lens[i];
    }
    return hsmcert_frame_encode(code, fields, nfields, out, cap);
}

/* direction: 1 request, 0 response (op: the request it answers, or 0), -1 framing only. The input is
 * copied to an exact-size heap block so that the sanitizer build catches any read past its end. */
int hsmcert_frame_validate(const unsigned char *buf, size_t len, int direction, int op)
{
    HSMCERT_FRAME frame;
    unsigned char *copy = NULL;
    int rc;

    if (len > 0) {
        if (buf == NULL || (copy = malloc(len)) == NULL)
            return HSMCERT_FR_ARGUMENT;
        memcpy(copy, buf, len);
    }
    rc = hsmcert_frame_decode(copy, len, &frame);
    if (rc == HSMCERT_FR_OK && direction == 1)
        rc = hsmcert_frame_check_request(&frame);
    else if (rc == HSMCERT_FR_OK && direction == 0)
        rc = hsmcert_frame_check_response(&frame, op);
    free(copy);
    return rc;
}

/* The length of field tag (copied to out when cap allows), -1 when absent, -2 when the frame is bad. */
long hsmcert_frame_get_field(const unsigned char *buf, size_t len, int tag, unsigned char *out, size_t cap)
{
    HSMCERT_FRAME frame;

    if (tag < 1 || tag > HSMCERT_TAG_MAX || hsmcert_frame_decode(buf, len, &frame) != HSMCERT_FR_OK)
        return -2;
    if (!(frame.present & (1u << tag)))
        return -1;
    if (out != NULL && cap >= frame.len[tag])
        memcpy(out, frame.value[tag], frame.len[tag]);
    return (long)frame.len[tag];
}

/* The op or status byte of a well-formed frame, else -1. */
int hsmcert_frame_code(const unsigned char *buf, size_t len)
{
    HSMCERT_FRAME frame;

    if (hsmcert_frame_decode(buf, len, &frame) != HSMCERT_FR_OK)
        return -1;
    return frame.code;
}
