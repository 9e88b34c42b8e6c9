/*
 * loadtest/common/scrape.h: one series of a running daemon's /metrics, for
 * the benchmarks and the integration tests that read the admin port.
 */
#ifndef SL_LOADTEST_SCRAPE_H
#define SL_LOADTEST_SCRAPE_H

/*
 * GET /metrics from 127.0.0.1:port and the value of series (the name with
 * its labels exactly as printed, e.g.
 * `sluice_uplink_delivered_total{stream="readings"}`). Returns 0 with *v,
 * or -1 when the server does not answer within 5 s or lacks the series.
 */
int sl_scrape_metric(int port, const char *series, double *v);

#endif
