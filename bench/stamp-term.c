/* Waits until SIGTERM, then writes the wall-clock time (ns since the epoch) at which the
   signal arrived to the file named by its first argument, and exits: the "cancelled process
   got its signal" instant for the cancel-latency benchmark. */
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
static const char *path;
static void on_term(int sig) {
  struct timespec ts;
  (void)sig;
  clock_gettime(CLOCK_REALTIME, &ts);
  FILE *f = fopen(path, "w");
  if (f) {
    fprintf(f, "%lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    fclose(f);
  }
  _exit(0);
}
int main(int argc, char **argv) {
  if (argc < 2) return 2;
  path = argv[1];
  signal(SIGTERM, on_term);
  for (;;) pause();
}
