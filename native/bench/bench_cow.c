/*
 * bench_cow.c — what a fork costs the parent: fork() itself, then the first write to each
 * 4 KiB page while the child lives (a copy-on-write fault), on 2 MiB huge pages and on
 * small pages, and the same writes once the child has exited. The fork snapshot mode
 * (native/snapshot_fork.h) pays exactly this on the worker's thread.
 *
 *   make -C native bench-cow        (COW_MB, default 64)
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HUGE ((size_t)2 << 20)

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void touch_pages(volatile char *p, size_t n) {
    for (size_t i = 0; i < n; i += 4096) p[i]++;
}

static int run(size_t n, int huge) {
    char *raw = mmap(NULL, n + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return 2;
    char *p = (char *)(((uintptr_t)raw + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
    (void)madvise(p, n, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    memset(p, 1, n);
    const double pages = (double)(n / 4096);
    for (int round = 0; round < 3; round++) {
        int fd[2];
        if (pipe(fd) != 0) return 2;
        double t0 = now_s();
        pid_t pid = fork();
        double t_fork = now_s() - t0;
        if (pid < 0) return 2;
        if (pid == 0) { /* hold the pages until the parent is done writing */
            char c;
            close(fd[1]);
            (void)read(fd[0], &c, 1);
            _exit(0);
        }
        close(fd[0]);
        t0 = now_s();
        touch_pages(p, n);
        double t_cow = now_s() - t0;
        close(fd[1]);
        waitpid(pid, NULL, 0);
        t0 = now_s();
        touch_pages(p, n);
        double t_after = now_s() - t0;
        printf("%zu MiB, %s pages: fork %.2f ms; first write per 4 KiB page while the child "
               "lives %.2f us (%.1f ms in all); after it exited %.3f us\n",
               n >> 20, huge ? "huge" : "small", t_fork * 1e3, t_cow * 1e6 / pages, t_cow * 1e3,
               t_after * 1e6 / pages);
    }
    munmap(raw, n + HUGE);
    return 0;
}

int main(int argc, char **argv) {
    size_t mb = argc > 1 ? strtoull(argv[1], NULL, 0) : 64;
    return run(mb << 20, 1) || run(mb << 20, 0);
}
