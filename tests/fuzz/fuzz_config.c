/* fuzz_config.c - libFuzzer harness for the get_config() JSON parser.
 * Any input must give ADADELTA_OK (with a config that validates and that
 * survives a to_json/from_json round trip) or ADADELTA_EINVAL with a
 * "config: ..." message; never a crash, leak or out-of-bounds read. */
#include "adadelta.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The parser takes a NUL-terminated string. */
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    adadelta_config cfg;
    memset(&cfg, 0xA5, sizeof cfg); /* must stay untouched on failure */
    adadelta_config before = cfg;
    int rc = adadelta_config_from_json(&cfg, text);
    if (rc == ADADELTA_OK) {
        if (adadelta_config_validate(&cfg) != ADADELTA_OK)
            abort();
        char *again = adadelta_config_to_json(&cfg);
        if (!again)
            abort();
        adadelta_config cfg2;
        if (adadelta_config_from_json(&cfg2, again) != ADADELTA_OK)
            abort();
        free(again);
        /* A config that validates must make an optimizer. */
        adadelta *opt = NULL;
        if (adadelta_create(&cfg, &opt) != ADADELTA_OK)
            abort();
        float w[3] = {1, 2, 3}, g[3] = {0.5f, -1, 2}, bad[3] = {0, 1.0f / 0.0f, 0};
        int64_t shape[1] = {3};
        const float *grads[1] = {g}, *bad_grads[1] = {bad};
        if (adadelta_add_variable(opt, "w", ADADELTA_F32, w, 1, shape) < 0)
            abort();
        /* A few calls, one non-finite: schedules, clipping, EMA,
         * accumulation and loss scaling all run. */
        for (int k = 0; k < 4; k++)
            if (adadelta_apply(opt, k == 2 ? bad_grads : grads) != ADADELTA_OK)
                abort();
        adadelta_finalize_variable_values(opt);
        adadelta_destroy(opt);
    } else {
        if (rc != ADADELTA_EINVAL)
            abort();
        if (memcmp(&cfg, &before, sizeof cfg) != 0)
            abort();
        if (strncmp(adadelta_last_error(), "config", 6) != 0)
            abort();
    }
    free(text);
    return 0;
}
