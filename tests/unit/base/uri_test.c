/* uri_test: unit tests for lib/base/uri.c (percent-decoding, target splitting, query parsing and lookup). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "uri.h"

/* Decodes a NUL-terminated literal into buf (prefilled with 'X' so a missing terminator shows). */
static ssize_t uri_test_decode(char *buf, size_t cap, const char *src, bool plus)
{
    memset(buf, 'X', cap);
    return uri_decode(buf, src, strlen(src), plus);
}

/* --- uri_decode --- */

Test(uri_decode, plain_text_is_copied_and_terminated)
{
    char buf[32];
    cr_assert_eq(uri_test_decode(buf, sizeof(buf), "abc-._~", false), 7);
    cr_assert_str_eq(buf, "abc-._~");
    cr_assert_eq(buf[7], '\0');
}

Test(uri_decode, empty_input_gives_empty_string)
{
    char buf[4];
    cr_assert_eq(uri_test_decode(buf, sizeof(buf), "", false), 0);
    cr_assert_eq(buf[0], '\0');
}

Test(uri_decode, escapes_in_either_case)
{
    char buf[32];
    cr_assert_eq(uri_test_decode(buf, sizeof(buf), "a%20b%2fc%2Fd", false), 7);
    cr_assert_str_eq(buf, "a b/c/d");
    cr_assert_eq(uri_test_decode(buf, sizeof(buf), "%41%62%7E", false), 3);
    cr_assert_str_eq(buf, "Ab~");
}

Test(uri_decode, high_bytes_survive)
{
    char buf[8];
    cr_assert_eq(uri_test_decode(buf, sizeof(buf), "%C3%a9%FF", false), 3);
    cr_assert_eq((unsigned char)buf[0], 0xC3);
    cr_assert_eq((unsigned char)buf[1], 0xA9);
    cr_assert_eq((unsigned char)buf[2], 0xFF);
    cr_assert_eq(buf[3], '\0');
}

Test(uri_decode, plus_kept_outside_queries)
{
    char buf[16];
    cr_assert_eq(uri_test_decode(buf, sizeof(buf), "a+b", false), 3);
    cr_assert_str_eq(buf, "a+b");
}

Test(uri_decode, plus_is_space_in_queries)
{
    char buf[16];
    cr_assert_eq(uri_test_decode(buf, sizeof(buf), "a+b++", true), 5);
    cr_assert_str_eq(buf, "a b  ");
}

Test(uri_decode, encoded_plus_stays_plus_in_queries)
{
    char buf[16];
    cr_assert_eq(uri_test_decode(buf, sizeof(buf), "1%2B1", true), 3);
    cr_assert_str_eq(buf, "1+1");
}

Test(uri_decode, malformed_escapes_rejected)
{
    const char *bad[] = {"%", "%4", "abc%", "abc%4", "%zz", "%4g", "%g4", "% 1", "%-1", "ok%%41"};
    char buf[16];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(uri_test_decode(buf, sizeof(buf), bad[i], false), -1, "accepted \"%s\"", bad[i]);
}

Test(uri_decode, nul_bytes_rejected)
{
    char buf[16];
    cr_assert_eq(uri_test_decode(buf, sizeof(buf), "%00", false), -1);
    cr_assert_eq(uri_test_decode(buf, sizeof(buf), "a%00b", true), -1);
    cr_assert_eq(uri_decode(buf, "a\0b", 3, false), -1);
}

Test(uri_decode, reads_only_len_bytes)
{
    char buf[16];
    memset(buf, 'X', sizeof(buf));
    cr_assert_eq(uri_decode(buf, "abc%41", 3, false), 3);
    cr_assert_str_eq(buf, "abc");
    /* The escape is cut by len even though the bytes after it would complete it. */
    cr_assert_eq(uri_decode(buf, "a%41", 3, false), -1);
}

Test(uri_decode, exact_capacity_len_plus_one)
{
    char buf[4];
    memset(buf, 'X', sizeof(buf));
    cr_assert_eq(uri_decode(buf, "abc", 3, false), 3);
    cr_assert_str_eq(buf, "abc");
}

/* --- uri_split --- */

typedef struct uri_test_split {
    const char *path;
    size_t path_len;
    const char *query;
    size_t query_len;
} uri_test_split;

static uri_test_split uri_test_do_split(const char *target)
{
    uri_test_split s;
    uri_split(target, strlen(target), &s.path, &s.path_len, &s.query, &s.query_len);
    return s;
}

