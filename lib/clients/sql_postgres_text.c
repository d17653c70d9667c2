/* sql_postgres_text: the SQL text work of the PostgreSQL backend that needs no connection, kept apart
 * so the unit tests reach it without a server: `?` placeholders (the driver's portable form) numbered
 * as PostgreSQL wants them ($1, $2, ...), once per statement text and connection. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "sql_internal.h"
#include "xalloc_internal.h"

static bool sql_pg_ident_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '$' ||
           (unsigned char)c >= 0x80;
}

/* The length of a dollar-quote delimiter ($tag$ or $$) starting at s, or 0 when s is not one ($1 is a
 * parameter, not a delimiter: a tag never starts with a digit). */
static size_t sql_pg_dollar_tag(const char *s)
{
    size_t i = 1;
    if (s[i] == '$')
        return 2;
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || s[i] == '_' ||
          (unsigned char)s[i] >= 0x80))
        return 0;
    while (s[i] && s[i] != '$' && sql_pg_ident_char(s[i]))
        i++;
    return s[i] == '$' ? i + 1 : 0;
}

char *sql__pg_placeholders(const char *sql, size_t *nparams)
{
    size_t len = strlen(sql), marks = 0;
    for (size_t i = 0; i < len; i++)
        marks += sql[i] == '?';
    /* "$N" takes at most 1 + 20 bytes for each `?` (one byte) it replaces. */
    char *out = xmalloc(len + marks * 20 + 1);
    size_t o = 0, n = 0, i = 0;
    while (i < len) {
        char c = sql[i];
        if (c == '\'') {
            /* E'...' takes backslash escapes; every string doubles a quote to contain it. */
            bool escapes = i > 0 && (sql[i - 1] == 'E' || sql[i - 1] == 'e') && (i < 2 || !sql_pg_ident_char(sql[i - 2]));
            out[o++] = sql[i++];
            while (i < len) {
                if (escapes && sql[i] == '\\' && i + 1 < len) {
                    out[o++] = sql[i++];
                    out[o++] = sql[i++];
                    continue;
                }
                if (sql[i] == '\'') {
                    out[o++] = sql[i++];
                    if (i < len && sql[i] == '\'') { /* '' inside the string */
                        out[o++] = sql[i++];
                        continue;
                    }
                    break;
                }
                out[o++] = sql[i++];
            }
        } else if (c == '"') {
            out[o++] = sql[i++];
            while (i < len && sql[i] != '"')
                out[o++] = sql[i++];
            if (i < len)
                out[o++] = sql[i++]; /* a doubled "" reopens at once: the same loop again */
        } else if (c == '-' && sql[i + 1] == '-') {
            while (i < len && sql[i] != '\n')
                out[o++] = sql[i++];
        } else if (c == '/' && sql[i + 1] == '*') {
            unsigned depth = 0; /* PostgreSQL's block comments nest */
            do {
                if (sql[i] == '/' && sql[i + 1] == '*') {
                    depth++;
                    out[o++] = sql[i++];
                } else if (sql[i] == '*' && sql[i + 1] == '/') {
                    depth--;
                    out[o++] = sql[i++];
                }
                out[o++] = sql[i++];
            } while (i < len && depth > 0);
        } else if (c == '$' && (i == 0 || !sql_pg_ident_char(sql[i - 1])) && sql_pg_dollar_tag(sql + i) > 0) {
            size_t tag = sql_pg_dollar_tag(sql + i);
            const char *end = NULL;
            for (const char *p = strchr(sql + i + tag, '$'); p; p = strchr(p + 1, '$'))
                if (strncmp(p, sql + i, tag) == 0) {
                    end = p;
                    break;
                }
            size_t stop = end ? (size_t)(end - sql) + tag : len;
            memcpy(out + o, sql + i, stop - i);
            o += stop - i;
            i = stop;
        } else if (c == '?') {
            o += (size_t)sprintf(out + o, "$%zu", ++n);
            i++;
        } else {
            out[o++] = sql[i++];
        }
    }
    out[o] = '\0';
    *nparams = n;
    return out;
}
