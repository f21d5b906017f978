/* cmd_demo.c — nflow demo: train, evaluate and draw on a built-in default. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const char *demo_help =
    "usage: nflow demo [--data fashion-mnist] [--out DIR] [--steps N] [--threads T]\n"
    "End to end on a built-in default: train a RealNVP on 8 gaussians, evaluate it, sample, and draw\n"
    "DIR/demo.png (default DIR: demo-out).\n"
    "With --data fashion-mnist: train the default image model (Glow, glow-small sizes) for N steps\n"
    "(default 1500, about 12 minutes on 2 cores), report test bits/dim, and write DIR/fmnist-samples.png,\n"
    "DIR/fmnist-interp.png (latent interpolation between two test images) and DIR/fmnist-manip.png\n"
    "(T-shirt → dress attribute vector added to three test images).\n";

static int demo_images(const opts *o, const char *dir) {
    char ck[4096], smp[4096], itp[4096], man[4096], steps[32], thr[16];
    snprintf(ck, sizeof ck, "%s/fmnist-glow.ckpt", dir);
    snprintf(smp, sizeof smp, "%s/fmnist-samples.png", dir);
    snprintf(itp, sizeof itp, "%s/fmnist-interp.png", dir);
    snprintf(man, sizeof man, "%s/fmnist-manip.png", dir);
    snprintf(steps, sizeof steps, "%lld", (long long)(GIVEN(o, O_STEPS) ? o->steps : 1500));
    snprintf(thr, sizeof thr, "%d", nf_get_threads());
    char *targv[] = {"train", "--model", "glow", "--data", "fashion-mnist", "--steps", steps, "--batch", "64", "--lr", "1e-3",
                     "--warmup", "500", "--clip", "0", "--out", ck, "--threads", thr, NULL};
    cmd_train(19, targv);
    char *sargv[] = {"sample", "--model", ck, "-n", "64", "--temperature", "0.7", "--out", smp, NULL};
    cmd_sample(9, sargv);
    char *iargv[] = {"interpolate", "--model", ck, "--data", "fashion-mnist", "--from", "0", "--to", "1", "--out", itp, NULL};
    cmd_interpolate(11, iargv);
    char *margv[] = {"manipulate", "--model", ck, "--data", "fashion-mnist", "--class-a", "0", "--class-b", "3",
                     "--images", "1,16,25", "--per-class", "500", "--out", man, NULL};
    cmd_manipulate(15, margv);
    printf("demo done: model %s; pictures %s, %s, %s\n", ck, smp, itp, man);
    return 0;
}

int cmd_demo(int argc, char **argv) {
    opts o;
    parse_options(argc, argv, C_DEMO, demo_help, &o);
    const char *dir = o.out ? o.out : "demo-out";
    if (o.data && strcmp(o.data, "fashion-mnist") != 0) die("option --data: the demo knows fashion-mnist (use train for other data)");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) die("%s: cannot create directory: %s", dir, strerror(errno));
    if (o.data) return demo_images(&o, dir);
    char ck[4096], png[4096], steps[32], thr[16];
    snprintf(ck, sizeof ck, "%s/8gaussians-realnvp.ckpt", dir);
    snprintf(png, sizeof png, "%s/demo.png", dir);
    snprintf(steps, sizeof steps, "%lld", (long long)(GIVEN(&o, O_STEPS) ? o.steps : 3000));
    snprintf(thr, sizeof thr, "%d", nf_get_threads());
    char *targv[] = {"train", "--model", "realnvp", "--data", "8gaussians", "--steps", steps, "--batch", "512",
                     "--out", ck, "--threads", thr, NULL};
    cmd_train(13, targv);
    char *pargv[] = {"plot", "--model", ck, "--data", "8gaussians", "--out", png, NULL};
    cmd_plot(7, pargv);
    printf("demo done: model %s, picture %s (true entropy of 8 gaussians ≈ 2.84 nats)\n", ck, png);
    return 0;
}
