/*
 * JSON text written straight into a strbuf, without a DOM: for documents built on a hot path
 * (the Slack answer of a chat command, the Socket Mode ack that carries it), where building a
 * jansson tree and serialising it cost most of a command (README, "Performance"). Everything
 * else writes JSON with jansson.
 *
 * The output is byte for byte what jansson's json_dumps(..., JSON_COMPACT) writes for the same
 * values, so a document may move between the two without a change on the wire: a string is
 * quoted, '"' and '\' are escaped with a backslash, \b \f \n \r \t are written so, the other
 * control characters as \u00XX (upper-case hex), and everything else (non-ASCII included) as it
 * is. Structure (braces, keys, commas) is the caller's: keys and literals are trusted text
 * written with strbuf_puts(). Pure.
 */
#ifndef YTB_JWRITE_H
#define YTB_JWRITE_H

#include <stddef.h>

#include "strbuf.h"

/*
 * Appends s[0..n) escaped as the inside of a JSON string (no quotes), so a string can be written
 * in pieces. s must be valid UTF-8: invalid UTF-8 fails b as ENOMEM does (b->oom; strbuf_take()
 * then returns NULL), as jansson refuses such a string, so no invalid document is ever made.
 */
void jwrite_chars(struct strbuf *b, const char *s, size_t n);

/* Appends s[0..n) as a JSON string, quotes included (jwrite_chars() between them). */
void jwrite_string(struct strbuf *b, const char *s, size_t n);

#endif
