/* The machine's own limit for the throughput benchmark: posix_spawn of a program (default
   /bin/true) COUNT times, CONCURRENCY at a time, each child in a process group of its own (as
   pg-tasks starts every task), stdin/stdout/stderr on /dev/null; no database, no event loop.
   Prints the children ended per second.
     spawn-ceiling COUNT CONCURRENCY [PROGRAM] */
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: spawn-ceiling COUNT CONCURRENCY [PROGRAM]\n");
    return 2;
  }
  long count = atol(argv[1]);
  long concurrency = atol(argv[2]);
  char *program = argc > 3 ? argv[3] : "/bin/true";
  char *child_argv[] = {program, NULL};
  if (count < 1 || concurrency < 1) return 2;

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  for (int fd = 0; fd < 3; fd++) posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0);

  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  long started = 0, ended = 0, failed = 0;
  while (ended < count) {
    while (started < count && started - ended < concurrency) {
      pid_t pid;
      if (posix_spawn(&pid, program, &actions, &attr, child_argv, environ) != 0) {
        perror("posix_spawn");
        return 1;
      }
      started++;
    }
    int status;
    if (wait(&status) < 0) {
      perror("wait");
      return 1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed++;
    ended++;
  }
  clock_gettime(CLOCK_MONOTONIC, &end);
  double seconds = (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9;
  if (failed) {
    fprintf(stderr, "%ld children failed\n", failed);
    return 1;
  }
  printf("%.1f\n", (double)count / seconds);
  return 0;
}
