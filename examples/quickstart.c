/* quickstart.c - the smallest complete use of libadadelta.
 *
 * Minimises f(x) = sum_i (x_i - 3)^2 with Keras's Adadelta:
 * config -> create -> add a variable -> apply in a loop -> destroy.
 */
#include <stdio.h>
#include <stdlib.h>

#include <adadelta.h>

static void check(int status, const char *what)
{
    if (status < 0) {
        fprintf(stderr, "quickstart: %s failed: %s: %s\n", what,
                adadelta_status_name(status), adadelta_last_error());
        exit(1);
    }
}

int main(void)
{
    /* keras.optimizers.Adadelta(learning_rate=1.0): Keras's default 0.001 is
     * far too small here. Adadelta starts with steps of about sqrt(epsilon)
     * and grows them, so it needs a couple of thousand steps. */
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_constant(&cfg.learning_rate, 1.0);

    adadelta *opt = NULL;
    check(adadelta_create(&cfg, &opt), "adadelta_create");

    /* The optimizer updates x in place; grad is filled before every step. */
    float x[4] = {0.0f, 1.0f, 2.0f, 4.0f};
    float grad[4];
    const int64_t shape[1] = {4};
    check(adadelta_add_variable(opt, "x", ADADELTA_F32, x, 1, shape),
          "adadelta_add_variable");

    const float *grads[1] = {grad};
    for (int step = 1; step <= 2500; step++) {
        float f = 0.0f;
        for (int i = 0; i < 4; i++) {
            float d = x[i] - 3.0f;
            f += d * d;
            grad[i] = 2.0f * d; /* df/dx_i */
        }
        check(adadelta_apply(opt, grads), "adadelta_apply");
        if (step == 1 || step % 500 == 0)
            printf("step %4d  f(x) = %-10.6f x = [%.4f %.4f %.4f %.4f]\n",
                   step, f, x[0], x[1], x[2], x[3]);
    }
    printf("%lld steps, learning rate %g\n",
           (long long)adadelta_iterations(opt),
           adadelta_current_learning_rate(opt));
    adadelta_destroy(opt);
    return 0;
}
