/* Writes the wall-clock time (ns since the epoch) at which it started to the file named by
   its first argument: the "process is running" instant for latency benchmarks. */
#include <stdio.h>
#include <time.h>
int main(int argc, char **argv) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (argc < 2) return 2;
  FILE *f = fopen(argv[1], "w");
  if (!f) return 1;
  fprintf(f, "%lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
  return fclose(f) == 0 ? 0 : 1;
}
