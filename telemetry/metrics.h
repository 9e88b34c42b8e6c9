/*
 * Metrics registry rendered in the Prometheus text exposition format on
 * /metrics. Series are registered once (at start, or when a stream or a
 * connection class appears) under a mutex; updates are lock-free relaxed
 * atomics, safe from any thread (loop, writer, librdkafka, HTTP).
 */
#ifndef SL_METRICS_H
#define SL_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct sl_metrics sl_metrics_t;
typedef struct sl_metric sl_metric_t; /* one series: name + label values */

/*
 * Creates an empty registry. Returns 0 or -ENOMEM.
 * *out: returns owned; free with sl_metrics_free().
 */
int sl_metrics_new(sl_metrics_t **out);

/* Frees the registry and every series in it. Series pointers die with it. */
void sl_metrics_free(sl_metrics_t *mx);

/*
 * Registers a counter, gauge or histogram series, or returns the existing one
 * with the same name and labels. name follows Prometheus conventions
 * (counters end in _total, units in the name: _seconds, _bytes). labels is
 * NULL or a pre-formatted label list such as `path="native",stream="raw"`
 * (label values are escaped by the caller with sl_metrics_escape()). help is
 * used the first time the name is seen. For histograms, bounds are the upper
 * bucket bounds in increasing order (copied). All strings: borrowed.
 * Returns the series, valid until sl_metrics_free(), or NULL on allocation
 * failure or when name is reused with another type (a programming error).
 */
sl_metric_t *sl_metrics_counter(sl_metrics_t *mx, const char *name,
                                const char *help, const char *labels);
sl_metric_t *sl_metrics_gauge(sl_metrics_t *mx, const char *name,
                              const char *help, const char *labels);
sl_metric_t *sl_metrics_histogram(sl_metrics_t *mx, const char *name,
                                  const char *help, const char *labels,
                                  const double *bounds, size_t nbounds);

/* Counter: adds n. Gauge: sl_metric_set / sl_metric_gauge_add. NULL-safe so
 * optional series need no checks at call sites. */
void sl_metric_add(sl_metric_t *m, uint64_t n);
void sl_metric_set(sl_metric_t *m, double v);
void sl_metric_gauge_add(sl_metric_t *m, double delta);
void sl_metric_observe(sl_metric_t *m, double v);

/* Reads a gauge's value (tests, /v1/status). */
double sl_metric_value(const sl_metric_t *m);

/* Reads a counter's value (tests). NULL reads 0. */
uint64_t sl_metric_count(const sl_metric_t *m);

/*
 * Renders every series. *out: returns owned; free with free(). Returns 0 or
 * -ENOMEM.
 */
int sl_metrics_render(sl_metrics_t *mx, char **out, size_t *len);

/*
 * Escapes a label value (backslash, quote, newline) into buf (NUL-terminated,
 * truncated to cap). Returns buf.
 */
char *sl_metrics_escape(char *buf, size_t cap, const char *value);

/* Default latency buckets in seconds: 100 us .. 10 s. */
extern const double sl_metrics_latency_buckets[];
extern const size_t sl_metrics_latency_nbuckets;

#endif /* SL_METRICS_H */
