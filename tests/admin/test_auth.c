/*
 * security/auth: logins by token (hashed, constant-time compare), by client
 * certificate CN and by the deprecated shared token; stream allow-lists;
 * reload swaps; and the identity attribute stamped on serialized batches
 * (a forged one removed, every event, bytes untouched otherwise).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "security/auth.h"
#include "sluice/v1/event.pb-c.h"

/* A config with two native clients and one HTTP client. */
static sl_config_t *make_cfg(const char *legacy, const char *admin_hex) {
  static char hex_line[65], hex_http[65];
  static sl_config_client_t native[2], http[1];
  static char *nat_streams0[] = {"readings"}, *nat_streams1[] = {"infer*", "x"},
              *http_streams[] = {"*"};
  sl_config_t *cfg = calloc(1, sizeof(*cfg));
  sl_auth_sha256_hex("tok-line", hex_line);
  sl_auth_sha256_hex("tok-http", hex_http);
  native[0] = (sl_config_client_t){"line-1", hex_line, "", {nat_streams0, 1}};
  native[1] =
      (sl_config_client_t){"cam-1", "", "cam-1.example", {nat_streams1, 2}};
  http[0] = (sl_config_client_t){"web", hex_http, "", {http_streams, 1}};
  cfg->listeners.native_clients = (sl_config_clients_t){native, 2};
  cfg->listeners.http_clients = (sl_config_clients_t){http, 1};
  cfg->listeners.native_token = (char *)legacy;
  cfg->admin.token_sha256 = (char *)admin_hex;
  return cfg;
}

