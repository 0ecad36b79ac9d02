/* An imgkit filter plugin in C: selects the tagged images whose repository starts with one of
 * the `prefix=P` arguments (every tagged image when none is given).
 *
 *   clang --target=wasm32-wasi -O2 -o by-prefix.wasm by-prefix.c     (Debian: wasi-libc,
 *                                                  lld, libclang-rt-14-dev-wasm32)
 *   imgkit filter --plugin by-prefix.wasm --plugin-arg prefix=ghcr.io/ < listing.jsonl
 *   cc -O2 -o by-prefix by-prefix.c && ./by-prefix prefix=ghcr.io/ < listing.jsonl
 *
 * Records are docker's `{{json .}}` lines: flat objects of string values. This reads the two
 * fields it needs with a small scanner; a record with escapes in them is reported and skipped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PREFIXES 64

/* Copies the string value of "key" in the JSON object `line` into `out` (size `cap`).
 * Returns 1 on success, 0 if absent, -1 if the value is not a plain string. */
static int field(const char *line, const char *key, char *out, size_t cap) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *p = strstr(line, pattern);
    if (!p) return 0;
    p += strlen(pattern);
    while (*p == ' ') p++;
    if (*p != '"') return -1;
    p++;
    size_t n = 0;
    for (; *p && *p != '"'; p++) {
        if (*p == '\\' || n + 1 >= cap) return -1;
        out[n++] = *p;
    }
    if (*p != '"') return -1;
    out[n] = '\0';
    return 1;
}

int main(int argc, char **argv) {
    const char *prefixes[MAX_PREFIXES];
    int nprefixes = 0;
    for (int i = 1; i < argc && nprefixes < MAX_PREFIXES; i++) {
        if (strncmp(argv[i], "prefix=", 7) == 0) prefixes[nprefixes++] = argv[i] + 7;
    }

    size_t cap = 0;
    char *line = NULL;
    ssize_t len;
    long lineno = 0;
    char repo[512], tag[256];
    while ((len = getline(&line, &cap, stdin)) != -1) {
        lineno++;
        if (len <= 1) continue;
        if (field(line, "Repository", repo, sizeof repo) != 1 ||
            field(line, "Tag", tag, sizeof tag) != 1) {
            fprintf(stderr, "%s: line %ld: no plain Repository/Tag, skipped\n", argv[0], lineno);
            continue;
        }
        if (strcmp(repo, "<none>") == 0 || strcmp(tag, "<none>") == 0) continue;
        int keep = nprefixes == 0;
        for (int i = 0; i < nprefixes && !keep; i++) {
            keep = strncmp(repo, prefixes[i], strlen(prefixes[i])) == 0;
        }
        if (keep) printf("%s:%s\n", repo, tag);
    }
    free(line);
    return ferror(stdin) ? 1 : 0;
}
