/*
 * sl_steady: publishes realistic readings (connectors/sim generator) to a
 * running sluice daemon at a fixed rate until SIGTERM/SIGINT, with each
 * event's time set to the wall clock when it is published, so that a Kafka
 * consumer can measure event time -> Kafka latency. Progress on stderr; at
 * the end, after waiting for the outstanding acks, ONE JSON object on stdout:
 * published, acked, failed, seconds, events_per_s.
 *
 *   sl_steady --address HOST:PORT [--rate 50000] [--sources 500]
 *             [--connections 2] [--stream readings] [--max-seconds 21600]
 *
 * A publisher more than 1 s behind its schedule (SIGSTOP, a daemon pushing
 * back) carries on at the rate from then on, without a catch-up burst.
 *
 * Exit status: 0 when every published event was acked.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "connectors/sim/gen.h"
#include "sluice/client.h"

typedef struct worker {
  pthread_t th;
  int idx;
  double rate;
  sl_client_t *cl;
  pthread_mutex_t mu;
  uint64_t published, acked, failed;
  int err;
} worker_t;

static struct {
  const char *address, *stream;
  int connections;
  double rate, max_seconds;
  uint32_t sources;
} opt = {"127.0.0.1:7000", "readings", 2, 50000, 21600, 500};

static volatile sig_atomic_t stop_now;

static void on_signal(int sig) {
  (void)sig;
  stop_now = 1;
}

static double now_s(void) {
  return (double)sl_now_mono_ns() / 1e9;
}

static void on_ack(sl_client_t *cl, uint64_t batch_id, uint64_t first_offset,
                   uint32_t count, int err, void *opaque) {
  worker_t *w = opaque;
  (void)cl;
  (void)batch_id;
  (void)first_offset;
  pthread_mutex_lock(&w->mu);
  if (err) {
    w->failed += count;
    if (!w->err)
      w->err = err;
  } else {
    w->acked += count;
  }
  pthread_mutex_unlock(&w->mu);
}

static void *run_worker(void *arg) {
  worker_t *w = arg;
  sl_gen_t g;
  double t0 = now_s();
  int rc;

  if (sl_gen_init(&g, opt.sources, 0x57ead000u + (uint64_t)w->idx,
                  sl_now_wall_ns(), 1000000) < 0) {
    w->err = -ENOMEM;
    return NULL;
  }
  for (uint64_t i = 0; !stop_now; i++) {
    if ((i % 32) == 0) {
      /* Pace in steps of 32 events: sleep until this event's due time. */
      double due = t0 + (double)i / w->rate, wait = due - now_s();
      if (wait > 0)
        usleep((useconds_t)(wait * 1e6));
      else if (wait < -1.0)
        t0 -= wait; /* more than 1 s behind (stopped, pushed back): carry
                       on at the rate from now instead of bursting */
    }
    Sluice__V1__Event ev = *sl_gen_next(&g);
    ev.time_ns = sl_now_wall_ns();
    uint64_t bid;
    /* A full buffer (the daemon pushes back) waits in slices of 200 ms so
     * that a stop is noticed. */
    while ((rc = sl_client_publish(w->cl, opt.stream, &ev, &bid)) ==
               SL_EBACKPRESSURE &&
           !stop_now)
      ;
    if (rc < 0) {
      if (!stop_now) {
        pthread_mutex_lock(&w->mu);
        w->err = rc;
        pthread_mutex_unlock(&w->mu);
      }
      break;
    }
    pthread_mutex_lock(&w->mu);
    w->published++;
    pthread_mutex_unlock(&w->mu);
  }
  sl_gen_close(&g);
  return NULL;
}

static void usage(void) {
  fprintf(stderr, "usage: sl_steady --address A [--rate EV/S] [--sources N] "
                  "[--connections N] [--stream NAME] [--max-seconds S]\n");
  exit(2);
}