static void test_sha256_hex(void **state) {
  char hex[65];
  (void)state;
  sl_auth_sha256_hex("abc", hex);
  assert_string_equal(
      hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_login(void **state) {
  sl_config_t *cfg = make_cfg("legacy-secret", "");
  sl_auth_t *au;
  char id[SL_AUTH_IDENT_MAX];
  (void)state;
  assert_int_equal(sl_auth_new(cfg, &au), 0);
  assert_int_equal(
      sl_auth_login(au, SL_AUTH_NATIVE, "tok-line", NULL, id, sizeof(id)), 0);
  assert_string_equal(id, "line-1");
  assert_int_equal(
      sl_auth_login(au, SL_AUTH_NATIVE, "tok-linE", NULL, id, sizeof(id)),
      SL_EDENIED);
  assert_int_equal(
      sl_auth_login(au, SL_AUTH_NATIVE, NULL, NULL, id, sizeof(id)),
      SL_EDENIED);
  assert_int_equal(sl_auth_login(au, SL_AUTH_NATIVE, "", "", id, sizeof(id)),
                   SL_EDENIED);
  /* A token of another listener is no credential here. */
  assert_int_equal(
      sl_auth_login(au, SL_AUTH_NATIVE, "tok-http", NULL, id, sizeof(id)),
      SL_EDENIED);
  /* Certificate CN, which wins over a token. */
  assert_int_equal(sl_auth_login(au, SL_AUTH_NATIVE, "tok-line",
                                 "cam-1.example", id, sizeof(id)),
                   0);
  assert_string_equal(id, "cam-1");
  assert_int_equal(
      sl_auth_login(au, SL_AUTH_NATIVE, NULL, "other", id, sizeof(id)),
      SL_EDENIED);
  /* The deprecated shared token. */
  assert_int_equal(
      sl_auth_login(au, SL_AUTH_NATIVE, "legacy-secret", NULL, id, sizeof(id)),
      0);
  assert_string_equal(id, SL_AUTH_LEGACY_IDENT);
  assert_int_equal(sl_auth_allowed(au, SL_AUTH_NATIVE, id, "anything"), 0);
  /* The legacy token is native only. */
  assert_int_equal(
      sl_auth_login(au, SL_AUTH_HTTP, "legacy-secret", NULL, id, sizeof(id)),
      SL_EDENIED);
  sl_auth_free(au);
  free(cfg);
}

static void test_open_listener(void **state) {
  sl_config_t *cfg = calloc(1, sizeof(*cfg));
  sl_auth_t *au;
  char id[SL_AUTH_IDENT_MAX];
  (void)state;
  cfg->listeners.native_token = "";
  cfg->admin.token_sha256 = "";
  assert_int_equal(sl_auth_new(cfg, &au), 0);
  assert_int_equal(sl_auth_login(au, SL_AUTH_HTTP, NULL, NULL, id, sizeof(id)),
                   0);
  assert_string_equal(id, "");
  assert_int_equal(
      sl_auth_login(au, SL_AUTH_HTTP, "whatever", "cn-x", id, sizeof(id)), 0);
  assert_string_equal(id, "cn-x");
  assert_int_equal(sl_auth_allowed(au, SL_AUTH_HTTP, "", "readings"), 0);
  /* Admin state changes need a credential even when none is configured. */
  assert_int_equal(sl_auth_admin(au, NULL, 0), SL_EDENIED);
  assert_int_equal(sl_auth_admin(au, "x", 0), SL_EDENIED);
  assert_int_equal(sl_auth_admin(au, NULL, 1), 0);
  sl_auth_free(au);
  free(cfg);
}

static void test_allowed_and_swap(void **state) {
  char admin_hex[65];
  sl_config_t *cfg, *nw;
  sl_auth_t *au, *next;
  (void)state;
  sl_auth_sha256_hex("adm", admin_hex);
  cfg = make_cfg("", admin_hex);
  assert_int_equal(sl_auth_new(cfg, &au), 0);
  assert_int_equal(sl_auth_allowed(au, SL_AUTH_NATIVE, "line-1", "readings"),
                   0);
  assert_int_equal(sl_auth_allowed(au, SL_AUTH_NATIVE, "line-1", "readings2"),
                   SL_EDENIED);
  assert_int_equal(sl_auth_allowed(au, SL_AUTH_NATIVE, "cam-1", "inference"),
                   0);
  assert_int_equal(sl_auth_allowed(au, SL_AUTH_NATIVE, "cam-1", "x"), 0);
  assert_int_equal(sl_auth_allowed(au, SL_AUTH_NATIVE, "cam-1", "readings"),
                   SL_EDENIED);
  assert_int_equal(sl_auth_allowed(au, SL_AUTH_NATIVE, "nobody", "readings"),
                   SL_EDENIED);
  assert_int_equal(sl_auth_admin(au, "adm", 0), 0);
  assert_int_equal(sl_auth_admin(au, "adn", 0), SL_EDENIED);
  /* A reload that drops line-1 revokes it at once. */
  nw = make_cfg("", "");
  nw->listeners.native_clients.v++;
  nw->listeners.native_clients.n = 1;
  assert_int_equal(sl_auth_new(nw, &next), 0);
  sl_auth_swap(au, next);
  assert_int_equal(sl_auth_allowed(au, SL_AUTH_NATIVE, "line-1", "readings"),
                   SL_EDENIED);
  assert_int_equal(sl_auth_allowed(au, SL_AUTH_NATIVE, "cam-1", "inference"),
                   0);
  assert_int_equal(sl_auth_admin(au, "adm", 0), SL_EDENIED);
  sl_auth_free(au);
  free(cfg);
  free(nw);
}

/* A batch of n readings; event i carries a forged identity when i is odd. */
static void make_batch(sl_frame_buf_t *b, size_t n) {
  Sluice__V1__Event ev[8], *evp[8];
  Sluice__V1__Reading rd = SLUICE__V1__READING__INIT;
  Sluice__V1__Attribute forged = SLUICE__V1__ATTRIBUTE__INIT,
                        shift = SLUICE__V1__ATTRIBUTE__INIT;
  Sluice__V1__Attribute *two[2] = {&shift, &forged}, *one[1] = {&shift};
  Sluice__V1__EventBatch eb = SLUICE__V1__EVENT_BATCH__INIT;
  rd.value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
  rd.double_value = 1.5;
  forged.key = SL_AUTH_ATTR;
  forged.value = "forged";
  shift.key = "shift";
  shift.value = "B";
  for (size_t i = 0; i < n; i++) {
    sluice__v1__event__init(&ev[i]);
    ev[i].source = "plant/line1/temp";
    ev[i].time_ns = 1700000000000000000ll + (int64_t)i;
    ev[i].body_case = SLUICE__V1__EVENT__BODY_READING;
    ev[i].reading = &rd;
    ev[i].n_attributes = i % 2 ? 2 : 1;
    ev[i].attributes = i % 2 ? two : one;
    evp[i] = &ev[i];
  }
  eb.n_events = n;
  eb.events = evp;
  sl_frame_buf_init(b);
  assert_int_equal(
      sl_frame_buf_reserve(b, sluice__v1__event_batch__get_packed_size(&eb)),
      0);
  b->len = sluice__v1__event_batch__pack(&eb, b->data);
}

static void test_stamp(void **state) {
  sl_frame_buf_t b, old;
  Sluice__V1__EventBatch *eb;
  (void)state;
  make_batch(&b, 4);
  sl_frame_buf_init(&old);
  assert_int_equal(sl_auth_stamp(&b, "line-1", &old), 0);
  assert_non_null(old.data);
  eb = sluice__v1__event_batch__unpack(NULL, b.len, b.data);
  assert_non_null(eb);
  assert_int_equal(eb->n_events, 4);
  for (size_t i = 0; i < 4; i++) {
    Sluice__V1__Event *e = eb->events[i];
    assert_int_equal(e->time_ns, 1700000000000000000ll + (int64_t)i);
    assert_true(e->reading->double_value == 1.5);
    assert_int_equal(e->n_attributes, 2);
    assert_string_equal(e->attributes[0]->key, "shift");
    assert_string_equal(e->attributes[1]->key, SL_AUTH_ATTR);
    assert_string_equal(e->attributes[1]->value, "line-1");
  }
  sluice__v1__event_batch__free_unpacked(eb, NULL);
  sl_frame_buf_close(&b);
  sl_frame_buf_close(&old);

  /* No identity: the forged attribute still goes. */
  make_batch(&b, 3);
  sl_frame_buf_init(&old);
  assert_int_equal(sl_auth_stamp(&b, "", &old), 0);
  eb = sluice__v1__event_batch__unpack(NULL, b.len, b.data);
  assert_non_null(eb);
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(eb->events[i]->n_attributes, 1);
    assert_string_equal(eb->events[i]->attributes[0]->key, "shift");
  }
  sluice__v1__event_batch__free_unpacked(eb, NULL);
  sl_frame_buf_close(&b);
  sl_frame_buf_close(&old);

  /* Nothing to do: the bytes are not touched. */
  make_batch(&b, 1);
  uint8_t *before = b.data;
  sl_frame_buf_init(&old);
  assert_int_equal(sl_auth_stamp(&b, "", &old), 0);
  assert_ptr_equal(b.data, before);
  assert_null(old.data);
  sl_frame_buf_close(&b);

  /* Garbage is refused, unchanged. */
  sl_frame_buf_init(&b);
  assert_int_equal(sl_frame_buf_reserve(&b, 4), 0);
  memcpy(b.data, "\x0a\x7f\x01\x02", 4);
  b.len = 4;
  assert_int_equal(sl_auth_stamp(&b, "x", &old), SL_EPROTO);
  assert_int_equal(b.len, 4);
  sl_frame_buf_close(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sha256_hex),
      cmocka_unit_test(test_login),
      cmocka_unit_test(test_open_listener),
      cmocka_unit_test(test_allowed_and_swap),
      cmocka_unit_test(test_stamp),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
