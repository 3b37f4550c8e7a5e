/* How long a process takes to be running, on this machine, with nothing else in the way:
   posix_spawn of the stamp program (bench/stamp.c, which writes the time it started to a
   file), one at a time, each in its own process group, idle 20 ms between; prints each
   latency (from just before posix_spawn to the child's own stamp) in ms, one per line.
   That is fork/exec and the dynamic linking of a small program: the floor under start latency.
     spawn-latency COUNT STAMP-PROGRAM DIR */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: spawn-latency COUNT STAMP-PROGRAM DIR\n");
    return 2;
  }
  long count = atol(argv[1]);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  char file[4096];
  for (long i = 0; i < count; i++) {
    snprintf(file, sizeof file, "%s/latency-%ld", argv[3], i);
    char *child_argv[] = {argv[2], file, NULL};
    struct timespec before;
    clock_gettime(CLOCK_REALTIME, &before);
    pid_t pid;
    if (posix_spawn(&pid, argv[2], NULL, &attr, child_argv, environ) != 0) {
      perror("posix_spawn");
      return 1;
    }
    int status;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
    FILE *f = fopen(file, "r");
    long long started = 0;
    if (!f || fscanf(f, "%lld", &started) != 1) return 1;
    fclose(f);
    unlink(file);
    long long at = (long long)before.tv_sec * 1000000000LL + before.tv_nsec;
    printf("%.3f\n", (double)(started - at) / 1e6);
    struct timespec idle = {0, 20 * 1000000L};
    nanosleep(&idle, NULL);
  }
  return 0;
}
