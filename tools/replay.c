/* adadelta-replay - runs the optimizer over recorded gradients
 * (replay-cli.md): the conformance harness and a debugging tool. */
#include "replay_common.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    replay_opts o;
    int rc = replay_parse_args(argc, argv, 0, &o);
    if (rc)
        return rc;
    adadelta *opt;
    if ((rc = replay_make_optimizer(&o, &opt)))
        return rc;
    replay_grads g;
    if ((rc = replay_load_grads(o.grads, opt, &g)) == 0) {
        for (int k = 0; k < g.calls && !rc; k++) {
            int st = adadelta_apply(opt, g.table + (size_t)k * g.n_vars);
            if (st) {
                fprintf(stderr, "%s: call %d: %s\n", replay_prog, k, adadelta_last_error());
                rc = replay_exit_code(st);
            }
        }
        if (!rc && o.finalize && adadelta_finalize_variable_values(opt)) {
            fprintf(stderr, "%s: --finalize: %s\n", replay_prog, adadelta_last_error());
            rc = 1;
        }
        if (!rc && o.out) {
            int st = adadelta_save(opt, o.out);
            if (st) {
                fprintf(stderr, "%s: %s\n", replay_prog, adadelta_last_error());
                rc = replay_exit_code(st); /* 3: the --out file cannot be written */
            }
        }
        replay_free_grads(&g);
    }
    replay_destroy_optimizer(&o, opt);
    return rc;
}
