/*
 * tmpdir.h — removing a test's scratch directory with whatever the code under test left
 * in it (files only: the journal and snapshot tests make no subdirectories).
 */
#ifndef TRADSYS_TESTS_TMPDIR_H
#define TRADSYS_TESTS_TMPDIR_H

#include <dirent.h>
#include <stdio.h>
#include <unistd.h>

static inline void tmpdir_remove(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *ent;
        char path[600];
        while ((ent = readdir(d)) != NULL) {
            if (ent->d_name[0] == '.') continue;
            snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

#endif
