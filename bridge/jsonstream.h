/*
 * Streaming over big JSON arrays and objects with jansson, one member at a time, so a
 * 100,000-project body never becomes a 100,000-object DOM (which costs ~5x the text).
 *
 * Each member is decoded by json_loadb() with JSON_DISABLE_EOF_CHECK, which reports exactly how
 * many bytes the value used; the structure between members ('[', ',', ':', ']') is checked
 * here. Nesting inside a member is jansson's business (and bounded by its depth limit).
 */
#ifndef YTB_JSONSTREAM_H
#define YTB_JSONSTREAM_H

#include <jansson.h>
#include <stddef.h>

/* Called per array element; return 0 to go on, or a negative errno with err filled. */
typedef int (*jsonstream_elem_cb)(void *ctx, json_t *elem, char *err, size_t errlen);

/*
 * Reads the array starting at buf[*pos] (leading whitespace skipped), calling cb per element,
 * and leaves *pos after the closing ']'. Returns the number of elements, or -EPROTO (err says
 * where and why) or the callback's error.
 */
long jsonstream_array(const char *buf, size_t len, size_t *pos, jsonstream_elem_cb cb, void *ctx,
                      char *err, size_t errlen);

/*
 * Called per object member. The value starts at buf[*pos]; the callback either consumes it
 * (e.g. with jsonstream_array() or jsonstream_value()) and advances *pos past it, or returns an
 * error.
 */
typedef int (*jsonstream_member_cb)(void *ctx, const char *key, const char *buf, size_t len,
                                    size_t *pos, char *err, size_t errlen);

/* Reads the object starting at buf[*pos]. Returns 0 or a negative errno (err filled). */
int jsonstream_object(const char *buf, size_t len, size_t *pos, jsonstream_member_cb cb,
                      void *ctx, char *err, size_t errlen);

/* Decodes any one JSON value at buf[*pos] and advances *pos. Returns a new reference or NULL. */
json_t *jsonstream_value(const char *buf, size_t len, size_t *pos, char *err, size_t errlen);

/* Checks that only whitespace follows buf[pos]. Returns 0 or -EPROTO. */
int jsonstream_end(const char *buf, size_t len, size_t pos, char *err, size_t errlen);

#endif