Test(uri_split, path_query_and_fragment)
{
    const char *t = "/a/b?x=1&y=2#frag";
    uri_test_split s = uri_test_do_split(t);
    cr_assert_eq(s.path, t);
    cr_assert_eq(s.path_len, 4);
    cr_assert_eq(s.query, t + 5);
    cr_assert_eq(s.query_len, 7);
}

Test(uri_split, path_only)
{
    const char *t = "/v1/kv/x";
    uri_test_split s = uri_test_do_split(t);
    cr_assert_eq(s.path, t);
    cr_assert_eq(s.path_len, 8);
    cr_assert_eq(s.query_len, 0);
}

Test(uri_split, empty_query_after_question_mark)
{
    uri_test_split s = uri_test_do_split("/a?");
    cr_assert_eq(s.path_len, 2);
    cr_assert_eq(s.query_len, 0);
    s = uri_test_do_split("/a?#f");
    cr_assert_eq(s.path_len, 2);
    cr_assert_eq(s.query_len, 0);
}

Test(uri_split, fragment_without_query)
{
    uri_test_split s = uri_test_do_split("/a#f");
    cr_assert_eq(s.path_len, 2);
    cr_assert_eq(s.query_len, 0);
}

Test(uri_split, question_mark_inside_fragment_is_not_a_query)
{
    uri_test_split s = uri_test_do_split("/a#f?x=1");
    cr_assert_eq(s.path_len, 2);
    cr_assert_eq(s.query_len, 0);
}

Test(uri_split, later_question_marks_belong_to_the_query)
{
    const char *t = "/a?b?c=d";
    uri_test_split s = uri_test_do_split(t);
    cr_assert_eq(s.path_len, 2);
    cr_assert_eq(s.query, t + 3);
    cr_assert_eq(s.query_len, 5);
}

Test(uri_split, empty_path)
{
    const char *t = "?x";
    uri_test_split s = uri_test_do_split(t);
    cr_assert_eq(s.path_len, 0);
    cr_assert_eq(s.query, t + 1);
    cr_assert_eq(s.query_len, 1);
}

Test(uri_split, empty_target)
{
    uri_test_split s = uri_test_do_split("");
    cr_assert_eq(s.path_len, 0);
    cr_assert_eq(s.query_len, 0);
}

Test(uri_split, reads_only_len_bytes)
{
    const char *path, *query;
    size_t path_len, query_len;
    uri_split("/a?x=1#f", 5, &path, &path_len, &query, &query_len);
    cr_assert_eq(path_len, 2);
    cr_assert_eq(query_len, 2);
    uri_split("/abc?x", 3, &path, &path_len, &query, &query_len);
    cr_assert_eq(path_len, 3);
    cr_assert_eq(query_len, 0);
}

/* --- uri_parse_query / uri_query_get --- */

static arena uri_test_arena;

static void uri_test_setup(void)
{
    arena_init(&uri_test_arena);
}

static void uri_test_teardown(void)
{
    arena_reset(&uri_test_arena);
}

static int uri_test_parse(const char *q, uri_param *out, size_t max)
{
    return uri_parse_query(q, strlen(q), &uri_test_arena, out, max);
}

static void uri_test_assert_pair(const uri_param *p, const char *name, const char *value)
{
    cr_assert_str_eq(p->name, name);
    cr_assert_eq(p->name_len, strlen(name));
    cr_assert_str_eq(p->value, value);
    cr_assert_eq(p->value_len, strlen(value));
}

TestSuite(uri_query, .init = uri_test_setup, .fini = uri_test_teardown);

Test(uri_query, basic_pairs_and_flag)
{
    uri_param p[8];
    cr_assert_eq(uri_test_parse("a=1&b=x%20y&flag", p, 8), 3);
    uri_test_assert_pair(&p[0], "a", "1");
    uri_test_assert_pair(&p[1], "b", "x y");
    uri_test_assert_pair(&p[2], "flag", "");
    cr_assert_not_null(p[2].value);
}

Test(uri_query, decoded_strings_live_in_the_arena)
{
    const char *q = "key=value";
    uri_param p[1];
    cr_assert_eq(uri_test_parse(q, p, 1), 1);
    /* Copies, not pointers into the query: the caller may drop the request bytes. */
    cr_assert((p[0].name < q || p[0].name >= q + strlen(q)));
    cr_assert((p[0].value < q || p[0].value >= q + strlen(q)));
    cr_assert_eq(p[0].name[3], '\0');
    cr_assert_eq(p[0].value[5], '\0');
}

