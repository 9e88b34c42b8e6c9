/* The generator moved to connectors/sim/gen.h (shared with sluice-sim). */
#ifndef SL_LOADTEST_GEN_H
#define SL_LOADTEST_GEN_H
#include "connectors/sim/gen.h"
#endif