int main(int argc, char **argv) {
  static const struct option lo[] = {{"address", 1, 0, 'a'},
                                     {"rate", 1, 0, 'r'},
                                     {"sources", 1, 0, 's'},
                                     {"connections", 1, 0, 'c'},
                                     {"stream", 1, 0, 'S'},
                                     {"max-seconds", 1, 0, 't'},
                                     {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (c) {
    case 'a':
      opt.address = optarg;
      break;
    case 'r':
      opt.rate = atof(optarg);
      break;
    case 's':
      opt.sources = (uint32_t)atoi(optarg);
      break;
    case 'c':
      opt.connections = atoi(optarg);
      break;
    case 'S':
      opt.stream = optarg;
      break;
    case 't':
      opt.max_seconds = atof(optarg);
      break;
    default:
      usage();
    }
  }
  if (opt.connections < 1 || opt.connections > 64 || opt.rate <= 0 ||
      !opt.sources)
    usage();
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  worker_t *w = calloc((size_t)opt.connections, sizeof(*w));
  if (!w)
    return 1;
  for (int i = 0; i < opt.connections; i++) {
    sl_client_opts_t o;
    char id[32];
    snprintf(id, sizeof(id), "steady-%d", i);
    sl_client_opts_init(&o);
    o.address = opt.address;
    o.client_id = id;
    o.max_batch_events = 1000;
    o.max_batch_bytes = 1000 * 512;
    o.linger_ms = 2;
    o.max_in_flight = 16;
    /* Room for a few seconds of a stalled daemon before publish pushes back. */
    o.max_buffered_events = 100000;
    o.publish_timeout_ms = 200;
    o.ack_cb = on_ack;
    o.opaque = &w[i];
    w[i].idx = i;
    w[i].rate = opt.rate / opt.connections;
    pthread_mutex_init(&w[i].mu, NULL);
    int rc = sl_client_new(&o, &w[i].cl);
    if (rc < 0) {
      fprintf(stderr, "sl_steady: client: %s\n", sl_strerror(rc));
      return 1;
    }
  }
  double t0 = now_s(), last = t0;
  for (int i = 0; i < opt.connections; i++)
    pthread_create(&w[i].th, NULL, run_worker, &w[i]);
  while (!stop_now) {
    usleep(50000);
    double t = now_s();
    if (t - t0 > opt.max_seconds)
      stop_now = 1;
    if (t - last >= 10) {
      uint64_t acked = 0;
      for (int i = 0; i < opt.connections; i++) {
        pthread_mutex_lock(&w[i].mu);
        acked += w[i].acked;
        pthread_mutex_unlock(&w[i].mu);
      }
      fprintf(stderr, "sl_steady: %llu acked (%.0f ev/s)\n",
              (unsigned long long)acked, (double)acked / (t - t0));
      last = t;
    }
  }
  for (int i = 0; i < opt.connections; i++)
    pthread_join(w[i].th, NULL);
  double elapsed = now_s() - t0;
  for (int i = 0; i < opt.connections; i++)
    sl_client_flush(w[i].cl, 30000);
  uint64_t pub = 0, acked = 0, failed = 0;
  int err = 0;
  for (int i = 0; i < opt.connections; i++) {
    pthread_mutex_lock(&w[i].mu);
    pub += w[i].published;
    acked += w[i].acked;
    failed += w[i].failed;
    if (!err)
      err = w[i].err;
    pthread_mutex_unlock(&w[i].mu);
  }
  printf("{\"published\":%llu,\"acked\":%llu,\"failed\":%llu,"
         "\"seconds\":%.3f,\"events_per_s\":%.0f,\"error\":\"%s\"}\n",
         (unsigned long long)pub, (unsigned long long)acked,
         (unsigned long long)failed, elapsed, (double)acked / elapsed,
         err ? sl_errname(err) : "");
  fflush(stdout);
  for (int i = 0; i < opt.connections; i++)
    sl_client_free(w[i].cl);
  free(w);
  return acked == pub ? 0 : 1;
}
