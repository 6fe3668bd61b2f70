/* Unit tests for the URL checks: loopback is decided by address, never by a prefix. */
#include "test.h"
#include "url.h"

static void test_loopback_by_address(void)
{
    CHECK_INT(url_host_is_loopback("http://127.0.0.1:8080/x"), 1);
    CHECK_INT(url_host_is_loopback("ws://127.1.2.3/link/?ticket=1"), 1);
    CHECK_INT(url_host_is_loopback("http://127.255.255.254"), 1);
    CHECK_INT(url_host_is_loopback("http://[::1]:9464/metrics"), 1);
    CHECK_INT(url_host_is_loopback("ws://[::1]/"), 1);
    /* An IPv4-mapped loopback address is 127.0.0.1 on a dual-stack socket. */
    CHECK_INT(url_host_is_loopback("http://[::ffff:127.0.0.1]:80/"), 1);
    /* The forms libcurl itself connects to as 127.0.0.1. */
    CHECK_INT(url_host_is_loopback("http://127.1/"), 1);
    CHECK_INT(url_host_is_loopback("http://0x7f.0.0.1/"), 1);
}

static void test_names(void)
{
    /* A name that starts like an address is a name: DNS decides where it goes. */
    CHECK_INT(url_host_is_loopback("ws://127.example.net:8080/link"), 0);
    CHECK_INT(url_host_is_loopback("http://127.0.0.1.example.net/"), 0);
    CHECK_INT(url_host_is_loopback("http://localhost:8080/"), 1);
    CHECK_INT(url_host_is_loopback("http://LocalHost/"), 1);
    /* Fully qualified, it goes to the resolver, which may ask DNS. */
    CHECK_INT(url_host_is_loopback("http://localhost./"), 0);
    CHECK_INT(url_host_is_loopback("http://localhost.example.com/"), 0);
    CHECK_INT(url_host_is_loopback("http://example.com/"), 0);
    CHECK_INT(url_host_is_loopback("https://hooks.slack.com/commands/T1/2/x"), 0);
}

static void test_not_loopback(void)
{
    CHECK_INT(url_host_is_loopback("http://128.0.0.1/"), 0);
    CHECK_INT(url_host_is_loopback("http://10.0.0.1/"), 0);
    CHECK_INT(url_host_is_loopback("http://0.0.0.0/"), 0);
    CHECK_INT(url_host_is_loopback("http://[::]/"), 0);
    CHECK_INT(url_host_is_loopback("http://[::ffff:10.0.0.1]/"), 0);
    CHECK_INT(url_host_is_loopback("http://[2001:db8::1]/"), 0);
    /* The userinfo is not the host: this goes to evil.example. */
    CHECK_INT(url_host_is_loopback("http://127.0.0.1:80@evil.example/"), 0);
    CHECK_INT(url_host_is_loopback("http://127.0.0.1:x@evil.example/"), 0);
    /* Not a URL at all. */
    CHECK_INT(url_host_is_loopback("127.0.0.1"), 0);
    CHECK_INT(url_host_is_loopback(""), 0);
    CHECK_INT(url_host_is_loopback("http://"), 0);
}

int main(void)
{
    RUN(test_loopback_by_address);
    RUN(test_names);
    RUN(test_not_loopback);
    return test_done();
}