Test(uri_query, plus_is_space_in_names_and_values)
{
    uri_param p[2];
    cr_assert_eq(uri_test_parse("first+name=Ada+Lovelace&sum=1%2B1", p, 2), 2);
    uri_test_assert_pair(&p[0], "first name", "Ada Lovelace");
    uri_test_assert_pair(&p[1], "sum", "1+1");
}

Test(uri_query, empty_query_has_no_pairs)
{
    uri_param p[1];
    cr_assert_eq(uri_parse_query(NULL, 0, &uri_test_arena, p, 1), 0);
    cr_assert_eq(uri_test_parse("", p, 1), 0);
    cr_assert_eq(uri_test_parse("&&&", p, 1), 0);
}

Test(uri_query, empty_pieces_skipped)
{
    uri_param p[4];
    cr_assert_eq(uri_test_parse("&a=1&&b=2&", p, 4), 2);
    uri_test_assert_pair(&p[0], "a", "1");
    uri_test_assert_pair(&p[1], "b", "2");
}

Test(uri_query, empty_values_and_extra_equals)
{
    uri_param p[4];
    cr_assert_eq(uri_test_parse("a=&b==c&=v", p, 4), 3);
    uri_test_assert_pair(&p[0], "a", "");
    uri_test_assert_pair(&p[1], "b", "=c");
    uri_test_assert_pair(&p[2], "", "v");
}

Test(uri_query, encoded_separators_are_data)
{
    uri_param p[2];
    cr_assert_eq(uri_test_parse("a%3Db=c%26d", p, 2), 1);
    uri_test_assert_pair(&p[0], "a=b", "c&d");
}

Test(uri_query, duplicate_keys_all_kept)
{
    uri_param p[4];
    cr_assert_eq(uri_test_parse("k=1&k=2", p, 4), 2);
    uri_test_assert_pair(&p[0], "k", "1");
    uri_test_assert_pair(&p[1], "k", "2");
}

Test(uri_query, exactly_max_pairs_accepted)
{
    uri_param p[3];
    cr_assert_eq(uri_test_parse("a=1&b=2&c=3", p, 3), 3);
    uri_test_assert_pair(&p[2], "c", "3");
}

Test(uri_query, more_than_max_pairs_rejected)
{
    uri_param p[3];
    cr_assert_eq(uri_test_parse("a=1&b=2&c=3&d", p, 3), -1);
}

Test(uri_query, empty_pieces_do_not_count_toward_max)
{
    uri_param p[2];
    cr_assert_eq(uri_test_parse("a&&&&b&", p, 2), 2);
}

Test(uri_query, max_zero)
{
    cr_assert_eq(uri_parse_query("", 0, &uri_test_arena, NULL, 0), 0);
    cr_assert_eq(uri_parse_query("&", 1, &uri_test_arena, NULL, 0), 0);
    cr_assert_eq(uri_parse_query("a", 1, &uri_test_arena, NULL, 0), -1);
}

Test(uri_query, malformed_escape_rejected)
{
    uri_param p[4];
    cr_assert_eq(uri_test_parse("a=1&b=%zz", p, 4), -1);
    cr_assert_eq(uri_test_parse("a%2=1", p, 4), -1);
    cr_assert_eq(uri_test_parse("flag%", p, 4), -1);
}

Test(uri_query, nul_escape_rejected)
{
    uri_param p[4];
    cr_assert_eq(uri_test_parse("a=x%00y", p, 4), -1);
    cr_assert_eq(uri_test_parse("%00=1", p, 4), -1);
}

Test(uri_query, reads_only_len_bytes)
{
    uri_param p[4];
    cr_assert_eq(uri_parse_query("a=12&b=2", 3, &uri_test_arena, p, 4), 1);
    uri_test_assert_pair(&p[0], "a", "1");
}

Test(uri_query, many_long_pairs_grow_the_arena)
{
    /* Well past the inline block, so heap blocks are chained and must be freed by arena_reset. */
    enum { PAIRS = 64, VALUE_LEN = 100 };
    static char q[PAIRS * (VALUE_LEN + 8)];
    size_t len = 0;
    for (int i = 0; i < PAIRS; i++) {
        len += (size_t)snprintf(q + len, sizeof(q) - len, "%sk%d=", i ? "&" : "", i);
        memset(q + len, 'v', VALUE_LEN);
        len += VALUE_LEN;
    }
    uri_param p[PAIRS];
    cr_assert_eq(uri_parse_query(q, len, &uri_test_arena, p, PAIRS), PAIRS);
    cr_assert_str_eq(p[63].name, "k63");
    cr_assert_eq(p[63].value_len, VALUE_LEN);
    cr_assert_eq(p[63].value[VALUE_LEN - 1], 'v');
    cr_assert_eq(p[63].value[VALUE_LEN], '\0');
}

Test(uri_query, get_finds_values)
{
    uri_param p[4];
    int n = uri_test_parse("a=1&bb=two&flag", p, 4);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(uri_query_get(p, (size_t)n, "a"), "1");
    cr_assert_str_eq(uri_query_get(p, (size_t)n, "bb"), "two");
    cr_assert_str_eq(uri_query_get(p, (size_t)n, "flag"), "");
}

Test(uri_query, get_missing_names_return_null)
{
    uri_param p[4];
    int n = uri_test_parse("a=1&bb=two", p, 4);
    cr_assert_eq(n, 2);
    cr_assert_null(uri_query_get(p, (size_t)n, "b"));
    cr_assert_null(uri_query_get(p, (size_t)n, "bbb"));
    cr_assert_null(uri_query_get(p, (size_t)n, "A"));
    cr_assert_null(uri_query_get(p, (size_t)n, ""));
    cr_assert_null(uri_query_get(p, 0, "a"));
}

Test(uri_query, get_first_duplicate_wins)
{
    uri_param p[4];
    int n = uri_test_parse("k=first&x=1&k=second", p, 4);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(uri_query_get(p, (size_t)n, "k"), "first");
}

Test(uri_query, get_matches_decoded_names)
{
    uri_param p[2];
    int n = uri_test_parse("page+size=10&s%C3%A9=1", p, 2);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(uri_query_get(p, (size_t)n, "page size"), "10");
    cr_assert_str_eq(uri_query_get(p, (size_t)n, "s\xC3\xA9"), "1");
    cr_assert_null(uri_query_get(p, (size_t)n, "page+size"));
}

Test(uri_query, get_empty_name)
{
    uri_param p[2];
    int n = uri_test_parse("=v&a=1", p, 2);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(uri_query_get(p, (size_t)n, ""), "v");
}

/* ---- Host values (RFC 9110 7.2, RFC 3986 3.2.2) ---- */

static bool host_ok(const char *s) { return uri_host_valid(s, strlen(s)); }

Test(uri_host, accepts_names_addresses_and_ports)
{
    const char *good[] = {"",          "example.com", "example.com:8080", "localhost:", "127.0.0.1",
                          "10.0.0.1:80", "[::1]",     "[::1]:8080",       "[2001:db8::7]:65535",
                          "a-b_c~d.e", "xn--bcher-kva.example", "ex%41mple.com", "host!$&'()*+,;=:1"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        cr_expect(host_ok(good[i]), "should accept Host \"%s\"", good[i]);
}

Test(uri_host, refuses_what_is_no_authority)
{
    const char *bad[] = {"exa mple.com", "example.com:80:80", "example.com:65536", "example.com:123456",
                         "example.com:8o", "[::1", "[]", "[not-v6]", "[v1.future]", "[::1]x", "[::1]:x",
                         "user@example.com", "example.com/path", "a\tb", "%4", "%zz.example", "ex\"ample",
                         "h\xc3\xa9.example"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect(!host_ok(bad[i]), "should refuse Host \"%s\"", bad[i]);
    cr_expect(!uri_host_valid("a\0b", 3), "an embedded NUL is no reg-name character");
}

/* Every byte value between two letters: exactly RFC 3986's reg-name characters pass (the check is a
 * bitmap, so a wrong bit would let one byte through or refuse one). */
Test(uri_host, every_byte_value_against_the_reg_name_set)
{
    const char *allowed = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=";
    for (int c = 0; c < 256; c++) {
        char host[3] = {'a', (char)c, 'a'};
        bool want = c != 0 && strchr(allowed, c) != NULL;
        cr_expect_eq(uri_host_valid(host, 3), want, "byte 0x%02x: got %d", c, !want);
    }
}
